"""Small side tables: gene sets (GMT), pathology reports, and slide -> case tables.

They share a reader module because each is a thin table with one job in the cohort: the GMT says
which genes form a pathway token, reports give the text modality, and a slide -> case table links
slide files to patients when slide names are not TCGA barcodes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import InputError
from .ids import names, strip_slide_ext, tcga_case_id
from .tables import find_column, open_text, read_table

__all__ = ["read_gmt", "read_reports", "read_slide_case_table"]


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene1<TAB>gene2...``.

    The description column is skipped; genes are stripped and de-duplicated (order kept); blank lines
    are ignored. Returns ``{name: [genes]}`` in file order.

    Raises:
        InputError: missing file, a line without tabs or without genes, a repeated set name, no set.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("gene set file not found", file=path, fix="check the path")
    sets: dict[str, list[str]] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            name = parts[0].strip()
            genes = list(dict.fromkeys(g.strip() for g in parts[2:] if g.strip()))
            if len(parts) < 3 or not name:
                raise InputError(f"line {lineno} of the GMT file is not 'name<TAB>description<TAB>genes...'",
                                 file=path, fix="separate the fields with tabs (GMT format)")
            if not genes:
                raise InputError(f"gene set '{name}' (line {lineno}) has no genes", file=path,
                                 fix="remove the empty gene set")
            if name in sets:
                raise InputError(f"gene set name '{name}' appears twice (line {lineno})", file=path,
                                 fix="give every gene set a unique name")
            sets[name] = genes
    if not sets:
        raise InputError("the GMT file has no gene set", file=path, fix="check the file")
    return sets


def read_reports(path: str | Path) -> pd.DataFrame:
    """Read pathology reports: a CSV/TSV with a case id column and a text column.

    Case id column: ``case_id``, ``case_submitter_id``, ``patient_id``, ``patient``, ``submitter_id`` or
    ``patient_filename`` (TCGA-Reports); text column: ``text``, ``report``, ``report_text`` or
    ``pathology_report``. Case ids go through :func:`tcga_case_id`; missing text becomes ``""``.
    All rows are returned (duplicates and empty texts are the caller's to handle).

    Returns:
        DataFrame with columns ``case_id, text`` (str).
    """
    path = Path(path)
    df = read_table(path, "reports", dtype=str, keep_default_na=False)
    case_col = find_column(df.columns, ("case_id", "case_submitter_id", "patient_id", "patient", "submitter_id",
                                         "patient_filename"))
    text_col = find_column(df.columns, ("text", "report", "report_text", "pathology_report"))
    if case_col is None or text_col is None:
        missing = "case id" if case_col is None else "text"
        raise InputError(f"the reports table has no {missing} column (columns: {names(df.columns, 30)})",
                         file=path, fix="name the columns case_id and text (or report)")
    cases = df[case_col].map(lambda v: tcga_case_id(v) if str(v).strip() else "")
    return pd.DataFrame({"case_id": cases.astype(str).to_numpy(),
                         "text": df[text_col].fillna("").astype(str).to_numpy()})


def read_slide_case_table(path: str | Path) -> dict[str, str]:
    """Read a slide -> case table (CSV/TSV with ``slide_id`` and ``case_id`` columns) for non-TCGA data.

    Accepted column names: ``slide_id``/``slide``/``slide_submitter_id``/``filename`` and
    ``case_id``/``case_submitter_id``/``patient_id``/``patient``. Slide file extensions (``.svs``,
    ``.h5`` ...) are stripped so ids match feature file stems. Case ids are kept as written (TCGA
    barcodes are reduced to 12 characters).

    Raises:
        InputError: missing columns, an empty id, or a slide listed with two different cases.
    """
    path = Path(path)
    df = read_table(path, "slide-case", dtype=str, keep_default_na=False)
    slide_col = find_column(df.columns, ("slide_id", "slide", "slide_submitter_id", "filename"))
    case_col = find_column(df.columns, ("case_id", "case_submitter_id", "patient_id", "patient"))
    if slide_col is None or case_col is None:
        raise InputError(f"the slide-case table needs slide_id and case_id columns (columns: {names(df.columns)})",
                         file=path, fix="write a table with the columns slide_id,case_id")
    mapping: dict[str, str] = {}
    for row, (sid, cid) in enumerate(zip(df[slide_col], df[case_col]), start=2):
        sid, cid = str(sid).strip(), str(cid).strip()
        if not sid or not cid:
            raise InputError(f"row {row} of the slide-case table has an empty slide or case id", file=path,
                             fix="fill both columns on every row")
        sid, cid = strip_slide_ext(sid), tcga_case_id(cid)
        if mapping.get(sid, cid) != cid:
            raise InputError(f"slide {sid} is listed with two cases ({mapping[sid]} and {cid})", file=path,
                             case=cid, fix="give each slide exactly one case")
        mapping[sid] = cid
    return mapping
