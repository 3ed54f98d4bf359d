"""Everything a run feeds its method, built in one descent from the method's declaration.

:func:`prepare_run` fits the train-only state (or takes the parent run's), builds the text caches
the method declares, the :class:`~modaltune.methods.base.CohortInfo` and the datasets:

- ``text_targets``: the patients' prompts through the frozen text encoder of the ``text`` section;
- ``report_embedding`` / ``report_tokens``: the reports through the frozen encoder of the ``report``
  section (CLS or mean vector; token states).

Caches live in ``COHORT/text_cache/`` (the run directory when the cohort is read-only), one file per
encoder setting, so a text is encoded once per cohort and encoder, never per epoch. Only the texts
of the patients a step needs are encoded: training builds the training and validation patients'
entries, evaluation adds the test patients' on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..data.cohort import Cohort
from ..data.dataset import PatientDataset
from ..data.fitted_state import FittedState
from ..methods.base import CohortInfo, Declaration
from .builders import cohort_info, declaration, make_dataset

__all__ = ["RunInputs", "prepare_run", "build_caches", "cache_dir_for", "TEXT_INPUTS"]

#: Declared inputs that come from a text cache.
TEXT_INPUTS = ("text_targets", "report_embedding", "report_tokens")


@dataclass
class RunInputs:
    """The parts of a run below the engine: state, info, caches and datasets."""

    declaration: Declaration
    state: FittedState
    info: CohortInfo
    caches: dict[str, Any] = field(default_factory=dict)
    train: PatientDataset | None = None
    train_eval: PatientDataset | None = None
    val: PatientDataset | None = None


def cache_dir_for(cohort: Cohort, run_dir: str | Path | None = None) -> Path:
    """``COHORT/text_cache`` (created), or ``RUN_DIR/text_cache`` when the cohort is read-only."""
    cache_dir = Path(cohort.root) / "text_cache"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return cache_dir
    except OSError:
        if run_dir is None:
            raise
        fallback = Path(run_dir) / "text_cache"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _encode(section: Mapping[str, Any], texts: Sequence[str], cache_dir: Path, *, tokens: bool = False,
            default_pooling: str = "mean") -> Mapping[str, Any]:
    from ..encoders.text import cached_text_embeddings

    kw: dict[str, Any] = {"path": section.get("path"), "batch_size": int(section.get("batch_size", 64))}
    pooling = str(section.get("pooling") or default_pooling)
    if tokens:
        from ..encoders.text import cached_token_embeddings

        return cached_token_embeddings(cache_dir, str(section.get("encoder", "minilm")), texts, **kw)
    if pooling != "mean" or section.get("normalize") is not None:
        kw["pooling"] = pooling
        if section.get("normalize") is not None:
            kw["normalize"] = bool(section["normalize"])
    return cached_text_embeddings(cache_dir, str(section.get("encoder", "minilm")), texts, **kw)


def build_caches(cfg: Mapping[str, Any], decl: Declaration, datasets: Iterable[PatientDataset], cache_dir: Path,
                 into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill (or extend) the caches the declaration needs with the texts of ``datasets``."""
    caches = dict(into or {})
    datasets = [d for d in datasets if d is not None]
    if "text_targets" in decl.inputs:
        texts = sorted({t for ds in datasets for t in ds.prompt_texts()})
        new = _encode(cfg.get("text") or {}, texts, cache_dir)
        caches["text_targets"] = {**caches.get("text_targets", {}), **new}
    for name, tokens in (("report_embedding", False), ("report_tokens", True)):
        if name in decl.inputs:
            texts = sorted({t for ds in datasets for t in ds.report_texts()})
            new = _encode(cfg.get("report") or {}, texts, cache_dir, tokens=tokens, default_pooling="cls")
            caches[name] = {**caches.get(name, {}), **new}
    return caches


def _dim(cache: Mapping[str, Any] | None) -> int:
    for v in (cache or {}).values():
        return int(getattr(v, "shape", [0])[-1])
    return 0


def _fit_scalers(state: FittedState, decl: Declaration, train: PatientDataset, caches: Mapping[str, Any],
                 cohort: Cohort) -> None:
    """Per-dimension statistics of the declared inputs over the training patients (one pass)."""
    for name in sorted(decl.scalers):
        if name in ("bag", "bag_secondary"):
            state.fit_scaler(name, (train[i][name].numpy() for i in range(len(train))))
        elif name == "report_embedding":
            reports = [cohort.report_text(c) for c in train.case_ids if cohort.manifest.at[c, "has_report"]]
            state.fit_scaler(name, (np.asarray(caches[name][r]) for r in reports if r))


def prepare_run(cfg: Mapping[str, Any], cohort: Cohort, split: Mapping[str, Sequence[str]], run_dir: str | Path,
                *, state: FittedState | None = None, info: CohortInfo | None = None) -> RunInputs:
    """Fit (or take) the state, build caches, info and the training / validation datasets.

    Args:
        cfg: resolved config of the run.
        cohort: the cohort.
        split: ``{"train", "val", "test"}`` case ids of the run.
        run_dir: the run directory (fallback location of the text caches).
        state: a parent run's fitted state (chained runs); fitted on ``split["train"]`` when None.
        info: a parent run's CohortInfo (chained runs keep the parent's vocabularies).
    """
    decl = declaration(cfg)
    inherited = state is not None
    if state is None:
        state = FittedState.fit(cohort, split["train"], n_bins=int(cfg["data"].get("n_bins", 4)))
    train_ds = make_dataset(cohort, split["train"], state, cfg, train=True)
    train_eval = make_dataset(cohort, split["train"], state, cfg, train=False)
    val_ds = make_dataset(cohort, split["val"], state, cfg, train=False)
    caches: dict[str, Any] = {}
    if any(i in decl.inputs for i in TEXT_INPUTS):
        caches = build_caches(cfg, decl, [train_ds, val_ds], cache_dir_for(cohort, run_dir))
        for ds in (train_ds, train_eval, val_ds):
            ds.attach_caches(caches)
    if decl.scalers and not inherited:
        _fit_scalers(state, decl, train_eval, caches, cohort)
    text_dim = _dim(caches.get("text_targets")) or None
    report_dim = _dim(caches.get("report_embedding")) or _dim(caches.get("report_tokens"))
    if info is None:
        info = cohort_info(cohort, cfg, split["train"], text_dim=text_dim, report_dim=report_dim)
    return RunInputs(decl, state, info, caches, train_ds, train_eval, val_ds)
