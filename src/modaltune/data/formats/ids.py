"""Identifiers: TCGA barcodes, slide file names, and the truncated listing used in messages.

Every reader returns **case ids** (patients). A TCGA barcode is reduced to its first 12 characters
(``TCGA-XX-XXXX``) by :func:`tcga_case_id`; other ids are kept as written. Slide ids are file stems,
so slide names written with their file extension (``X.svs``, ``X.h5``) are stripped by
:func:`strip_slide_ext` wherever a table names slides.

:func:`names` lives here because every error and warning about ids lists them the same way: at most
:data:`MAX_NAMED` items, then "and N more", so a message about 10,000 slides stays one line.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["MAX_NAMED", "SLIDE_EXTENSIONS", "is_tcga_barcode", "tcga_case_id", "sample_type_code",
           "strip_slide_ext", "names"]

#: Items named in one message before "and N more".
MAX_NAMED = 10

#: File extensions stripped from slide names so they match feature-file stems (whole-slide image
#: formats and the feature files themselves).
SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".h5", ".pt")

_TCGA_RE = re.compile(r"^TCGA[-._][A-Z0-9]{2}[-._][A-Z0-9]{4}(?:$|[-._])", re.IGNORECASE)


def is_tcga_barcode(value: str) -> bool:
    """True for a TCGA barcode (``TCGA-XX-XXXX...``; ``.`` or ``_`` separators accepted)."""
    return isinstance(value, str) and bool(_TCGA_RE.match(value.strip()))


def tcga_case_id(barcode: str) -> str:
    """The case (patient) id of a TCGA barcode: its first 12 characters, upper-cased.

    ``"tcga-a2-a0t2-01A-11R"`` -> ``"TCGA-A2-A0T2"``; R-mangled ``"TCGA.A2.A0T2.01"`` -> ``"TCGA-A2-A0T2"``.
    Ids that are not TCGA barcodes are returned unchanged (only surrounding whitespace is stripped).
    """
    s = str(barcode).strip()
    if not _TCGA_RE.match(s):
        return s
    return s[:12].upper().replace(".", "-").replace("_", "-")


def sample_type_code(barcode: str) -> int | None:
    """TCGA sample-type code of a sample barcode (``TCGA-XX-XXXX-01A`` -> 1, ``-11`` -> 11), else None."""
    s = str(barcode).strip()
    if not _TCGA_RE.match(s) or len(s) < 15:
        return None
    code = s[13:15]
    return int(code) if code.isdigit() else None


def strip_slide_ext(name: str) -> str:
    """``name`` without a trailing slide or feature file extension (:data:`SLIDE_EXTENSIONS`, any case)."""
    for ext in SLIDE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def names(items: Iterable, limit: int = MAX_NAMED) -> str:
    """``items`` as text for a message: the first ``limit`` joined by ", ", then "and N more"."""
    items = [str(x) for x in items]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")
