"""Building a run's parts: the method (through the registry), its CohortInfo, datasets, precision.

The method class is found in :data:`modaltune.registry.METHODS` only; frozen runs a method holds
(a teacher) are handed to its constructor (``frozen=``), so methods never import this layer.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.cohort import Cohort
from ..data.dataset import PatientDataset
from ..data.fitted_state import FittedState
from ..errors import ConfigError
from ..methods.base import CohortInfo, Declaration, Method
from ..registry import METHODS, load_builtin

__all__ = ["method_class", "declaration", "cohort_info", "build_method", "resolve_precision", "device_of",
           "make_dataset", "manifest_rows", "site_class_counts"]


def method_class(cfg_or_name: Mapping[str, Any] | str) -> type[Method]:
    """The registered class of ``cfg["method"]`` (or of a name)."""
    load_builtin()
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name["method"]
    return METHODS.get(name)


def declaration(cfg: Mapping[str, Any]) -> Declaration:
    """What the configured method declares (inputs, batching, evaluation protocol, tasks)."""
    return method_class(cfg).declare(cfg)


def site_class_counts(cohort: Cohort, sites: Sequence[str]) -> dict[str, int]:
    """Number of subtype classes per site: the grouping's classes, else the largest index + 1."""
    man = cohort.manifest
    grouping = getattr(cohort, "grouping", None)
    counts: dict[str, int] = {}
    for s in sites:
        g = getattr(grouping, "sites", {}).get(s) if grouping is not None else None
        if g is not None and getattr(g, "classes", None):
            counts[s] = len(g.classes)
        else:
            idx = pd.to_numeric(man.loc[man["site"] == s, "subtype_index"], errors="coerce").fillna(-1)
            counts[s] = int(idx.max()) + 1 if len(idx) else 0
    return counts


def cohort_info(cohort: Cohort, cfg: Mapping[str, Any], train_ids: Sequence[str], text_dim: int | None = None,
                report_dim: int = 0) -> CohortInfo:
    """What the method needs to know about the data, from the cohort and the training patients.

    Subtype heads are site-aware: one site owns the whole head (``max(2, K)`` logits); several
    sites each own a slice (``class_offsets``), so a pooled head never mixes class 0 of one site with
    class 0 of another.
    """
    man = cohort.manifest
    ids = [c for c in train_ids if c in man.index]
    sites = sorted(man.loc[ids, "site"].astype(str).unique()) if ids else list(cfg["data"].get("sites") or [])
    counts = site_class_counts(cohort, sites)
    offsets, total = {}, 0
    for s in sites:
        offsets[s] = total
        total += max(1, counts[s])
    n_classes = max(2, max(counts.values(), default=0)) if len(sites) <= 1 else max(2, total)
    train = man.loc[ids]
    y = pd.to_numeric(train["subtype_index"], errors="coerce").fillna(-1).astype(int)
    if "rare" in train:
        y = y.where(~train["rare"].astype(bool), -1)
    train_counts = {s: [int(((train["site"] == s) & (y == k)).sum()) for k in range(max(1, counts[s]))]
                    for s in sites}
    gene_variance: list[float] = []
    if cohort.expression is not None and len(ids):
        with_omics = [c for c in ids if bool(man.at[c, "has_omics"]) and c in cohort.expression.index]
        if with_omics:
            x = cohort.expression.loc[with_omics, list(cohort.genes)].to_numpy(dtype=np.float64)
            gene_variance = np.nan_to_num(x.var(axis=0)).astype(float).tolist()
    mag = cfg["data"].get("magnification", "primary")
    feature_dim = cohort.feature_dim_secondary if mag == "secondary" else cohort.feature_dim
    return CohortInfo(feature_dim=int(feature_dim), feature_dim_secondary=int(cohort.feature_dim_secondary),
                      n_genes=int(cohort.n_genes),
                      pathways=[np.asarray(v, dtype=np.int64) for v in cohort.pathways.values()],
                      pathway_names=list(cohort.pathways), n_classes=int(n_classes),
                      class_counts={s: int(max(1, counts[s])) for s in sites}, class_offsets=offsets,
                      n_bins=int(cfg["data"].get("n_bins", 4)), sites=list(sites),
                      site_map=dict(cfg["data"].get("site_map") or {}),
                      text_dim=int(text_dim) if text_dim else CohortInfo().text_dim, report_dim=int(report_dim),
                      task=str((cfg.get("model") or {}).get("task") or "multi"), train_class_counts=train_counts,
                      gene_variance=gene_variance)


def build_method(cfg: Mapping[str, Any], info: CohortInfo, frozen: Mapping[str, Method] | None = None) -> Method:
    """Instantiate the registered method ``cfg["method"]`` (seed first for a repeatable init).

    Args:
        cfg: resolved config.
        info: the data the method is built for.
        frozen: frozen runs by slot (a teacher); only passed to methods that declare slots.
    """
    cls = method_class(cfg)
    method = cls(cfg, info, frozen=frozen) if frozen else cls(cfg, info)
    if not any(p.requires_grad for p in method.parameters()):
        raise ConfigError(f"method '{cfg['method']}' has no trainable parameters")
    return method


def resolve_precision(cfg: Mapping[str, Any]) -> str:
    """``train.precision``; "auto" = bf16-mixed on a GPU, 32-true otherwise."""
    prec = str(cfg["train"].get("precision", "auto"))
    if prec != "auto":
        return prec
    acc = str(cfg["train"].get("accelerator", "auto"))
    gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu else "32-true"


def device_of(cfg: Mapping[str, Any]) -> torch.device:
    """The device evaluation runs on (the first GPU unless the config asks for the CPU)."""
    acc = str(cfg["train"].get("accelerator", "auto"))
    if acc == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def make_dataset(cohort: Cohort, ids: Sequence[str], state: FittedState, cfg: Mapping[str, Any], train: bool,
                 caches: Mapping[str, Any] | None = None, absent: Sequence[str] = ()) -> PatientDataset:
    """PatientDataset of ``ids`` with the inputs the method declares, the run's bag caps and seed.

    Args:
        caches: ``text_targets`` / ``report_embedding`` / ``report_tokens`` caches (see
            :mod:`modaltune.runs.inputs`).
        absent: modalities removed from every patient (missing-modality studies at test time).
    """
    d = cfg["data"]
    decl = declaration(cfg)
    caches = caches or {}
    return PatientDataset(cohort, list(ids), state, train=train, inputs=decl.inputs,
                          bag_cap=d.get("bag_cap") if train else None, magnification=d.get("magnification", "primary"),
                          seed=int(cfg["seed"]), eval_bag_cap=d.get("eval_bag_cap"), grid=d.get("grid"),
                          text_cache=caches.get("text_targets"), report_cache=caches.get("report_embedding"),
                          report_token_cache=caches.get("report_tokens"), absent=absent,
                          prompt_omit=tuple((cfg.get("text") or {}).get("omit") or ()))


def manifest_rows(cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
    """Manifest rows of ``ids`` in that order, with a ``case_id`` column."""
    df = cohort.manifest.loc[list(ids)].copy()
    df["case_id"] = list(ids)
    return df
