"""Omics and text inputs of a cohort: expression, gene sets, reports, and the OOD site list.

Expression is aligned on the clinical patients: samples of cases not in the clinical table are
dropped and listed. Every gene of the matrix is kept, in the expression file's order: genome-wide
methods (MLP, SNN, MICE's genomics encoder) read all of them, and pathway methods read the genes
that the gene sets index (``gene_sets.json``); the summary says how many genes no gene set covers.
A GMT gene absent from the matrix is dropped and listed, and a pathway left with fewer than
``min_genes_per_pathway`` genes is dropped too (one or two genes make a meaningless token). No
pathway left is an error: it nearly always means the GMT and the matrix use different gene
identifiers. Values that look linear-scale (unlogged) are warned about with the transform to apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ...errors import InputError, warn_input
from ..formats import read_expression, read_gmt, read_reports
from ..formats.ids import names
from .log import IngestLog

__all__ = ["load_expression", "select_genes", "load_reports", "check_ood_sites"]


def load_expression(path: Path, orientation: str, known: set[str], log: IngestLog) -> tuple[pd.DataFrame, dict]:
    """The expression matrix restricted to ``known`` cases, and facts about the file for the summary.

    Raises:
        InputError: duplicate genes or cases, or NaN/inf values.
    """
    expr = read_expression(path, orientation=orientation)
    info = {"file": str(path), "n_cases_in_file": int(len(expr)), "n_genes_in_file": int(expr.shape[1]),
            "sample_choice": _jsonable_attr(expr.attrs.get("sample_choice"))}
    expr.index = expr.index.astype(str)
    expr.columns = expr.columns.astype(str)
    if expr.columns.duplicated().any():
        dup = sorted(set(expr.columns[expr.columns.duplicated()]))
        raise InputError(f"expression matrix has duplicate genes {names(dup)}", file=path,
                         fix="collapse duplicate gene rows (e.g. average them) before preparing")
    if expr.index.duplicated().any():
        dup = sorted(set(expr.index[expr.index.duplicated()]))
        raise InputError(f"expression matrix has several rows for cases {names(dup)}", file=path,
                         case=dup[0], fix="keep one sample per case")
    values = expr.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        cases = list(expr.index[bad.any(axis=1)])
        genes = list(expr.columns[bad.any(axis=0)])
        raise InputError(f"expression matrix has NaN/inf values for {len(cases)} case(s) and {len(genes)} gene(s); "
                         f"genes: {names(genes)}", file=path, case=names(cases),
                         fix="impute the missing values or remove those genes from the matrix")
    check_log_scale(values, path)
    extra = [c for c in expr.index if c not in known]
    log.unmatch("expression cases", extra, "case not in the clinical table; dropped", file=path,
                fix="add the patient to the clinical table (a patient needs a site), or ignore")
    expr = expr.loc[[c for c in expr.index if c in known]]
    info["n_cases_kept"] = int(len(expr))
    return expr, info


#: Above this, expression values are taken to be on a linear scale (log2(TPM + 1) stays below ~20).
UNLOGGED_MAX = 100.0


def check_log_scale(values: np.ndarray, path: Path) -> str | None:
    """Warn when expression looks linear-scale (unlogged): a maximum above :data:`UNLOGGED_MAX`, or
    non-negative values with a heavy right skew (sample skewness above 10). Returns the message."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 3:
        return None
    vmax, sd = float(v.max()), float(v.std())
    skew = float(np.mean(((v - v.mean()) / sd) ** 3)) if sd > 0 else 0.0
    if vmax <= UNLOGGED_MAX and not (v.min() >= 0 and skew > 10):
        return None
    why = f"values up to {vmax:.4g}" if vmax > UNLOGGED_MAX else f"a heavy right skew (skewness {skew:.1f})"
    return warn_input(f"the expression looks unlogged ({why}; median {float(np.median(v)):.4g}): linear-scale "
                      "counts, TPM or FPKM make a few genes dominate the standardised omics vector", file=path,
                      fix="log-transform the matrix before preparing, e.g. log2(x + 1) for TPM/FPKM/counts "
                          "(ignore if the values are already on a log scale)", stacklevel=3)


def _jsonable_attr(v):
    if v is None:
        return None
    if isinstance(v, pd.DataFrame):
        return v.astype(str).to_dict(orient="records")
    if isinstance(v, pd.Series):
        return {str(k): str(x) for k, x in v.items()}
    if isinstance(v, Mapping):
        return {str(k): (x if isinstance(x, (int, float, bool)) or x is None else str(x)) for k, x in v.items()}
    return str(v)


def select_genes(expr_genes: list[str], gene_sets, min_genes: int, log: IngestLog) -> tuple[list[str], dict]:
    """Every gene of the matrix (expression column order) and pathway -> indices into those genes.

    No gene is dropped for being in no gene set: genome-wide methods read all genes, pathway methods
    read the genes the pathways index.
    """
    if gene_sets is None:
        return list(expr_genes), {}
    gmt = read_gmt(gene_sets)
    present = set(expr_genes)
    absent = sorted({g for gs in gmt.values() for g in gs if g not in present})
    log.drop("genes", absent, "in the gene sets but not in the expression matrix", file=gene_sets,
             fix="use gene symbols matching the expression matrix (ignore if expected)")
    kept: dict[str, list[str]] = {}
    small = []
    for name, gs in gmt.items():
        gs = list(dict.fromkeys(g for g in gs if g in present))
        if len(gs) >= min_genes:
            kept[name] = gs
        else:
            small.append(name)
    log.drop("pathways", small, f"fewer than min_genes_per_pathway={min_genes} genes in the expression matrix",
             file=gene_sets, fix="lower min_genes_per_pathway or check gene identifiers")
    if not kept:
        raise InputError(f"no pathway keeps {min_genes} or more genes of the expression matrix", file=gene_sets,
                         fix="check that the GMT and the expression matrix use the same gene identifiers "
                             "(symbols vs Ensembl ids)")
    genes = list(expr_genes)
    index = {g: i for i, g in enumerate(genes)}
    return genes, {name: [index[g] for g in gs] for name, gs in kept.items()}


def load_reports(path: Path, known: set[str], log: IngestLog) -> pd.DataFrame:
    """Reports (``case_id, text``) of ``known`` cases: empty texts left out, several per case joined."""
    rep = read_reports(path).copy()
    rep["case_id"] = rep["case_id"].astype(str).str.strip()
    rep["text"] = rep["text"].fillna("").astype(str).str.strip()
    empty = rep.loc[rep["text"] == "", "case_id"]
    log.note("reports", empty, "empty report text (has_report False)", file=path)
    rep = rep[rep["text"] != ""]
    if rep["case_id"].duplicated().any():
        dup = sorted(set(rep.loc[rep["case_id"].duplicated(), "case_id"]))
        log.warn(f"{len(dup)} case(s) have several reports; their texts are joined", file=path, case=names(dup),
                 fix="keep one report per case if that is not intended")
        rep = rep.groupby("case_id", sort=False, as_index=False)["text"].agg("\n".join)
    extra = rep.loc[~rep["case_id"].isin(known), "case_id"]
    log.unmatch("reports", extra, "case not in the clinical table; dropped", file=path,
                fix="add the patient to the clinical table (a patient needs a site), or ignore")
    return rep[rep["case_id"].isin(known)].reset_index(drop=True)


def check_ood_sites(ood_sites: Iterable[str], sites: set[str], log: IngestLog) -> list[str]:
    """The OOD sites present in the cohort (upper-cased, sorted); absent ones are warned about."""
    ood = [str(s).strip().upper() for s in ood_sites if str(s).strip()]
    unknown = [s for s in ood if s not in sites]
    if unknown:
        log.warn(f"OOD site(s) {unknown} are not in the cohort (sites: {sorted(sites)})",
                 fix="check the ood_sites spelling (sites are upper-case, e.g. COADREAD)")
    return sorted(set(ood) & sites)
