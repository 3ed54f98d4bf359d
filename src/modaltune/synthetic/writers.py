"""Writers shared by the synthetic cohort generators: GDC/Xena/GMT/CSV tables and stale-file clean-up.

Every generator of this package (:func:`~modaltune.synthetic.make_synthetic`,
:func:`~modaltune.synthetic.make_pan_cancer`, :func:`~modaltune.synthetic.make_subspace_cohort`) writes
its tables through these functions, so they share one on-disk dialect: tab-separated GDC clinical
tables with ``'--`` for empty cells, Xena genes x samples matrices with a ``sample`` index column and
4 decimals, GMT lines ``name<TAB>description<TAB>genes...``, ``case_id,text`` report CSVs, and ``\\n``
line endings everywhere (byte-identical files on every platform for the same seed).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["SYNTHETIC_GENERATORS", "GMT_DESCRIPTION", "write_rows", "write_clinical", "write_expression", "write_gmt", "write_reports",
           "clear_previous"]

#: ``generator`` values of truth.json written by this package's generators: an output directory holding
#: one of them may be overwritten by any generator (its stale slides are removed).
SYNTHETIC_GENERATORS = ("modaltune.data.synthetic.make_synthetic", "modaltune.synthetic.make_pan_cancer",
                        "modaltune.synthetic.make_subspace_cohort")

#: Description column of every synthetic GMT line.
GMT_DESCRIPTION = "synthetic gene set (modaltune)"


def write_rows(path: Path, rows: Sequence[Mapping], *, sep: str = ",") -> pd.DataFrame:
    """Write dict rows as a CSV (or TSV with ``sep="\\t"``) without index; return the frame.

    Args:
        path: output file.
        rows: one mapping per row (column order = first row's key order).
        sep: field separator.

    Returns:
        The written DataFrame.
    """
    df = pd.DataFrame(list(rows))
    df.to_csv(path, sep=sep, index=False, lineterminator="\n")
    return df


def write_clinical(path: Path, rows: Sequence[Mapping]) -> pd.DataFrame:
    """Write a GDC-style clinical TSV (cells already formatted, ``'--`` for empty); return the frame."""
    return write_rows(path, rows, sep="\t")


def write_expression(path: Path, genes: Sequence[str], columns: Mapping[str, np.ndarray]) -> None:
    """Write a Xena-style genes x samples TSV: first column ``sample`` (gene symbols), one column per sample.

    Args:
        path: output file.
        genes: gene symbols, in row order.
        columns: sample barcode -> values (one per gene), in column order.
    """
    df = pd.DataFrame(dict(columns), index=pd.Index(list(genes), name="sample"))
    df.to_csv(path, sep="\t", float_format="%.4f", lineterminator="\n")


def write_gmt(path: Path, gmt: Mapping[str, Sequence[str]], description: str = GMT_DESCRIPTION) -> None:
    """Write gene sets as GMT lines ``name<TAB>description<TAB>gene<TAB>...``."""
    with open(path, "w", newline="\n") as fh:
        for name, genes in gmt.items():
            fh.write("\t".join([name, description, *genes]) + "\n")


def write_reports(path: Path, reports: Iterable[tuple[str, str]]) -> None:
    """Write ``(case_id, text)`` pathology reports as ``case_id,text`` CSV (texts quoted as needed)."""
    pd.DataFrame(list(reports), columns=["case_id", "text"]).to_csv(path, index=False, lineterminator="\n")


def clear_previous(out: Path, dirs: Sequence[Path], generators: Collection[str], who: str) -> None:
    """Remove the ``*.h5`` files an earlier synthetic cohort left in ``dirs``, or refuse foreign ones.

    Stale slides would be orphans for the new clinical table, so they are deleted when ``out/truth.json``
    names one of ``generators``; feature files of unknown origin are never touched.

    Args:
        out: the cohort directory (holds ``truth.json``).
        dirs: directories whose ``*.h5`` files belong to the cohort.
        generators: ``generator`` values of truth.json that mark a cohort written by this package.
        who: the calling function's name, for the error message.

    Raises:
        ConfigError: ``dirs`` hold h5 files and truth.json does not name one of ``generators``.
    """
    stale = [p for d in dirs if d.is_dir() for p in d.glob("*.h5")]
    if not stale:
        return
    ours = False
    try:
        ours = json.loads((out / "truth.json").read_text()).get("generator") in set(generators)
    except (OSError, ValueError, AttributeError):
        pass
    if not ours:
        raise ConfigError(f"{who}: {out} already holds feature files that are not from an earlier "
                          "synthetic cohort; choose an empty output directory")
    for p in stale:
        p.unlink()
