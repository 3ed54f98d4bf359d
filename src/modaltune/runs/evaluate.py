"""Loading a trained run and scoring it: embeddings, test metrics, OOD linear probing.

The test split is used here only, after training and epoch selection are finished.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..config import load_yaml
from ..data.cohort import Cohort
from ..data.dataset import FittedState
from ..errors import ConfigError, InputError
from ..methods.base import CohortInfo, Method
from ..utils import read_json, seed_everything, write_json
from . import io
from .builders import build_method, device_of, frame, make_dataset, resolve_precision, supervision_of
from .inference import infer
from .scoring import add_overall, label_metrics

__all__ = ["LoadedRun", "load_run", "embed_run", "evaluate_run", "evaluate_ood"]


# ----------------------------------------------------------------------------------------------
# loading a run


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: dict
    cohort: Cohort
    state: FittedState
    info: CohortInfo
    method: Method
    split: dict[str, list[str]]
    supervision: str
    device: torch.device
    precision: str


def _read_split(run_dir: Path) -> dict[str, list[str]]:
    df = pd.read_csv(run_dir / io.SPLIT, dtype=str)
    return {k: df.loc[df["split"] == k, "case_id"].tolist() for k in ("train", "val", "test")}


def load_run(run_dir: str | Path, cohort: Cohort | None = None, weights: str = io.BEST) -> LoadedRun:
    """Rebuild a trained run: config, cohort, fitted state, method with the selected weights."""
    run_dir = Path(run_dir)
    if not (run_dir / io.CONFIG).exists():
        raise InputError("not a run directory (no config.yaml)", file=run_dir, fix="pass the --out of `modaltune train`")
    raw = load_yaml(run_dir / io.CONFIG)
    cohort_dir = raw.pop("cohort", None)
    cfg = raw
    if cohort is None:
        if not cohort_dir:
            raise InputError("the run does not record its cohort", file=run_dir / io.CONFIG, fix="pass --cohort")
        cohort = Cohort.load(cohort_dir)
    state = FittedState.from_dict(read_json(run_dir / io.STATE))
    info = io.read_info(run_dir / io.INFO)
    seed_everything(int(cfg["seed"]))
    method = build_method(cfg, info)
    io.load_weights(method, run_dir / weights)
    device = device_of(cfg)
    method.to(device)
    method.eval()
    return LoadedRun(run_dir, cfg, cohort, state, info, method, _read_split(run_dir), supervision_of(cfg), device,
                     resolve_precision(cfg))


def _embed(run: LoadedRun, ids: Sequence[str], predict: bool = False):
    ds = make_dataset(run.cohort, ids, run.state, run.cfg, train=False)
    return infer(run.method, ds, device=run.device, precision=run.precision, embed=True, predict=predict,
                 num_workers=int(run.cfg["data"].get("num_workers") or 0))


def embed_run(run_dir: str | Path, cohort: Cohort | None = None, case_ids: Sequence[str] | None = None
              ) -> tuple[list[str], np.ndarray]:
    """Embeddings ``[n, D]`` (``method.embed``, the selected weights) of ``case_ids`` (default: every
    patient of the cohort)."""
    run = load_run(run_dir, cohort)
    ids = list(case_ids) if case_ids is not None else list(run.cohort.manifest.index)
    res = _embed(run, ids)
    return res.ids, res.embeddings


# ----------------------------------------------------------------------------------------------
# evaluation


def _km_plots(run_dir: Path, preds: pd.DataFrame, metrics: dict, suffix: str = "") -> None:
    from ..evaluation.survival_plots import kaplan_meier_summary

    for site, g in preds.groupby("site"):
        g = g[g["has_survival"].astype(bool) & np.isfinite(g["risk"].astype(float))]
        if len(g) < 2 or site not in metrics:
            continue
        km = kaplan_meier_summary(g["survival_months"].to_numpy(float), g["event"].to_numpy(), g["risk"].to_numpy(float),
                                  run_dir / io.FIGURES / f"km_{site}{suffix}.png", title=f"{site} (test)")
        metrics[site]["logrank_p"] = km["p_value"]


def evaluate_run(run_dir: str | Path, cohort: Cohort | None = None, eval_sites: Sequence[str] | None = None) -> dict:
    """Score the selected weights on the test split (first and only time the test split is used).

    Text-supervised methods: embed train + test, fit probes per site on the training patients
    (ModalTune Sec. 4.3). Label-supervised methods: their own predictions on the test patients.
    Writes ``metrics.json`` (per site + ``overall`` = mean over sites), ``predictions.csv``,
    ``embeddings.npz`` (text methods) and ``figures/km_<site>.png``; returns the metrics.
    """
    run = load_run(run_dir, cohort)
    rd = run.run_dir
    man = run.cohort.manifest
    split = run.split
    if eval_sites is not None:
        keep = set(map(str, eval_sites))
        split = {k: [c for c in v if str(man.at[c, "site"]) in keep] for k, v in split.items()}
    if not split["test"]:
        raise InputError("the run's split has no test patients (for these sites)", file=rd / io.SPLIT,
                         fix="train with a split that has a test part")
    df_tr, df_te = frame(run.cohort, split["train"]), frame(run.cohort, split["test"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if run.supervision == "text":
            tr, te = _embed(run, split["train"]), _embed(run, split["test"])
            metrics, preds = probe_metrics_with_predictions(tr.embeddings, te.embeddings, df_tr, df_te, run.cfg)
            np.savez_compressed(rd / io.EMBEDDINGS, case_id=np.asarray(tr.ids + te.ids),
                                split=np.asarray(["train"] * len(tr.ids) + ["test"] * len(te.ids)),
                                site=np.asarray(tr.sites + te.sites),
                                embedding=np.concatenate([tr.embeddings, te.embeddings]))
        else:
            te = _embed(run, split["test"], predict=True)
            metrics = label_metrics(df_te, te.pred_class, te.risk, df_tr)
            from ..evaluation.probing import subtype_labels, survival_arrays

            t, e, has = survival_arrays(df_te)
            preds = pd.DataFrame({"case_id": te.ids, "site": te.sites, "risk": te.risk, "pred_class": te.pred_class,
                                  "subtype": subtype_labels(df_te), "survival_months": t, "event": e.astype(int),
                                  "has_survival": has})
    preds.insert(2, "split", "test")
    preds.to_csv(rd / io.PREDICTIONS, index=False)
    _km_plots(rd, preds, metrics)
    metrics = add_overall(metrics)
    io_path = rd / io.METRICS
    write_json(io_path, metrics)
    return metrics


def probe_metrics_with_predictions(emb_tr, emb_te, df_tr, df_te, cfg):
    from ..evaluation.probing import probe_metrics

    return probe_metrics(emb_tr, emb_te, df_tr, df_te, per_site=True, cfg=cfg, return_predictions=True)


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
    in_site = lambda ids: [c for c in ids if c in man.index and str(man.at[c, "site"]) in sites]  # noqa: E731
    tr_ids, te_ids = in_site(split.get("train", [])), in_site(split.get("test", []))
    if not tr_ids or not te_ids:
        raise InputError(f"the split has no training or no test patients of the OOD site(s) {sites}",
                         fix="use a split covering the OOD sites (pipeline.resolve_split over the whole cohort)")
    df_tr, df_te = frame(run.cohort, tr_ids), frame(run.cohort, te_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tr, te = _embed(run, tr_ids), _embed(run, te_ids)
        metrics, preds = probe_metrics_with_predictions(tr.embeddings, te.embeddings, df_tr, df_te, run.cfg)
    preds.insert(2, "split", "test")
    preds.to_csv(run.run_dir / "predictions_ood.csv", index=False)
    _km_plots(run.run_dir, preds, metrics, suffix="_ood")
    metrics = add_overall(metrics)
    write_json(run.run_dir / "metrics_ood.json", metrics)
    return metrics
