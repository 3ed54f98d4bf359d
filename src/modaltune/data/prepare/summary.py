"""The cohort summary: counts per site, class, modality and survival, plus everything left out.

``summary.json`` is for programs and ``summary.txt`` (:func:`format_summary`) for the person who ran
``prepare``: it is printed at the end, so the first thing a user sees is how many patients have each
modality and what was dropped and why. Both come from one dict built by :func:`build_summary`.
Endpoints besides OS get the same counts as OS (patients with a value, events, censored, missing) per
site, so a user sees before training whether a site has enough PFS events to be scored on PFS.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ..formats.endpoints import ENDPOINTS
from ..formats.ids import names
from .features import FeatureSet
from .log import IngestLog

__all__ = ["note_missing", "build_summary", "format_summary"]


def note_missing(manifest: pd.DataFrame, log: IngestLog, *, warn_survival: bool) -> None:
    """Record kept patients that lack a label or survival (facts, not drops)."""
    no_surv = manifest.loc[~manifest["has_survival"], "case_id"]
    log.note("patients", no_surv, "no usable survival (months/event missing or invalid): kept, has_survival False")
    if len(no_surv) and warn_survival:
        log.warn(f"{len(no_surv)} patient(s) have no usable survival time/event; kept with has_survival False: "
                 f"{names(no_surv)}", fix="fill vital_status and days_to_death / days_to_last_follow_up "
                                           "(only needed for survival tasks)")
    for ep in _endpoints(manifest):
        log.note("patients", manifest.loc[~manifest[f"has_{ep}"], "case_id"],
                 f"no usable {ep.upper()} (months/event missing or invalid): kept, has_{ep} False")
    no_diag = manifest.loc[manifest["primary_diagnosis"] == "", "case_id"]
    log.note("patients", no_diag, "no primary diagnosis: kept without subtype")


def _class_counts(df: pd.DataFrame) -> dict[str, int]:
    counts = Counter(df.loc[df["subtype"] != "", "subtype"])
    out = {k: int(counts[k]) for k in sorted(counts)}
    out["rare"] = int(df["rare"].sum())
    out["none"] = int(((df["subtype"] == "") & ~df["rare"]).sum())
    return out


def _modality_counts(df: pd.DataFrame) -> dict[str, int]:
    has = {"wsi": df["has_wsi"], "wsi_secondary": df["has_wsi_secondary"], "omics": df["has_omics"],
           "report": df["has_report"]}
    out = {k: int(v.sum()) for k, v in has.items()}
    out["wsi_and_omics"] = int((df["has_wsi"] & df["has_omics"]).sum())
    out["no_modality"] = int((~df["has_wsi"] & ~df["has_omics"] & ~df["has_report"]).sum())
    out["slides"] = int(df["n_slides"].sum())
    out["multi_slide_patients"] = int((df["n_slides"] > 1).sum())
    return out


def _endpoints(df: pd.DataFrame) -> list[str]:
    return [ep for ep in ENDPOINTS if {f"{ep}_event", f"has_{ep}"} <= set(df.columns)]


def _survival_counts(df: pd.DataFrame, event: str = "event", has: str = "has_survival") -> dict[str, int]:
    s = df[df[has]]
    return {"with_survival": int(len(s)), "events": int((s[event] == 1).sum()),
            "censored": int((s[event] == 0).sum()), "missing": int((~df[has]).sum())}


def _group_summary(df: pd.DataFrame) -> dict:
    out = {"patients": int(len(df)), "classes": _class_counts(df), "modalities": _modality_counts(df),
           "survival": _survival_counts(df)}
    eps = _endpoints(df)
    if eps:
        out["endpoints"] = {ep: _survival_counts(df, f"{ep}_event", f"has_{ep}") for ep in eps}
    return out


def build_summary(manifest: pd.DataFrame, log: IngestLog, prim: FeatureSet | None, sec: FeatureSet | None,
                  expr_info: dict, genes: list[str], pathways: dict, site_scheme: str = "modaltune") -> dict:
    """The cohort summary: per-site and total counts plus every dropped/unmatched item.

    Args:
        manifest: the manifest (one row per patient).
        log: what was dropped, unmatched or noted.
        prim: the primary feature files, or None.
        sec: the secondary feature files, or None.
        expr_info: counts of the expression reader ({} without expression).
        genes: the genes kept.
        pathways: the pathways kept.
        site_scheme: how projects were grouped into sites.

    Returns:
        The summary dict (``summary.json``); groups have ``endpoints`` counts when the cohort has
        endpoints besides OS.
    """
    sites = {s: {**_group_summary(g), "ood": bool(g["ood"].iloc[0])} for s, g in manifest.groupby("site")}
    return {
        "n_patients": int(len(manifest)),
        "site_scheme": site_scheme,
        "total": _group_summary(manifest),
        "sites": sites,
        "features": {
            "primary": None if prim is None else {"dir": str(prim.directory), "n_slides": len(prim.paths),
                                                  "dim": prim.dim, "slides_without_coords": prim.no_coords},
            "secondary": None if sec is None else {"dir": str(sec.directory), "n_slides": len(sec.paths),
                                                   "dim": sec.dim, "slides_without_coords": sec.no_coords},
        },
        "expression": {**expr_info, "n_genes": len(genes), "n_pathways": len(pathways)} if expr_info else None,
        "dropped": log.dropped,
        "unmatched": log.unmatched,
        "notes": log.notes,
        "warnings": log.warnings,
    }


def _format_group(name: str, g: dict) -> list[str]:
    cls = ", ".join(f"{k}={v}" for k, v in g["classes"].items())
    mod = g["modalities"]
    sv = g["survival"]
    return [f"  {name}: {g['patients']} patients",
            f"    classes: {cls}",
            f"    modalities: WSI={mod['wsi']} ({mod['slides']} slides, {mod['multi_slide_patients']} multi-slide), "
            f"WSI-secondary={mod['wsi_secondary']}, omics={mod['omics']}, report={mod['report']}, "
            f"WSI+omics={mod['wsi_and_omics']}, none={mod['no_modality']}",
            f"    survival: {sv['with_survival']} with survival ({sv['events']} events, {sv['censored']} censored), "
            f"{sv['missing']} missing",
            *(f"    {ep.upper()}: {c['with_survival']} with {ep.upper()} ({c['events']} events, {c['censored']} "
              f"censored), {c['missing']} missing" for ep, c in (g.get("endpoints") or {}).items())]


def _format_items(title: str, entries: list[dict]) -> list[str]:
    if not entries:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for e in entries:
        lines.append(f"  - {e['n']} {e['kind']}: {e['reason']}" + (f" [{e['file']}]" if e.get("file") else ""))
        lines.append(f"      {names(e['items'])}")
    return lines


def format_summary(summary: dict) -> str:
    """Human-readable text of a summary dict (the content of summary.txt)."""
    lines = [f"Cohort: {summary['n_patients']} patients"]
    if summary.get("site_scheme"):
        lines.append(f"site scheme: {summary['site_scheme']}")
    lines += _format_group("all sites", summary["total"])
    for site, g in summary["sites"].items():
        lines += _format_group(site + (" (OOD)" if g.get("ood") else ""), g)
    for role, f in (summary.get("features") or {}).items():
        if f:
            lines.append(f"features ({role}): {f['n_slides']} slides of width {f['dim']} from {f['dir']}"
                         + (f"; {len(f['slides_without_coords'])} without coords (grid coords generated)"
                            if f["slides_without_coords"] else ""))
    if summary.get("expression"):
        e = summary["expression"]
        outside = e.get("n_genes_in_no_gene_set")
        lines.append(f"expression: {e.get('n_cases_kept', 0)} cases, {e['n_genes']} genes kept (all), "
                     f"{e['n_pathways']} pathways"
                     + (f"; {outside} genes in no gene set (read by genome-wide methods such as MLP and SNN, "
                        "not by pathway tokens)" if outside is not None else ""))
    lines += _format_items("dropped", summary["dropped"])
    lines += _format_items("unmatched", summary["unmatched"])
    lines += _format_items("kept but incomplete", summary.get("notes", []))
    return "\n".join(lines) + "\n"
