"""Expression matrices (UCSC Xena genes x samples, or samples x genes) into cases x genes.

Xena writes genes as rows and sample barcodes as columns; other sources write the transpose. The
orientation is inferred from where the TCGA barcodes are (see :func:`read_expression`) because the
header of the first column is unreliable (Xena's ``sample`` heads the gene column).

Expression is measured per **sample** and the cohort is per **case**: a TCGA case may have a
primary tumour (``-01``) and a normal (``-11``) sample. One is kept per case by a fixed, documented
rule, and the choice is warned about and returned, never made silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import InputError, warn_input
from .ids import MAX_NAMED, is_tcga_barcode, names, sample_type_code, tcga_case_id
from .tables import raw_header, read_table

__all__ = ["ORIENTATIONS", "read_expression"]

_GENE_HEADERS = ("gene", "genes", "gene_id", "gene_symbol", "gene_name", "hugo_symbol", "symbol", "genes_symbol")
_SAMPLE_HEADERS = ("case_id", "case_submitter_id", "sample_id", "samples", "patient", "patient_id",
                   "submitter_id", "barcode", "bcr_patient_barcode")
#: Accepted values of ``read_expression(orientation=...)``.
ORIENTATIONS = ("auto", "genes_x_samples", "samples_x_genes")


def _orientation(df: pd.DataFrame, first_header: str, path: Path) -> str:
    header = [str(c) for c in df.columns]
    first = [str(v) for v in df.index]
    frac = lambda xs: (sum(is_tcga_barcode(x) for x in xs) / len(xs)) if xs else 0.0  # noqa: E731
    if frac(header) >= 0.5:
        return "genes_x_samples"
    if frac(first) >= 0.5:
        return "samples_x_genes"
    h = first_header.strip().lower()
    if h in _GENE_HEADERS:
        return "genes_x_samples"
    if h in _SAMPLE_HEADERS:
        return "samples_x_genes"
    if len(header) != len(first):
        return "genes_x_samples" if len(first) > len(header) else "samples_x_genes"
    raise InputError("cannot tell the orientation of the expression matrix (no TCGA barcodes, no telling "
                     "first-column name, as many rows as columns)", file=path,
                     fix="pass orientation='genes_x_samples' or 'samples_x_genes'")


def _choose_samples(samples: list[str], path: Path) -> tuple[list[int], dict[str, str], dict[str, list[str]]]:
    """Row positions kept (one per case) by the documented rule; choices for cases with several samples."""
    seen: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        seen.setdefault(s, []).append(i)
    repeated = {s: rows for s, rows in seen.items() if len(rows) > 1}
    if repeated:
        listing = "; ".join(f"{s} at positions {', '.join(str(r + 1) for r in rows)}"
                            for s, rows in list(repeated.items())[:MAX_NAMED])
        first = next(iter(repeated))
        warn_input(f"{len(repeated)} sample id(s) appear more than once in the expression matrix (a copied "
                   f"column?); the first occurrence in file order is kept, because identical ids cannot be told "
                   f"apart by sample type: {listing}", file=path, case=tcga_case_id(first),
                   fix="remove or rename the duplicated sample columns (rows in a samples x genes file)")
    by_case: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if i != seen[s][0]:
            continue
        by_case.setdefault(tcga_case_id(s), []).append(i)
    keep, chosen, dropped = [], {}, {}
    for case, rows in by_case.items():
        if len(rows) == 1:
            keep.append(rows[0])
            continue
        codes = [sample_type_code(samples[i]) for i in rows]
        order = sorted(range(len(rows)), key=lambda k: (codes[k] if codes[k] is not None else 100, k))
        best = rows[order[0]]
        keep.append(best)
        chosen[case] = samples[best]
        dropped[case] = [samples[rows[k]] for k in order[1:]]
    if chosen:
        listing = "; ".join(f"{c}: {chosen[c]} (not {', '.join(dropped[c])})" for c in list(chosen)[:MAX_NAMED])
        warn_input(f"{len(chosen)} case(s) have several expression samples; one kept per case (primary tumour "
                   f"-01 first, then the lowest sample-type code, then file order): {listing}", file=path,
                   case=next(iter(chosen)), fix="remove the samples you do not want if this choice is wrong")
    normal = [c for c in chosen if (sample_type_code(chosen[c]) or 0) >= 10]
    if normal:
        warn_input(f"{len(normal)} case(s) have only non-tumour expression samples (type code >= 10) and use one: "
                   f"{names(chosen[c] for c in normal)}", file=path, case=normal[0],
                   fix="remove normal-tissue samples if tumour expression is intended")
    return sorted(keep), chosen, dropped


def read_expression(path: str | Path, orientation: str = "auto") -> pd.DataFrame:
    """Read an expression matrix into cases x genes.

    Args:
        path: ``.tsv``/``.csv``/``.txt`` (optionally ``.gz``); the first column holds row labels.
        orientation: ``"genes_x_samples"`` (UCSC Xena: first column gene symbols, one column per
            sample), ``"samples_x_genes"``, or ``"auto"``.

    Orientation rule (``auto``), first match wins:
        1. at least half of the column headers are TCGA barcodes -> genes x samples;
        2. at least half of the first-column values are TCGA barcodes -> samples x genes;
        3. the first column's header is a gene header (``gene``, ``gene_id``, ``gene_symbol``,
           ``hugo_symbol``, ``symbol`` ...) -> genes x samples; a sample/case header (``case_id``,
           ``sample_id``, ``patient`` ...) -> samples x genes (Xena's ``sample`` is ambiguous and skipped);
        4. genes outnumber samples: the longer axis is taken as genes;
        otherwise an error asks for ``orientation``.

    Several samples of one case (``TCGA-XX-XXXX-01A`` and ``-11A``): the primary tumour (``-01``) is
    kept, else the lowest sample-type code, else the first in file order. The choices are warned about
    and returned in ``df.attrs["sample_choice"]`` (case -> kept sample id; ``df.attrs["samples_dropped"]``:
    case -> the other sample ids). Duplicate gene symbols are averaged (warned).

    Returns:
        float64 DataFrame indexed by case id (``index.name == "case_id"``), columns gene symbols.

    Raises:
        InputError: missing/unparsable file, bad ``orientation``, no gene or no sample, NaN/inf or
            non-numeric values (naming samples and genes).
    """
    path = Path(path)
    if orientation not in ORIENTATIONS:
        raise InputError(f"unknown expression orientation '{orientation}'", file=path,
                         fix=f"use one of {ORIENTATIONS}")
    df = read_table(path, "expression", index_col=0)
    header = raw_header(path)  # pandas renames repeated headers (G2 -> G2.1); keep them as written
    if len(header) == df.shape[1] + 1:
        df.columns = [h.strip() for h in header[1:]]
    first_header = str(df.index.name or "")
    df.index = [str(x).strip() for x in df.index]
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InputError(f"expression matrix has no values (shape {df.shape})", file=path,
                         fix="write a matrix with row labels in the first column and a header line")
    orient = _orientation(df, first_header, path) if orientation == "auto" else orientation
    if orient == "genes_x_samples":
        df = df.T
    df.index = [str(x).strip() for x in df.index]
    df.columns = [str(x).strip() for x in df.columns]
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        samples = [df.index[i] for i in np.flatnonzero(bad.any(axis=1))]
        genes = [df.columns[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise InputError(f"expression matrix has {int(bad.sum())} NaN/inf or non-numeric value(s) in "
                         f"{len(samples)} sample(s) ({names(samples)}) and {len(genes)} gene(s) ({names(genes)})",
                         file=path, case=samples[0],
                         fix="impute the missing values or remove those genes (or samples) from the matrix")
    samples = list(df.index)
    keep, chosen, dropped = _choose_samples(samples, path)
    out = pd.DataFrame(values[keep], index=[tcga_case_id(samples[i]) for i in keep], columns=df.columns)
    if out.columns.duplicated().any():
        dup = sorted(set(out.columns[out.columns.duplicated()]))
        warn_input(f"{len(dup)} gene symbol(s) appear several times in the expression matrix and are averaged: "
                   f"{names(dup)}", file=path, fix="collapse duplicate genes yourself if averaging is wrong")
        out = out.T.groupby(level=0, sort=False).mean().T
    out.index.name = "case_id"
    out.attrs["sample_choice"] = chosen
    out.attrs["samples_dropped"] = dropped
    return out
