"""Scoring a trained run: test metrics, embeddings, out-of-distribution linear probing.

The test split is used here only, after training and epoch selection are finished. The protocol
is the method's declaration: ``probe`` methods are embedded and probed per site (ModalTune
Sec. 4.3), ``predict`` methods are scored on their own predictions.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.cohort import Cohort
from ..errors import ConfigError, InputError
from ..evaluation.per_site import add_overall, label_metrics, predictions_frame, probe_metrics
from ..evaluation.probe_penalty import penalizer_setting
from ..utils import write_json
from . import layout
from .builders import make_dataset, manifest_rows
from .inference import infer
from .inputs import build_caches, cache_dir_for
from .load import LoadedRun, load_run

__all__ = ["embed_run", "evaluate_run", "evaluate_ood", "run_inference", "result_name"]


def run_inference(run: LoadedRun, ids: Sequence[str], *, embed: bool = True, predict: bool = False,
                  absent: Sequence[str] = ()):
    """Embeddings / predictions of ``ids`` with a loaded run (its caches extended as needed); ``absent``
    modalities are removed from every patient."""
    ds = make_dataset(run.cohort, ids, run.state, run.cfg, train=False, absent=absent)
    ds.attach_caches(build_caches(run.cfg, run.declaration, [ds], cache_dir_for(run.cohort, run.run_dir)))
    return infer(run.method, ds, device=run.device, precision=run.precision, embed=embed, predict=predict,
                 num_workers=int(run.cfg["data"].get("num_workers") or 0), batching=run.declaration.batching,
                 batch_size=int(run.cfg["data"].get("eval_batch_size") or 1))


def embed_run(run_dir: str | Path, cohort: Cohort | None = None, case_ids: Sequence[str] | None = None
              ) -> tuple[list[str], np.ndarray]:
    """Embeddings ``[n, D]`` (``method.embed``, the selected weights) of ``case_ids`` (default: every
    patient of the cohort)."""
    run = load_run(run_dir, cohort)
    ids = list(case_ids) if case_ids is not None else list(run.cohort.manifest.index)
    res = run_inference(run, ids)
    return res.ids, res.embeddings


def _km_plots(run_dir: Path, preds: pd.DataFrame, metrics: dict, suffix: str = "") -> None:
    from ..evaluation.survival_plots import kaplan_meier_summary

    for site, g in preds.groupby("site"):
        g = g[g["has_survival"].astype(bool) & np.isfinite(g["risk"].astype(float))]
        if len(g) < 2 or site not in metrics:
            continue
        km = kaplan_meier_summary(g["survival_months"].to_numpy(float), g["event"].to_numpy(),
                                  g["risk"].to_numpy(float), run_dir / layout.FIGURES / f"km_{site}{suffix}.png",
                                  title=f"{site} (test)")
        metrics[site]["logrank_p"] = km["p_value"]


def _probe(run: LoadedRun, tr_ids: Sequence[str], te_ids: Sequence[str], absent: Sequence[str] = (),
           va_ids: Sequence[str] = ()):
    """Probes fitted on ``tr_ids``, scored on ``te_ids``; the validation patients ``va_ids`` are embedded
    only when they choose the Cox penalty (``eval.cph_penalizer: auto``)."""
    df_tr, df_te = manifest_rows(run.cohort, tr_ids), manifest_rows(run.cohort, te_ids)
    tr, te = run_inference(run, tr_ids), run_inference(run, te_ids, absent=absent)
    val = None
    if penalizer_setting(run.cfg.get("eval") or {})[0] == "auto" and len(va_ids):
        val = (run_inference(run, va_ids).embeddings, manifest_rows(run.cohort, va_ids))
    metrics, preds = probe_metrics(tr.embeddings, te.embeddings, df_tr, df_te, cfg=run.cfg, return_predictions=True,
                                   val=val)
    return metrics, preds, tr, te


def result_name(name: str, absent: Sequence[str] = ()) -> str:
    """``metrics.json`` or, with modalities removed at test, ``metrics_without_omics.json`` (etc.)."""
    if not absent:
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}_without_{'_'.join(sorted(absent))}{dot}{ext}"


def evaluate_run(run_dir: str | Path, cohort: Cohort | None = None, eval_sites: Sequence[str] | None = None,
                 absent: Sequence[str] = ()) -> dict:
    """Score the selected weights on the test split (first and only time the test split is used).

    ``probe`` methods: embed train + test, fit probes per site on the training patients (ModalTune
    Sec. 4.3). ``predict`` methods: their own predictions on the test patients. Writes
    ``metrics.json`` (per site + ``overall`` = mean over sites), ``predictions.csv``,
    ``embeddings.npz`` (probe methods) and ``figures/km_<site>.png``; returns the metrics.

    With ``absent`` modalities (e.g. ``["omics"]``) every test patient is scored as if it lacked them
    (the method's own missing-modality path); results go to ``metrics_without_<...>.json`` and
    ``predictions_without_<...>.csv``; probes are still fitted on complete training patients.
    """
    run = load_run(run_dir, cohort)
    rd = run.run_dir
    man = run.cohort.manifest
    split = run.split
    keep = set(map(str, eval_sites)) if eval_sites is not None else set(run.cfg["data"].get("sites") or [])
    pretrain_only = set(run.cfg["data"].get("pretrain_only_sites") or [])
    if keep or pretrain_only:
        split = {k: [c for c in v if (not keep or str(man.at[c, "site"]) in keep)
                     and str(man.at[c, "site"]) not in pretrain_only] for k, v in split.items()}
    if not split["test"]:
        raise InputError("the run's split has no test patients (for these sites)", file=rd / layout.SPLIT,
                         fix="train with a split that has a test part")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if run.declaration.evaluation == "probe":
            metrics, preds, tr, te = _probe(run, split["train"], split["test"], absent, split.get("val", []))
            np.savez_compressed(rd / result_name(layout.EMBEDDINGS, absent), case_id=np.asarray(tr.ids + te.ids),
                                split=np.asarray(["train"] * len(tr.ids) + ["test"] * len(te.ids)),
                                site=np.asarray(tr.sites + te.sites),
                                embedding=np.concatenate([tr.embeddings, te.embeddings]))
        else:
            df_tr, df_te = manifest_rows(run.cohort, split["train"]), manifest_rows(run.cohort, split["test"])
            te = run_inference(run, split["test"], embed=False, predict=True, absent=absent)
            metrics = label_metrics(df_te, te.pred_class, te.risk, df_tr, logits=te.logits)
            preds = predictions_frame(df_te, te.pred_class, te.risk, case_ids=te.ids)
    preds.insert(2, "split", "test")
    preds.to_csv(rd / result_name(layout.PREDICTIONS, absent), index=False)
    if not absent:
        _km_plots(rd, preds, metrics)
    metrics = add_overall(metrics)
    write_json(rd / result_name(layout.METRICS, absent), metrics)
    return metrics


def evaluate_ood(run_dir: str | Path, cohort: Cohort, ood_sites: Sequence[str], split: dict[str, list[str]]) -> dict:
    """Out-of-distribution linear probing (ModalTune Table 3 protocol).

    The trained model (selected weights, the run's train-fitted omics scaler) embeds each OOD
    site's patients with ``method.embed`` -- for label-trained methods the representation before the
    prediction head; probes are fitted on the OOD site's own training split and scored on its test
    split. Writes ``metrics_ood.json`` and ``predictions_ood.csv``; returns per-site metrics + overall.
    """
    run = load_run(run_dir, cohort)
    man = run.cohort.manifest
    sites = [str(s) for s in ood_sites]
    unknown = [s for s in sites if s not in set(man["site"].astype(str))]
    if unknown:
        raise ConfigError(f"OOD site(s) {unknown} are not in the cohort")

    def in_site(ids):
        return [c for c in ids if c in man.index and str(man.at[c, "site"]) in sites]

    tr_ids, te_ids = in_site(split.get("train", [])), in_site(split.get("test", []))
    if not tr_ids or not te_ids:
        raise InputError(f"the split has no training or no test patients of the OOD site(s) {sites}",
                         fix="use a split covering the OOD sites (pipeline.resolve_split over the whole cohort)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics, preds, _, _ = _probe(run, tr_ids, te_ids, va_ids=in_site(split.get("val", [])))
    preds.insert(2, "split", "test")
    preds.to_csv(run.run_dir / layout.PREDICTIONS_OOD, index=False)
    _km_plots(run.run_dir, preds, metrics, suffix="_ood")
    metrics = add_overall(metrics)
    write_json(run.run_dir / layout.METRICS_OOD, metrics)
    return metrics
