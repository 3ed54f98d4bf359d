"""Per-epoch validation scores, and which of them selects the epoch.

Epoch selection looks at the validation split only: ``probe`` methods are scored by probes fitted
on the training patients' embeddings and applied to the validation patients (per site); ``predict``
methods by their own predictions on the validation patients. The test split is never touched here.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..evaluation.per_site import label_metrics, probe_metrics, site_means, subtype_labels
from ..methods.base import Declaration
from ..runs.inference import infer

__all__ = ["SELECT_METRICS", "resolve_select_metric", "score_epoch", "is_better", "task_mean"]

SELECT_METRICS = ("val_balanced_accuracy", "val_auc", "val_c_index", "val_mean", "val_loss", "last")


def resolve_select_metric(cfg: Mapping, decl: Declaration, train_df: pd.DataFrame) -> str:
    """``train.select_metric``; "auto" = the metric of a single-task run; for a multi-task run with
    subtype labels ``val_mean`` (mean of validation balanced accuracy and C-index) when one probed
    embedding serves both tasks (ModalTune; the paper selected on classification alone, which the
    ``paper`` configs keep) and validation balanced accuracy otherwise; without subtype labels the
    validation C-index.

    A mapping from task to metric (``{subtype: val_auc, survival: val_c_index}``) names the metric per
    task: a single-task run takes its task's entry, a multi-task run or a task the mapping does not name
    resolves as ``auto``. One setting can so give every model of a table the same epoch choice in a
    benchmark that trains both tasks (the disentangled paper's tables select on AUC).
    """
    name = _named_metric(cfg["train"].get("select_metric", "auto"), decl)
    if name == "auto" and decl.select_metric != "auto":
        name = decl.select_metric
    if name != "auto":
        if name not in SELECT_METRICS:
            raise ConfigError(f"train.select_metric must be auto or one of {SELECT_METRICS}, not '{name}'")
        return name
    if tuple(decl.tasks) == ("survival",):
        return "val_c_index"
    if tuple(decl.tasks) == ("subtype",):
        return "val_balanced_accuracy"
    y = subtype_labels(train_df)
    sites = train_df["site"].astype(str).to_numpy()
    has_sub = any(len(np.unique(y[(sites == s) & (y >= 0)])) >= 2 for s in np.unique(sites))
    if not has_sub:
        return "val_c_index"
    # one probed embedding serves both tasks: neither task alone chooses its epoch (issue 15)
    return "val_mean" if decl.evaluation == "probe" else "val_balanced_accuracy"


def _named_metric(value, decl: Declaration) -> str:
    """The metric a ``train.select_metric`` value names for this run ("auto" when it names none)."""
    if not isinstance(value, Mapping):
        return str(value)
    unknown = sorted(set(map(str, value)) - {"subtype", "survival"})
    if unknown:
        raise ConfigError(f"train.select_metric maps tasks to metrics; {unknown} is not a task "
                          f"(use subtype and/or survival, e.g. {{subtype: val_auc, survival: val_c_index}})")
    tasks = tuple(decl.tasks)
    return str(value.get(tasks[0], "auto")) if len(tasks) == 1 else "auto"


def score_epoch(method, *, decl: Declaration, train_ds, val_ds, train_df: pd.DataFrame, val_df: pd.DataFrame,
                cfg: Mapping, device, precision: str) -> dict[str, float]:
    """Validation scores of the current weights (see the module docstring)."""
    nan = float("nan")
    if len(val_ds) == 0:
        return {"val_loss": nan, "val_balanced_accuracy": nan, "val_c_index": nan, "val_ipcw_c_index": nan,
                "val_mean": nan}
    kw = {"device": device, "precision": precision, "num_workers": int(cfg["data"].get("num_workers") or 0),
          "batching": decl.batching, "batch_size": int(cfg["data"].get("eval_batch_size") or 1),
          "loss_weights": cfg["train"].get("loss_weights")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if decl.evaluation == "probe":
            val = infer(method, val_ds, embed=True, loss=True, **kw)
            tr = infer(method, train_ds, embed=True, **kw)
            per_site = probe_metrics(tr.embeddings, val.embeddings, train_df, val_df, cfg=cfg,
                                     val=(val.embeddings, val_df))
        else:
            val = infer(method, val_ds, embed=False, predict=True, loss=True, **kw)
            per_site = label_metrics(val_df, val.pred_class, val.risk, train_df, logits=val.logits)
    means = site_means(per_site)
    out = {"val_loss": val.loss, "val_balanced_accuracy": means["balanced_accuracy"],
           "val_c_index": means["c_index"], "val_ipcw_c_index": means["ipcw_c_index"]}
    if decl.evaluation == "predict" and not math.isnan(means.get("auc", float("nan"))):
        out["val_auc"] = means["auc"]
    out["val_mean"] = task_mean(out)
    return out


def task_mean(scores: Mapping[str, float]) -> float:
    """``val_mean``: the mean of validation balanced accuracy and C-index, over those that are numbers
    (one multi-task embedding serves both tasks, so neither alone should choose its epoch)."""
    vals = [float(scores[k]) for k in ("val_balanced_accuracy", "val_c_index")
            if k in scores and not math.isnan(float(scores[k]))]
    return float(np.mean(vals)) if vals else float("nan")


def is_better(score: float, best: float | None, lower: bool) -> bool:
    """Whether ``score`` beats ``best`` (NaN never beats a number; a later NaN beats an earlier NaN)."""
    if best is None:
        return True
    if math.isnan(score):
        return math.isnan(best)      # without a usable metric the later epoch is kept
    if math.isnan(best):
        return True
    return score < best if lower else score > best
