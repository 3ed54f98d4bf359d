"""The ingest log: every item dropped or unmatched while preparing a cohort, with its reason.

``prepare`` promises no silent loss: whatever it does not carry into the cohort (a slide whose case is
not in the clinical table, a gene absent from the expression matrix, a pathway left too small) is
recorded here with the reason and the file, warned about, and written to ``summary.json``/``.txt``.
Facts about patients that are kept but incomplete (no survival, unknown diagnosis) are notes, not
drops, and are not warned about twice.

The log has its own module because both the feature checks and the summary use it; it imports
neither.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable

from ...errors import warn_input
from ..formats.ids import names

__all__ = ["IngestLog", "recording_warnings"]


@dataclass
class IngestLog:
    """What ``prepare`` left out or noticed, as summary entries.

    Each entry is ``{"kind", "n", "reason", "file", "items"}`` with the items sorted and de-duplicated.

    Attributes:
        dropped: items removed from the cohort (genes, pathways, clinical rows).
        unmatched: items that matched nothing on the other side (slides or samples without a patient).
        warnings: the text of every input warning raised while preparing (ours and the readers').
        notes: facts about kept items (e.g. patients without survival); never warned from here.
    """

    dropped: list[dict] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    def _entry(self, kind: str, items: Iterable[str], reason: str, file) -> dict:
        items = sorted({str(i) for i in items})
        return {"kind": kind, "n": len(items), "reason": reason, "file": None if file is None else str(file),
                "items": items}

    def _record(self, target: list[dict], label: str, kind: str, items, reason: str, file, fix, warn: bool) -> None:
        e = self._entry(kind, items, reason, file)
        if e["n"]:
            target.append(e)
            if warn:
                self.warn(f"{e['n']} {label}: {reason}: {names(e['items'])}", file=file, fix=fix, stacklevel=4)

    def drop(self, kind: str, items, reason: str, *, file=None, fix=None, warn: bool = True) -> None:
        """Record items dropped from the cohort (and warn)."""
        self._record(self.dropped, f"{kind} dropped", kind, items, reason, file, fix, warn)

    def unmatch(self, kind: str, items, reason: str, *, file=None, fix=None, warn: bool = True) -> None:
        """Record items that matched nothing (kept or dropped per ``reason``)."""
        self._record(self.unmatched, kind, kind, items, reason, file, fix, warn)

    def note(self, kind: str, items, reason: str, *, file=None) -> None:
        """Record a fact about kept items (no warning): e.g. patients without survival."""
        e = self._entry(kind, items, reason, file)
        if e["n"]:
            self.notes.append(e)

    def warn(self, problem: str, *, file=None, case=None, fix=None, stacklevel: int = 3) -> None:
        """Warn about an input problem (an :class:`~modaltune.errors.InputWarning`).

        The warning is not stored here: :func:`recording_warnings` catches it with the readers' own
        warnings, and ``prepare_cohort`` copies their texts into :attr:`warnings`.
        """
        warn_input(problem, file=file, case=case, fix=fix, stacklevel=stacklevel)


@contextmanager
def recording_warnings():
    """Yield the list of warnings raised inside (ours and the readers'); re-emit them on exit so
    callers still see them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
