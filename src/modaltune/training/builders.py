"""Building blocks shared by training and evaluation: the method, its CohortInfo, datasets, precision."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.cohort import Cohort
from ..data.dataset import FittedState, PatientDataset
from ..errors import ConfigError
from ..methods.base import CohortInfo, Method
from ..registry import METHODS

__all__ = ["supervision_of", "cohort_info", "build_method", "resolve_precision", "device_of", "make_dataset",
           "frame"]


# ----------------------------------------------------------------------------------------------
# method construction


def _method_class(cfg: dict):
    from .. import methods  # noqa: F401  (registers the methods)

    return METHODS.get(cfg["method"])


def supervision_of(cfg: dict) -> str:
    """"text" or "labels": the method's ``supervision``, except that ``model.text_embedding: false``
    (ModalTune's No Text Embedding ablation) makes a text method label-trained."""
    sup = getattr(_method_class(cfg), "supervision", "labels")
    if sup == "text" and (cfg.get("model") or {}).get("text_embedding") is False:
        return "labels"
    return sup


def cohort_info(cohort: Cohort, cfg: dict, train_ids: Sequence[str], text_dim: int | None = None) -> CohortInfo:
    """What the method needs to know about the data, from the cohort and the training patients."""
    man = cohort.manifest
    ids = [c for c in train_ids if c in man.index]
    sites = sorted(man.loc[ids, "site"].astype(str).unique()) if ids else list(cfg["data"].get("sites") or [])
    n_classes = 0
    grouping = getattr(cohort, "grouping", None)
    for s in sites:
        g = getattr(grouping, "sites", {}).get(s) if grouping is not None else None
        if g is not None and getattr(g, "classes", None):
            n_classes = max(n_classes, len(g.classes))
        else:
            idx = pd.to_numeric(man.loc[man["site"] == s, "subtype_index"], errors="coerce").fillna(-1)
            n_classes = max(n_classes, int(idx.max()) + 1 if len(idx) else 0)
    mag = cfg["data"].get("magnification", "primary")
    feature_dim = cohort.feature_dim_secondary if mag == "secondary" else cohort.feature_dim
    return CohortInfo(feature_dim=int(feature_dim), feature_dim_secondary=int(cohort.feature_dim_secondary),
                      n_genes=int(cohort.n_genes), pathways=[np.asarray(v, dtype=np.int64) for v in cohort.pathways.values()],
                      pathway_names=list(cohort.pathways), n_classes=max(2, n_classes),
                      n_bins=int(cfg["data"].get("n_bins", 4)), sites=list(sites),
                      text_dim=int(text_dim) if text_dim else CohortInfo().text_dim,
                      task=str((cfg.get("model") or {}).get("task") or "multi"))


def build_method(cfg: dict, info: CohortInfo) -> Method:
    """Instantiate the registered method ``cfg["method"]`` (seed first for a repeatable init)."""
    method = _method_class(cfg)(cfg, info)
    if not any(p.requires_grad for p in method.parameters()):
        raise ConfigError(f"method '{cfg['method']}' has no trainable parameters")
    return method


def resolve_precision(cfg: dict) -> str:
    """``train.precision``; "auto" = bf16-mixed on a GPU, 32-true otherwise."""
    prec = str(cfg["train"].get("precision", "auto"))
    if prec != "auto":
        return prec
    acc = str(cfg["train"].get("accelerator", "auto"))
    gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu else "32-true"


def device_of(cfg: dict) -> torch.device:
    acc = str(cfg["train"].get("accelerator", "auto"))
    if acc == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")



def make_dataset(cohort: Cohort, ids: Sequence[str], state: FittedState, cfg: dict, train: bool) -> PatientDataset:
    """PatientDataset of ``ids`` with the run's bag caps, magnification and seed."""
    d = cfg["data"]
    return PatientDataset(cohort, list(ids), state, train=train, bag_cap=d.get("bag_cap") if train else None,
                          magnification=d.get("magnification", "primary"), seed=int(cfg["seed"]),
                          eval_bag_cap=d.get("eval_bag_cap"))


def frame(cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
    """Manifest rows of ``ids`` in that order, with a ``case_id`` column."""
    df = cohort.manifest.loc[list(ids)].copy()
    df["case_id"] = list(ids)
    return df
