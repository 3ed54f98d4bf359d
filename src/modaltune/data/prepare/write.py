"""Writing the cohort directory: the manifest rows, ``cohort.json`` and every file of the layout.

The layout itself (file names, manifest columns and their types) is owned by :mod:`..cohort`, the
reader, so writer and reader cannot drift apart; this module fills it in. The manifest has one row
per patient, sorted by case id so re-running ``prepare`` writes the same file; endpoints besides OS
add ``<ep>_months``, ``<ep>_event``, ``has_<ep>`` after the contract's columns (none without them, so a
clinical table without endpoints writes the same manifest as before). Files an earlier run
wrote but this one does not (an expression file of the other format, reports, the retired
``prompts.csv``) are removed, so a cohort directory never mixes two runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort import COHORT_FORMAT_VERSION, MANIFEST_COLUMNS
from ..formats.endpoints import ENDPOINTS
from ..formats.tables import text_or_none
from .features import FeatureSet
from .summary import format_summary

__all__ = ["build_manifest", "endpoints_of", "cohort_meta", "write_cohort"]


def _slides_by_case(slides: FeatureSet | None) -> dict[str, list[str]]:
    by_case: dict[str, list[str]] = {}
    if slides is not None:
        for sid in sorted(slides.paths):
            by_case.setdefault(slides.case_of[sid], []).append(sid)
    return by_case


def build_manifest(clin: pd.DataFrame, lab: pd.DataFrame, prim: FeatureSet | None, sec: FeatureSet | None,
                    expr: pd.DataFrame | None, rep: pd.DataFrame | None, ood: list[str]) -> pd.DataFrame:
    """One row per clinical patient with the columns :data:`~modaltune.data.cohort.MANIFEST_COLUMNS`.

    Args:
        clin: the clinical table (one row per case, with ``site``).
        lab: labels and words per case, aligned to ``clin`` (``clinical.assign_labels``).
        prim: kept primary feature files, or None.
        sec: kept secondary feature files, or None.
        expr: expression of the kept cases, or None.
        rep: reports of the kept cases, or None.
        ood: the out-of-distribution sites.

    Returns:
        The manifest, sorted by case id (endpoint columns of :func:`endpoints_of` last).
    """
    p_by, s_by = _slides_by_case(prim), _slides_by_case(sec)
    omics = set(expr.index) if expr is not None else set()
    reported = set(rep["case_id"]) if rep is not None else set()
    months = pd.to_numeric(clin.get("survival_months"), errors="coerce").astype(float)
    event = pd.to_numeric(clin.get("event"), errors="coerce").astype(float)
    projects, diagnoses = _text_column(clin, "project_id"), _text_column(clin, "primary_diagnosis")
    rows = []
    for i, case in enumerate(clin["case_id"]):
        ps, ss = p_by.get(case, []), s_by.get(case, [])
        m, e = months.iloc[i], event.iloc[i]
        rows.append({
            "case_id": case, "site": clin["site"].iloc[i],
            "project_id": projects[i], "primary_diagnosis": diagnoses[i],
            **lab.iloc[i].to_dict(),
            "survival_months": m, "event": e,
            "has_survival": bool(np.isfinite(m) and m >= 0 and e in (0.0, 1.0)),
            "has_wsi": bool(ps), "has_wsi_secondary": bool(ss), "has_omics": case in omics,
            "has_report": case in reported, "n_slides": len(ps), "slides": ";".join(ps),
            "slide_paths": ";".join(str(prim.paths[s].resolve()) for s in ps),
            "slide_paths_secondary": ";".join(str(sec.paths[s].resolve()) for s in ss),
            "ood": clin["site"].iloc[i] in ood,
            "n_patches": sum(prim.n_patches[s] for s in ps) if ps else 0,
            "n_patches_secondary": sum(sec.n_patches[s] for s in ss) if ss else 0,
        })
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    for ep in endpoints_of(clin):
        ep_months = pd.to_numeric(clin[f"{ep}_months"], errors="coerce").astype(float).to_numpy()
        ep_event = pd.to_numeric(clin[f"{ep}_event"], errors="coerce").astype(float).to_numpy()
        ok = np.isfinite(ep_months) & (ep_months >= 0) & np.isin(ep_event, (0.0, 1.0))
        df[f"{ep}_months"], df[f"{ep}_event"], df[f"has_{ep}"] = ep_months, ep_event, ok
    return df.sort_values("case_id", kind="stable").reset_index(drop=True)


def endpoints_of(table: pd.DataFrame) -> list[str]:
    """The endpoints besides OS that a clinical table or manifest has (``<ep>_months`` and ``<ep>_event``)."""
    return [ep for ep in ENDPOINTS if f"{ep}_months" in table and f"{ep}_event" in table]


def _text_column(clin: pd.DataFrame, col: str) -> list[str]:
    """The stripped text of ``clin[col]`` per row, "" for a missing value or column."""
    if col not in clin:
        return [""] * len(clin)
    return [text_or_none(v) or "" for v in clin[col]]


def cohort_meta(manifest, prim, sec, genes, pathways, ood, grouping, min_genes, inputs,
                site_scheme: str = "modaltune") -> dict:
    """The content of ``cohort.json``: format version, widths, genes, sites, site scheme, endpoints, grouping
    and input paths."""
    from ... import __version__

    return {
        "format_version": COHORT_FORMAT_VERSION,
        "version": __version__,
        "n_patients": int(len(manifest)),
        "feature_dim": prim.dim if prim is not None else 0,
        "feature_dim_secondary": sec.dim if sec is not None else 0,
        "n_genes": len(genes),
        "n_pathways": len(pathways),
        "sites": sorted(manifest["site"].unique()),
        "site_scheme": site_scheme,
        "endpoints": ["os", *endpoints_of(manifest)],
        "ood_sites": list(ood),
        "min_genes_per_pathway": int(min_genes),
        "grouping": grouping.to_dict(),
        "inputs": {k: (None if v is None else str(Path(v).resolve())) for k, v in inputs.items()},
    }


def write_cohort(out: Path, manifest, expr, genes, pathways, rep, summary, meta, grouping) -> None:
    """Write every file of the cohort directory ``out`` (``meta`` gains ``expression_file``)."""
    import yaml

    from ...utils import write_json

    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    for stale in ("expression.parquet", "expression.csv.gz", "reports.csv", "prompts.csv"):
        (out / stale).unlink(missing_ok=True)
    if expr is not None:
        meta["expression_file"] = _write_expression(out, expr)
    write_json(out / "gene_sets.json", {"genes": genes, "pathways": pathways})
    if rep is not None:
        rep[["case_id", "text"]].to_csv(out / "reports.csv", index=False, lineterminator="\n")
    (out / "grouping.yaml").write_text(yaml.safe_dump(meta["grouping"], sort_keys=False))
    write_json(out / "summary.json", summary)
    (out / "summary.txt").write_text(format_summary(summary))
    write_json(out / "cohort.json", meta)


def _write_expression(out: Path, expr: pd.DataFrame) -> str:
    expr = expr.copy()
    expr.index.name = "case_id"
    try:
        import pyarrow  # noqa: F401

        expr.to_parquet(out / "expression.parquet")
        return "expression.parquet"
    except ImportError:
        expr.to_csv(out / "expression.csv.gz", float_format="%.7g", lineterminator="\n")
        return "expression.csv.gz"
