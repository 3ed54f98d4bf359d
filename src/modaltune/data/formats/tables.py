"""Delimited text tables: separator sniffing, column lookup, and what counts as an empty cell.

Users hand us TSV and CSV files from GDC, cBioPortal, SurvPath and their own spreadsheets, often
with the "wrong" extension, so the separator is read from the header line rather than trusted from
the file name. Column names vary by source and case, so columns are found among accepted names
case-insensitively (:func:`find_column`).

:data:`MISSING_TOKENS` is the project's one definition of an empty value. GDC writes ``'--``, the
TCGA legacy tables write ``[Not Available]``, ``[Discrepancy]`` and friends, and spreadsheets write
``NA``/``n/a``. Every place that decides "is this value missing?" (readers, labels, the cohort writer,
prompts) asks :func:`is_missing`, so a token added here is missing everywhere at once.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ...errors import InputError

__all__ = ["MISSING_TOKENS", "is_missing", "text_or_none", "clean_str", "to_number", "open_text", "detect_sep",
           "raw_header", "read_table", "find_column"]

#: Cell values read as "empty" (compared case-insensitively, after stripping).
MISSING_TOKENS = frozenset({"", "'--", "--", "-", "na", "n/a", "nan", "none", "null", "not reported",
                            "unknown", "not available", "[not available]", "[not applicable]", "[unknown]",
                            "[not evaluated]", "[discrepancy]", "[completed]", "not applicable"})


def is_missing(value: Any) -> bool:
    """True for None, a float NaN, or a value whose stripped lower-cased text is in :data:`MISSING_TOKENS`."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


def text_or_none(value: Any) -> str | None:
    """The stripped text of ``value``, or None when it is missing (:func:`is_missing`)."""
    return None if is_missing(value) else str(value).strip()


def clean_str(series: pd.Series) -> pd.Series:
    """Object series of stripped strings, with missing values (:func:`is_missing`) as NaN."""
    return series.map(lambda v: np.nan if is_missing(v) else str(v).strip()).astype(object)


def to_number(series: pd.Series) -> pd.Series:
    """Float series: missing values and text that is not a number become NaN."""
    return pd.to_numeric(clean_str(series), errors="coerce").astype(float)


def open_text(path: Path):
    """Open a text file for reading (``.gz`` decompressed; undecodable bytes replaced)."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def detect_sep(path: Path) -> str:
    """Separator from the header line (tabs win over commas), else from the extension."""
    try:
        with open_text(path) as fh:
            header = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read the table ({exc})", file=path, fix="check the file") from exc
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    if ";" in header and _base_suffix(path) not in (".tsv", ".tab"):
        return ";"
    return "," if _base_suffix(path) == ".csv" else "\t"


def raw_header(path: Path) -> list[str]:
    """The header cells exactly as written (pandas renames repeated headers; this does not)."""
    with open_text(path) as fh:
        row = next(csv.reader(fh, delimiter=detect_sep(path)), [])
    return [c.lstrip("\ufeff") for c in row]


def read_table(path: str | Path, what: str, **kw) -> pd.DataFrame:
    """Read a delimited table with a sniffed separator; column names stripped (and BOM-free).

    Args:
        path: the table.
        what: what the table is, for error messages (``"clinical"``, ``"reports"`` ...).
        **kw: passed to :func:`pandas.read_csv`.

    Raises:
        InputError: missing, empty or unparsable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", file=path, fix="check the path")
    sep = detect_sep(path)
    try:
        df = pd.read_csv(path, sep=sep, **kw)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{what} file is empty", file=path, fix="check the file") from exc
    except Exception as exc:  # ParserError, UnicodeDecodeError, ...
        raise InputError(f"cannot parse the {what} table ({type(exc).__name__}: {exc})", file=path,
                         fix="write a tab- or comma-separated table with one header line") from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    return df


def find_column(columns: Iterable[str], candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` present in ``columns`` (case-insensitive), as spelled in ``columns``."""
    lower = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None
