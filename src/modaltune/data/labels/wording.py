"""AJCC stage and TNM values in words, for the text prompts (ModalTune Sec. 9).

Prompts are compared as text embeddings, so ``Stage IIA`` and ``Stage IIB`` would be two different
targets for one clinical fact; sub-stages are therefore binned, and every value is worded the way
the paper's prompts word it:

``Stage IIA`` -> ``stage two``; ``T1c`` -> ``tumor stage one``; ``N0`` (also ``N0 (i+)``,
``N0 (mol+)``) -> ``cancer has not spread to lymph nodes``; ``N1``/``N2``/``N3`` (any letter) ->
``cancer has spread to lymph nodes, node stage one|two|three``; ``M0`` (also ``cM0 (i+)``) -> ``no
metastasis detected``; ``M1*`` -> ``distant metastasis detected``. Not assessable values are worded,
not dropped: ``TX`` -> ``primary tumor cannot be assessed``, ``NX`` -> ``lymph nodes cannot be
assessed``, ``MX`` -> ``distant metastasis cannot be assessed``; ``Tis`` -> ``tumor in situ``, ``T0``
-> ``tumor stage zero``. ``Stage X``, empty values (``'--``, ``Not Reported``, ``Unknown``: see
:data:`~modaltune.data.formats.MISSING_TOKENS`) and anything unrecognised give None (the prompt omits
the item). Clinical (``c``), pathological (``p``) and post-therapy (``y``) prefixes are ignored.
Values already in words pass through unchanged, so wording is idempotent.

T, N and M follow one pattern (a code after an optional prefix, a few codes with fixed words, the
rest numbered), so they share one table-driven function, :func:`_tnm_to_words`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..formats.tables import is_missing

__all__ = ["stage_to_words", "t_to_words", "n_to_words", "m_to_words"]

_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
_ROMAN = {"0": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_PREFIX = r"(?:[cpyra]{1,3})?"


def _prep(value: Any) -> str | None:
    return None if is_missing(value) else str(value).strip().lower()


def stage_to_words(stage: Any) -> str | None:
    """AJCC overall stage in words: ``"Stage IIA"`` -> ``"stage two"`` (sub-stages binned).

    Accepts ``Stage 0``..``Stage IV`` with any letter/number suffix (``IIIC``, ``IVB``, ``IS``
    excluded), Arabic numerals (``"Stage 2"``), and already worded values. ``Stage X``, empty and
    unrecognised values give None.
    """
    s = _prep(stage)
    if s is None:
        return None
    m = re.fullmatch(r"(?:stage\s*)?(zero|one|two|three|four)", s)
    if m:
        return f"stage {m.group(1)}"
    m = re.fullmatch(r"(?:stage\s*)?(iv|iii|ii|i|0|[1-4])\s*(?:[a-c][0-9]?)?", s)
    if not m:
        return None
    return f"stage {_WORDS[_ROMAN[m.group(1)]]}"


@dataclass(frozen=True)
class _TNMRule:
    worded: str                # regex of values already in words (returned unchanged)
    code: str                  # regex of the code after the prefix, spaces removed; group 1 = the code
    fixed: dict[str, str]      # code -> words
    numbered: str | None       # words of the other codes, "{}" = the number in words


_TNM: dict[str, _TNMRule] = {
    "t": _TNMRule(worded=r"tumor stage (zero|one|two|three|four)",
                  code=r"t(x|is|[0-4])(?:[a-e][0-9]?)?(?:mi)?(?:\(.*\))?",
                  fixed={"x": "primary tumor cannot be assessed", "is": "tumor in situ"},
                  numbered="tumor stage {}"),
    "n": _TNMRule(worded=r"(?s)cancer has.*",
                  code=r"n(x|[0-3])(?:[a-d]|mi)?(?:\(.*\))?",
                  fixed={"x": "lymph nodes cannot be assessed", "0": "cancer has not spread to lymph nodes"},
                  numbered="cancer has spread to lymph nodes, node stage {}"),
    "m": _TNMRule(worded=r"no metastasis detected|distant metastasis detected",
                  code=r"m(x|0|1)(?:[a-d][0-9]?)?(?:\(.*\))?",
                  fixed={"x": "distant metastasis cannot be assessed", "0": "no metastasis detected",
                         "1": "distant metastasis detected"},
                  numbered=None),
}


def _tnm_to_words(kind: str, value: Any) -> str | None:
    """Words of an AJCC T, N or M value (``kind`` in ``"t"``, ``"n"``, ``"m"``) by the rules of :data:`_TNM`."""
    rule = _TNM[kind]
    s = _prep(value)
    if s is None:
        return None
    if re.fullmatch(rule.worded, s):
        return s
    m = re.fullmatch(_PREFIX + rule.code, s.replace(" ", ""))
    if not m:
        return None
    code = m.group(1)
    if code in rule.fixed:
        return rule.fixed[code]
    return rule.numbered.format(_WORDS[int(code)])


def t_to_words(t: Any) -> str | None:
    """AJCC T in words: ``"T1c"`` -> ``"tumor stage one"``; ``TX`` -> ``"primary tumor cannot be assessed"``;
    ``Tis`` -> ``"tumor in situ"``; ``T0`` -> ``"tumor stage zero"``; empty/unknown -> None."""
    return _tnm_to_words("t", t)


def n_to_words(n: Any) -> str | None:
    """AJCC N in words: ``N0`` -> ``"cancer has not spread to lymph nodes"``; ``N2a`` -> ``"cancer has spread
    to lymph nodes, node stage two"``; ``NX`` -> ``"lymph nodes cannot be assessed"``; empty/unknown -> None."""
    return _tnm_to_words("n", n)


def m_to_words(m: Any) -> str | None:
    """AJCC M in words: ``M0``/``cM0 (i+)`` -> ``"no metastasis detected"``; ``M1``/``M1a``... ->
    ``"distant metastasis detected"``; ``MX`` -> ``"distant metastasis cannot be assessed"``; else None."""
    return _tnm_to_words("m", m)
