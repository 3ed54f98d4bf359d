"""Scores of a method on a set of patients: per-site metrics for label-trained methods, and the
per-epoch validation scores used for epoch selection.

Epoch selection looks at the validation split only: text-supervised methods are scored by probes
fitted on the training patients' embeddings and applied to the validation patients (per site);
label-supervised methods by their own predictions on the validation patients. The test split is
never touched here.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..evaluation.metrics import balanced_accuracy, c_index, ipcw_c_index_detail
from ..evaluation.probing import probe_metrics, subtype_labels, survival_arrays
from .inference import infer

__all__ = ["SELECT_METRICS", "nanmean", "label_metrics", "site_means", "resolve_select_metric", "score_epoch",
           "add_overall"]

SELECT_METRICS = ("val_balanced_accuracy", "val_c_index", "val_loss", "last")
SITE_METRICS = ("balanced_accuracy", "c_index", "ipcw_c_index")


def nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def label_metrics(df_eval: pd.DataFrame, pred_class: np.ndarray, risk: np.ndarray, df_train: pd.DataFrame
                  ) -> dict[str, dict]:
    """Per-site metrics of a label-trained method's own predictions (rows of ``df_eval``)."""
    y = subtype_labels(df_eval)
    t, e, has = survival_arrays(df_eval)
    t_tr, e_tr, h_tr = survival_arrays(df_train)
    site_ev = df_eval["site"].astype(str).to_numpy()
    site_tr = df_train["site"].astype(str).to_numpy()
    risk = np.asarray(risk, dtype=float)
    out: dict[str, dict] = {}
    for site in dict.fromkeys(site_ev):
        m = site_ev == site
        ms = m & has & np.isfinite(risk)
        tr = (site_tr == site) & h_tr
        bacc = balanced_accuracy(y[m], pred_class[m]) if (pred_class[m] >= 0).any() else float("nan")
        cidx = c_index(t[ms], e[ms], risk[ms]) if ms.any() else float("nan")
        ipcw, why = (ipcw_c_index_detail(t_tr[tr], e_tr[tr], t[ms], e[ms], risk[ms]) if ms.any()
                     else (float("nan"), "no risk predictions"))
        row = {"balanced_accuracy": bacc, "c_index": cidx, "ipcw_c_index": ipcw, "n": int(m.sum()),
               "n_events": int((e & has & m).sum()), "n_train": int((site_tr == site).sum()),
               "n_subtype": int((y[m] >= 0).sum())}
        if why and ms.any():
            row["notes"] = f"ipcw_c_index: {why}"
        out[site] = row
    return out


def site_means(per_site: Mapping[str, Mapping]) -> dict[str, float]:
    """Mean over sites of each metric (sites where it is NaN are skipped)."""
    return {k: nanmean([m.get(k) for m in per_site.values()]) for k in SITE_METRICS}


def add_overall(per_site: dict[str, dict]) -> dict[str, dict]:
    """Add ``overall``: the mean over sites of each metric (as the paper's Overall column), n summed."""
    out = dict(per_site)
    overall = site_means(per_site)
    overall["n"] = int(sum(int(m.get("n", 0)) for m in per_site.values()))
    overall["n_events"] = int(sum(int(m.get("n_events", 0)) for m in per_site.values()))
    overall["n_sites"] = len(per_site)
    out["overall"] = overall
    return out


def resolve_select_metric(cfg: Mapping, supervision: str, task: str | None, train_df: pd.DataFrame) -> str:
    """``train.select_metric``; "auto" = validation balanced accuracy when subtype labels exist
    (and the method predicts subtypes), else validation C-index."""
    name = str(cfg["train"].get("select_metric", "auto"))
    if name != "auto":
        if name not in SELECT_METRICS:
            raise ConfigError(f"train.select_metric must be auto or one of {SELECT_METRICS}, not '{name}'")
        return name
    if supervision == "labels" and task == "survival":
        return "val_c_index"
    if supervision == "labels" and task == "subtype":
        return "val_balanced_accuracy"
    y = subtype_labels(train_df)
    sites = train_df["site"].astype(str).to_numpy()
    has_sub = any(len(np.unique(y[(sites == s) & (y >= 0)])) >= 2 for s in np.unique(sites))
    return "val_balanced_accuracy" if has_sub else "val_c_index"


def score_epoch(method, *, supervision: str, train_ds, val_ds, train_df: pd.DataFrame, val_df: pd.DataFrame,
                cfg: Mapping, device, precision: str) -> dict[str, float]:
    """Validation scores of the current weights (see the module docstring)."""
    nan = float("nan")
    if len(val_ds) == 0:
        return {"val_loss": nan, "val_balanced_accuracy": nan, "val_c_index": nan, "val_ipcw_c_index": nan}
    nw = int(cfg["data"].get("num_workers") or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if supervision == "text":
            val = infer(method, val_ds, device=device, precision=precision, embed=True, loss=True, num_workers=nw)
            tr = infer(method, train_ds, device=device, precision=precision, embed=True, num_workers=nw)
            per_site = probe_metrics(tr.embeddings, val.embeddings, train_df, val_df, cfg=cfg)
        else:
            val = infer(method, val_ds, device=device, precision=precision, embed=False, predict=True, loss=True,
                        num_workers=nw)
            per_site = label_metrics(val_df, val.pred_class, val.risk, train_df)
    means = site_means(per_site)
    return {"val_loss": val.loss, "val_balanced_accuracy": means["balanced_accuracy"],
            "val_c_index": means["c_index"], "val_ipcw_c_index": means["ipcw_c_index"]}


def is_better(score: float, best: float | None, lower: bool) -> bool:
    if best is None:
        return True
    if math.isnan(score):
        return math.isnan(best)      # without a usable metric the later epoch is kept
    if math.isnan(best):
        return True
    return score < best if lower else score > best
