"""The oracle C-index of a synthetic cohort on any subset of its patients.

A benchmark scores models on test folds, so the oracle it compares against must be computed on the
same patients: :func:`oracle_c_index` reads a ``truth.csv`` written by
:func:`~modaltune.synthetic.make_pan_cancer` or :func:`~modaltune.synthetic.make_subspace_cohort` and
scores the planted risk with :func:`modaltune.evaluation.metrics.c_index` (the function that scores
every model) on the written times, per site and pooled.

Per site the oracle scores ``risk`` (the planted log-hazard up to the site's constant). Pooled over
sites it scores ``log_hazard`` = ``risk`` plus the site's baseline (``-k log scale_site``), because
sites differ in baseline hazard and the true pooled ranking includes that difference. Any other
truth column (e.g. one risk component) can be scored the same way (``risk=``); pooled, it gets the
same site baseline added.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..evaluation.metrics import c_index

__all__ = ["oracle_c_index"]


def _read_truth(truth: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(truth, pd.DataFrame):
        return truth
    path = Path(truth)
    if path.is_dir():
        path = path / "truth.csv"
    if not path.is_file():
        raise InputError("no truth.csv of a synthetic cohort", file=path,
                         fix="pass the truth.csv (or the cohort directory) that make_pan_cancer / "
                             "make_subspace_cohort wrote")
    return pd.read_csv(path, dtype={"case_id": str})


def oracle_c_index(truth: str | Path | pd.DataFrame, case_ids: Iterable[str] | None = None, *,
                   endpoint: str = "os", risk: str = "risk") -> dict:
    """The C-index of the planted risk on the written survival, per site and pooled.

    Args:
        truth: truth.csv (path, cohort directory, or DataFrame) with columns ``case_id, site, risk,
            log_hazard, <endpoint>_months, <endpoint>_event``.
        case_ids: the patients to score (e.g. a test fold); None scores all.
        endpoint: ``"os"`` or (pan-cancer cohort) ``"pfs"``.
        risk: the truth column to score (default the total planted risk; e.g. ``"risk_shared"`` for the
            ceiling of a model that only sees the shared expression program).

    Returns:
        ``{"sites": {site: C or NaN}, "overall": C pooled over sites (column + site baseline),
        "site_mean": mean of the finite per-site values, "n": {site: patients scored}}``; NaN where
        no pair is comparable.

    Raises:
        InputError: missing columns, an unknown endpoint, or case ids not in the truth table.
    """
    df = _read_truth(truth)
    need = ["case_id", "site", risk, "risk", "log_hazard", f"{endpoint}_months", f"{endpoint}_event"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"truth table lacks column(s) {missing} for endpoint '{endpoint}'",
                         fix="use endpoint 'os' (or 'pfs' for the pan-cancer cohort) and a risk column of truth.csv")
    if case_ids is not None:
        wanted = [str(c) for c in case_ids]
        unknown = sorted(set(wanted) - set(df["case_id"]))
        if unknown:
            raise InputError(f"{len(unknown)} case id(s) are not in the truth table, e.g. {unknown[:3]}",
                             fix="pass case ids of this synthetic cohort (12-character TCGA case ids)")
        df = df[df["case_id"].isin(set(wanted))]
    time, event = df[f"{endpoint}_months"].to_numpy(float), df[f"{endpoint}_event"].to_numpy(int)
    score = df[risk].to_numpy(float)
    sites = {}
    counts = {}
    for site in dict.fromkeys(df["site"]):
        m = (df["site"] == site).to_numpy()
        sites[str(site)] = round(c_index(time[m], event[m], score[m]), 4) if m.sum() >= 2 else float("nan")
        counts[str(site)] = int(m.sum())
    pooled = score + (df["log_hazard"] - df["risk"]).to_numpy(float)
    finite = [v for v in sites.values() if np.isfinite(v)]
    return {"sites": sites, "overall": round(c_index(time, event, pooled), 4) if len(df) >= 2 else float("nan"),
            "site_mean": round(float(np.mean(finite)), 4) if finite else float("nan"), "n": counts}
