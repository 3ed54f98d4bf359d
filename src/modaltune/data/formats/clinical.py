"""Clinical tables (GDC and SurvPath style) into one row per patient, with survival in months.

Two shapes arrive in practice:

* GDC ``clinical.tsv``/``.csv``: ``'--`` for empty cells and **one row per treatment**, so a patient
  appears several times; vital status plus days to death / last follow-up give survival.
* SurvPath-style CSVs: **one row per slide**, ``survival_months`` and ``censorship`` (1 = censored).

Both collapse to one row per patient (:func:`read_clinical`). Rows of one patient may repeat
patient-level facts but must not contradict them: a disagreement in diagnosis, stage or survival is
an error, because silently picking one would give the patient a wrong label. Follow-up differs
legitimately between treatment rows, so the latest one is used.

Days are converted to months with :data:`DAYS_PER_MONTH` (the one constant the synthetic cohort
writer uses too, so written and read months agree).

Endpoints besides overall survival (PFS, DSS, DFS, DMFS, LRFS; TCGA-CDR ``PFI``/``PFI.time``..., our
``pfs_months``/``pfs_event``..., GDC-like ``progression``/``days_to_progression``) are read when present
and normalised to ``<ep>_months`` / ``<ep>_event`` by :mod:`.endpoints`; a table without them reads
exactly as before. TCGA-CDR's ``OS`` / ``OS.time`` (days) are accepted as overall-survival columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ...errors import InputError, warn_input
from .endpoints import ENDPOINT_ALIASES, finish_endpoints, read_endpoint_column
from .ids import names, strip_slide_ext, tcga_case_id
from .tables import clean_str, find_column, read_table, to_number

__all__ = ["DAYS_PER_MONTH", "CLINICAL_COLUMNS", "read_clinical"]

#: Days per month used to convert GDC day counts to months.
DAYS_PER_MONTH = 30.44

#: Columns of the table returned by :func:`read_clinical`, in order (``slide_id`` and ``site`` are
#: added after ``case_id`` / at the end only when the input has them).
CLINICAL_COLUMNS = ("case_id", "project_id", "primary_diagnosis", "stage", "t", "n", "m", "vital_status",
                    "days_to_death", "days_to_last_follow_up", "survival_months", "event", "oncotree_code",
                    "age")

#: our column -> accepted user column names (first present wins; case-insensitive).
_CLINICAL_ALIASES: dict[str, tuple[str, ...]] = {
    "case_id": ("case_submitter_id", "cases.submitter_id", "bcr_patient_barcode", "case_id", "patient_id",
                "patient", "submitter_id", "cases.case_id"),
    "slide_id": ("slide_id", "slide", "slide_submitter_id"),
    "project_id": ("project_id", "project.project_id", "cases.project_id", "project"),
    "primary_diagnosis": ("primary_diagnosis", "diagnoses.primary_diagnosis", "diagnosis"),
    "stage": ("ajcc_pathologic_stage", "diagnoses.ajcc_pathologic_stage", "stage", "pathologic_stage",
              "ajcc_pathologic_tumor_stage"),
    "t": ("ajcc_pathologic_t", "diagnoses.ajcc_pathologic_t", "t", "pathologic_t", "ajcc_tumor_pathologic_pt"),
    "n": ("ajcc_pathologic_n", "diagnoses.ajcc_pathologic_n", "n", "pathologic_n", "ajcc_nodes_pathologic_pn"),
    "m": ("ajcc_pathologic_m", "diagnoses.ajcc_pathologic_m", "m", "pathologic_m",
          "ajcc_metastasis_pathologic_pm"),
    "vital_status": ("vital_status", "demographic.vital_status"),
    "days_to_death": ("days_to_death", "demographic.days_to_death"),
    "days_to_last_follow_up": ("days_to_last_follow_up", "diagnoses.days_to_last_follow_up",
                               "days_to_last_followup"),
    "survival_months": ("survival_months", "os_months"),
    "os_days": ("os_days", "OS.time"),
    "event": ("event", "os_event", "OS"),
    "censorship": ("censorship", "censored"),
    "oncotree_code": ("oncotree_code", "oncotree"),
    "age": ("age_at_index", "demographic.age_at_index", "age"),
    "site": ("site",),
    **ENDPOINT_ALIASES,
}
_NUMERIC_CLINICAL = ("days_to_death", "days_to_last_follow_up", "survival_months", "os_days", "event", "censorship",
                     "age")
#: columns whose disagreement between rows of one case is an error (patient-level facts)
_STRICT_CLINICAL = ("project_id", "primary_diagnosis", "stage", "t", "n", "m", "vital_status", "days_to_death",
                    "survival_months", "os_days", "event", "censorship", "oncotree_code", "site",
                    *ENDPOINT_ALIASES)


def _resolve_clinical_columns(df: pd.DataFrame, columns: Mapping[str, str] | None, path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if columns:
        unknown = [k for k in columns if k not in _CLINICAL_ALIASES]
        if unknown:
            raise InputError(f"unknown key(s) {unknown} in the clinical column mapping", file=path,
                             fix=f"map our names {sorted(_CLINICAL_ALIASES)} to your column names")
        for ours, theirs in columns.items():
            col = find_column(df.columns, [str(theirs)])
            if col is None:
                raise InputError(f"column '{theirs}' (mapped to '{ours}') is not in the clinical table "
                                 f"(columns: {names(df.columns, 30)})", file=path,
                                 fix="fix the column mapping (`columns` / clinical_columns)")
            found[ours] = col
    for ours, aliases in _CLINICAL_ALIASES.items():
        if ours not in found:
            col = find_column(df.columns, aliases)
            if col is not None and col not in found.values():
                found[ours] = col
    if "case_id" not in found:
        raise InputError(f"the clinical table has no case id column (columns: {names(df.columns, 30)})", file=path,
                         fix="name it case_submitter_id or case_id, or map it: columns={'case_id': '<your column>'}")
    return found


def _collapse_cases(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per case: rows that agree merge (first non-empty value wins), slide ids are joined."""
    has_case = df["case_id"].notna()
    body, rest = df[has_case], df[~has_case]
    if not body["case_id"].duplicated().any():
        return df.reset_index(drop=True)
    strict = [c for c in _STRICT_CLINICAL if c in body.columns]
    dup = body[body["case_id"].duplicated(keep=False)]
    counts = dup.groupby("case_id", sort=False)[strict].nunique(dropna=True) if strict else pd.DataFrame()
    if len(counts):
        conflict = counts[(counts > 1).any(axis=1)]
        if len(conflict):
            first = str(conflict.index[0])
            cols = [c for c in strict if conflict.loc[first, c] > 1]
            values = {c: sorted(map(str, dup.loc[dup["case_id"] == first, c].dropna().unique())) for c in cols}
            raise InputError(f"the clinical table has conflicting rows for {len(conflict)} case(s) "
                             f"({names(conflict.index)}); e.g. {first} has {values}", file=path, case=first,
                             fix="keep one row per patient, or rows that agree on the patient-level values "
                                 "(diagnosis, stage/TNM, vital status, survival and other endpoints)")
    soft = [c for c in ("days_to_last_follow_up", "age") if c in body.columns]
    for col in soft:
        n_vals = dup.groupby("case_id", sort=False)[col].nunique(dropna=True)
        differ = n_vals[n_vals > 1]
        if len(differ):
            how = "the largest (latest follow-up) is used" if col == "days_to_last_follow_up" else "the first is used"
            warn_input(f"{len(differ)} case(s) have several values of {col} across their rows; {how}: "
                       f"{names(differ.index)}", file=path, case=str(differ.index[0]),
                       fix="keep one row per patient if that is not intended")
    agg: dict[str, Any] = {c: "first" for c in body.columns if c != "case_id"}
    if "days_to_last_follow_up" in agg:
        agg["days_to_last_follow_up"] = "max"
    if "slide_id" in agg:
        agg["slide_id"] = lambda s: ";".join(dict.fromkeys(str(v) for v in s.dropna())) or np.nan
    merged = body.groupby("case_id", sort=False, as_index=False).agg(agg)
    return pd.concat([merged, rest], ignore_index=True)[df.columns]


def read_clinical(path: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a clinical table (GDC or SurvPath style) into one row per patient.

    Args:
        path: ``.tsv``/``.csv`` (optionally ``.gz``); the separator is sniffed from the header line.
        columns: maps our column names to the user's (e.g. ``{"case_id": "patient", "stage": "Stage"}``).
            Our names: ``case_id, slide_id, project_id, primary_diagnosis, stage, t, n, m, vital_status,
            days_to_death, days_to_last_follow_up, survival_months, os_days, event, censorship, oncotree_code,
            age, site`` and ``<ep>_event, <ep>_months, <ep>_days`` for ``ep`` in ``pfs, dss, dfs, dmfs, lrfs``.
            Unmapped names are looked up among the usual GDC / SurvPath / GDC 2024 (``cases.``,
            ``diagnoses.``, ``demographic.`` prefixed) / TCGA-CDR column names.

    Returns:
        DataFrame with the columns :data:`CLINICAL_COLUMNS` (missing ones NaN), plus ``slide_id`` (after
        ``case_id``), ``<ep>_months`` / ``<ep>_event`` per endpoint found (after ``age``, see
        :mod:`.endpoints`) and ``site`` (last) when the input has them. Text columns hold ``str`` or NaN
        (``'--``, ``Not Reported``, ``Unknown`` ... are NaN); numeric columns are float.

        * ``case_id``: TCGA barcodes reduced to 12 characters (:func:`tcga_case_id`).
        * Survival: ``survival_months`` as given (SurvPath), else ``os_days`` (TCGA-CDR ``OS.time``) / 30.44,
          else days / 30.44 of ``days_to_death`` (``vital_status`` Dead) or ``days_to_last_follow_up`` (Alive). ``event``: as given, else
          ``1 - censorship`` (SurvPath: 1 = censored), else from ``vital_status`` (Dead = 1, Alive = 0).
          Rows without a usable pair (months >= 0 and event in {0, 1}) are **kept** with both NaN; they
          are counted in a warning and in ``df.attrs["no_survival"]`` (list of case ids).
        * Other endpoints: as OS, per endpoint (:mod:`.endpoints`); ``df.attrs["endpoints"]`` lists those
          found, ``df.attrs["no_endpoint"]`` maps each to the case ids without a usable value (warned).
        * Several rows of one case (GDC: one per treatment; SurvPath: one per slide) collapse into one
          row: the first non-empty value of each column wins, ``days_to_last_follow_up`` takes the
          largest value, ``slide_id`` becomes the ``;``-joined slide ids (``df.attrs["slide_case"]``
          maps each slide id to its case). Rows of one case that disagree on a patient-level value
          (project, diagnosis, stage/TNM, vital status, days to death, survival, site) are an error.
        * Rows with an empty case id are kept (not merged) for the caller to report.

    Raises:
        InputError: missing/unparsable file, no case id column, bad ``columns`` mapping, conflicting
            duplicate rows (naming the case).
    """
    path = Path(path)
    raw = read_table(path, "clinical", dtype=str, keep_default_na=False)
    found = _resolve_clinical_columns(raw, columns, path)
    n = len(raw)
    out = pd.DataFrame(index=range(n))
    unrecognised: dict[str, list[str]] = {}
    for ours, col in found.items():
        values = raw[col].reset_index(drop=True)
        if ours in ENDPOINT_ALIASES:
            parsed = read_endpoint_column(ours, values)
            unrecognised[ours] = parsed.attrs.pop("unrecognised", [])
            out[ours] = parsed
        else:
            out[ours] = to_number(values) if ours in _NUMERIC_CLINICAL else clean_str(values)
    out["case_id"] = out["case_id"].map(lambda v: tcga_case_id(v) if isinstance(v, str) else v)
    if "project_id" in out:
        out["project_id"] = out["project_id"].map(lambda v: v.upper() if isinstance(v, str) else v)
    if "slide_id" in out:
        out["slide_id"] = out["slide_id"].map(lambda v: strip_slide_ext(v) if isinstance(v, str) else v)
    slide_case = {}
    if "slide_id" in out:
        slide_case = {s: c for s, c in zip(out["slide_id"], out["case_id"])
                      if isinstance(s, str) and isinstance(c, str)}
    out = _collapse_cases(out, path)
    out, why = _survival(out)
    no_surv = out.loc[out["survival_months"].isna() & out["case_id"].notna(), "case_id"].tolist()
    if no_surv:
        by_reason: dict[str, list[str]] = {}
        for case in no_surv:
            by_reason.setdefault(why.get(case, "no survival time or event"), []).append(case)
        reasons = "; ".join(f"{reason}: {names(cases)}" for reason, cases in by_reason.items())
        warn_input(f"{len(no_surv)} of {int(out['case_id'].notna().sum())} patient(s) have no usable survival "
                   f"(kept with survival NaN, left out of survival training and the C-index): {reasons}",
                   file=path, case=no_surv[0],
                   fix="fill vital_status (Alive/Dead) and days_to_death (Dead) or days_to_last_follow_up "
                       "(Alive), or survival_months and censorship, with non-negative times; ignore if these "
                       "patients truly have no follow-up")
    out, endpoints, no_endpoint = finish_endpoints(out, path, DAYS_PER_MONTH, unrecognised)
    cols = ["case_id", *(["slide_id"] if "slide_id" in out else []), *CLINICAL_COLUMNS[1:],
            *[f"{ep}_{part}" for ep in endpoints for part in ("months", "event")],
            *(["site"] if "site" in out else [])]
    for c in cols:
        if c not in out:
            out[c] = np.nan
    result = out[cols].reset_index(drop=True)
    result.attrs["no_survival"] = no_surv
    result.attrs["slide_case"] = slide_case
    if endpoints:
        result.attrs["endpoints"] = endpoints
        result.attrs["no_endpoint"] = no_endpoint
    return result


def _survival(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    n = len(df)
    vital = df["vital_status"].map(lambda v: str(v).strip().lower() if isinstance(v, str) else "") \
        if "vital_status" in df else pd.Series([""] * n, index=df.index)
    dead = vital.isin(("dead", "deceased", "1"))
    alive = vital.isin(("alive", "living", "0"))
    nan = pd.Series(np.nan, index=df.index)
    if "event" in df:
        event = df["event"]
    elif "censorship" in df:
        event = 1.0 - df["censorship"]
    else:
        event = pd.Series(np.where(dead, 1.0, np.where(alive, 0.0, np.nan)), index=df.index)
    if "survival_months" in df:
        months = df["survival_months"]
    else:
        death = df["days_to_death"] if "days_to_death" in df else nan
        follow = df["days_to_last_follow_up"] if "days_to_last_follow_up" in df else nan
        by_event = pd.Series(np.where(event == 1, death, np.where(event == 0, follow, np.nan)), index=df.index)
        months = by_event / DAYS_PER_MONTH
        if "os_days" in df:  # TCGA-CDR OS.time: days to death or last contact, whichever the event says
            months = (df["os_days"] / DAYS_PER_MONTH).fillna(months)
    months = months.astype(float)
    event = event.astype(float)
    ok = months.notna() & (months >= 0) & event.isin((0.0, 1.0))
    why = {}
    given_time = "survival_months" in df or "os_days" in df
    for i in np.flatnonzero(~ok.to_numpy()):
        case, m, e = df["case_id"].iloc[i], months.iloc[i], event.iloc[i]
        if not isinstance(case, str):
            continue
        if pd.notna(m) and m < 0:
            why[case] = f"negative survival time ({m:.1f} months; a time before diagnosis is a data error)"
        elif not event.iloc[i:i + 1].isin((0.0, 1.0)).all():
            if "event" in df or "censorship" in df:
                why[case] = "event/censorship missing or not 0/1"
            else:
                why[case] = ("vital status missing or not Alive/Dead (e.g. 'Not Reported', 'Unknown': "
                             "alive or dead is not known, so neither an event nor a censoring time exists)")
        elif given_time:
            why[case] = "survival time missing"
        elif e == 1:
            why[case] = "Dead but days_to_death missing"
        else:
            why[case] = "Alive but days_to_last_follow_up missing"
    df["survival_months"] = months.where(ok)
    df["event"] = event.where(ok)
    return df, why
