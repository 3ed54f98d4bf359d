"""Patients of the cohort: the clinical table read, sited, labelled and worded.

The clinical table defines the patients: every case in it is kept, whatever else it lacks. Each
gets a site (a ``site`` column wins, else the site of its ``project_id`` under the site scheme,
:mod:`..site_schemes`: ModalTune's organ grouping or one site per TCGA project; else
:data:`UNKNOWN_SITE`), a subtype from the grouping (an unknown diagnosis
keeps the patient without one and warns with the fix), and stage/TNM in the words of the prompts.
Slide ids named in the clinical table (SurvPath style) are kept as a slide -> case map for the
feature files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from ...errors import InputError
from ..formats import read_clinical
from ..formats.ids import names, strip_slide_ext
from ..formats.tables import text_or_none
from ..labels import (
    Grouping,
    assign_subtype,
    default_grouping,
    load_grouping,
    m_to_words,
    n_to_words,
    stage_to_words,
    t_to_words,
)
from ..site_schemes import DEFAULT_SITE_SCHEME, site_of_project
from .log import IngestLog

__all__ = ["UNKNOWN_SITE", "resolve_grouping", "load_clinical", "assign_sites", "assign_labels"]

#: Site of a patient with neither a ``site`` nor a ``project_id`` (kept, warned).
UNKNOWN_SITE = "UNKNOWN"


def resolve_grouping(grouping) -> Grouping:
    """The grouping to use: None (ModalTune Table 4), a YAML path, a dict of that shape, or a ``Grouping``."""
    if grouping is None:
        return default_grouping()
    if isinstance(grouping, (str, Path)):
        return load_grouping(grouping)
    if isinstance(grouping, Mapping):
        return Grouping.from_dict(grouping)
    return grouping


def load_clinical(path: Path, columns, log: IngestLog) -> tuple[pd.DataFrame, dict[str, str], bool]:
    """Read the clinical table (one row per case; the reader merges agreeing duplicate rows and rejects
    conflicting ones); also the slide -> case map of a slide_id column and whether the reader already
    warned about patients without survival."""
    df = read_clinical(path, columns=dict(columns) if columns else None)
    attrs = dict(df.attrs)
    df = df.copy()
    case = df["case_id"].astype("string").str.strip()
    no_case = (case.isna() | (case == "")).to_numpy()
    if no_case.any():
        bad = df.loc[no_case]
        pairs = zip(bad.get("project_id", [None] * len(bad)), bad.get("primary_diagnosis", [None] * len(bad)))
        items = [f"row without case id #{k + 1} ({text_or_none(p) or 'no project'}, "
                 f"{text_or_none(d) or 'no diagnosis'})" for k, (p, d) in enumerate(pairs)]
        log.drop("clinical rows", items, "no case id (cannot be a patient)", file=path,
                 fix="fill the case id column (or map it with clinical_columns)")
    df = df.loc[~no_case].copy()
    df["case_id"] = case[~no_case].astype(str).to_numpy()
    if df["case_id"].duplicated().any():
        dup = sorted(set(df.loc[df["case_id"].duplicated(), "case_id"]))
        raise InputError(f"clinical table has several rows for case(s) {names(dup)}", file=path, case=dup[0],
                         fix="keep one row per patient")
    slide_map: dict[str, str] = {}
    for sid, cid in (attrs.get("slide_case") or {}).items():
        slide_map[strip_slide_ext(str(sid).strip())] = str(cid)
    if "slide_id" in df.columns:
        for sids, cid in zip(df["slide_id"], df["case_id"]):
            for sid in str(sids).split(";") if isinstance(sids, str) else []:
                if sid.strip():
                    slide_map.setdefault(strip_slide_ext(sid.strip()), cid)
        df = df.drop(columns=["slide_id"])
    return df.reset_index(drop=True), slide_map, "no_survival" in attrs


def assign_sites(clin: pd.DataFrame, path: Path, log: IngestLog, scheme: str = DEFAULT_SITE_SCHEME) -> pd.Series:
    """Site per case: a ``site`` column, else the site of ``project_id`` under ``scheme``, else UNKNOWN.

    Args:
        clin: the clinical table (one row per case).
        path: the clinical table's file, for messages.
        log: the ingest log (patients without project and site are noted and warned about).
        scheme: a site scheme of :mod:`..site_schemes` (``modaltune`` or ``tcga_project``).

    Returns:
        The site of each row (upper case), indexed like ``clin``.
    """
    given = clin["site"] if "site" in clin.columns else pd.Series([None] * len(clin), index=clin.index)
    sites = []
    for site, project in zip(given, clin.get("project_id", pd.Series([None] * len(clin)))):
        if isinstance(site, str) and site.strip():
            sites.append(site.strip().upper())
        elif isinstance(project, str) and project.strip():
            sites.append(site_of_project(project, scheme))
        else:
            sites.append(UNKNOWN_SITE)
    sites = pd.Series(sites, index=clin.index, dtype=object)
    unknown = clin.loc[sites == UNKNOWN_SITE, "case_id"]
    if len(unknown):
        log.note("patients", unknown, f"no project_id and no site; kept with site {UNKNOWN_SITE}", file=path)
        log.warn(f"{len(unknown)} patient(s) have neither project_id nor site; kept with site {UNKNOWN_SITE}: "
                 f"{names(unknown)}", file=path, fix="fill project_id or add a `site` column to the clinical table")
    return sites


def _diagnosis_text(diagnosis: str) -> str:
    text = diagnosis.strip()
    if text.lower().endswith(", nos"):
        text = text[:-5]
    return text.lower()


def assign_labels(clin: pd.DataFrame, grouping, path: Path, log: IngestLog) -> pd.DataFrame:
    """Subtype, rare flag, location, diagnosis text and TNM words per case (index aligned to clin)."""
    rows, unknown, no_site = [], {}, {}
    none = [None] * len(clin)
    for site, diag, project in zip(clin["site"], clin.get("primary_diagnosis", none), clin.get("project_id", none)):
        diag = text_or_none(diag)
        site_g = grouping.sites.get(site)
        cls_name, idx, rare = (None, None, False)
        if diag is not None and site_g is not None:
            cls_name, idx, rare = assign_subtype(grouping, site, diag, project=text_or_none(project))
        rows.append({
            "subtype": cls_name or "",
            "subtype_index": -1 if idx is None or rare else int(idx),
            "rare": bool(rare),
            "location": (getattr(site_g, "location", "") or "") if site_g is not None else "",
            "diagnosis_text": _diagnosis_text(cls_name) if cls_name and not rare else (
                _diagnosis_text(diag) if diag else ""),
        })
        if diag is not None and site_g is None:
            no_site.setdefault(site, []).append(len(rows) - 1)
        elif diag is not None and cls_name is None and not rare:
            unknown.setdefault((site, diag), []).append(len(rows) - 1)
    out = pd.DataFrame(rows, index=clin.index)
    if out["rare"].any():
        out.loc[out["rare"], "subtype"] = ""
    cases = clin["case_id"].to_numpy()
    for (site, diag), pos in unknown.items():
        log.note("patients", cases[pos], f"unknown diagnosis '{diag}' for site {site}: kept without subtype",
                 file=path)
        log.warn(f"unknown diagnosis '{diag}' for site {site} in {len(pos)} patient(s) (kept without subtype)",
                 file=path, case=names(cases[pos]),
                 fix=f"add '{diag}' to a class or the rare list of {site} in a grouping YAML and pass it as "
                     "`grouping`")
    for site, pos in no_site.items():
        log.note("patients", cases[pos], f"site {site} not in the grouping: kept without subtype", file=path)
        log.warn(f"site {site} has no subtype grouping; {len(pos)} patient(s) kept without subtype",
                 file=path, case=names(cases[pos]),
                 fix=f"add {site} to a grouping YAML and pass it as `grouping` (only needed for subtyping)")
    for col, fn in (("stage", stage_to_words), ("t", t_to_words), ("n", n_to_words), ("m", m_to_words)):
        src = clin[col] if col in clin.columns else [None] * len(clin)
        out[col] = [fn(v) or "" for v in src]  # fn gives None for a missing value
    return out
