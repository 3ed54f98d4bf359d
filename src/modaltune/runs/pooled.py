"""One epoch for all sites of a per-site stage, chosen on validation patients pooled over the sites.

Why: MICE fine-tunes one run per cancer site from the pan-cancer model. Inside five-fold
cross-validation a small site has a handful of validation patients (7 in the MICE demo cohort);
its validation C-index jumps between 0 and 1 from one epoch to the next, so the epoch a run picks
on its own is noise. With ``train.select_scope: pooled`` the runs of such a stage (the sites of
one fold and seed, trained in one chain) share one choice: the epoch whose validation score,
averaged over the sites that have one, is best (ties: the earlier epoch); each site keeps *its
own* weights of that epoch (``checkpoints/epoch=NNN.ckpt``). With ``train.select_initial`` the
starting weights (the pre-trained model, epoch -1) compete too, so "do not fine-tune" is one of
the choices. Only validation scores are used.

Each run's ``best.ckpt`` is rewritten from the chosen epoch, its ``run.json`` records the pooled
choice, and ``pooled_selection.json`` holds the table (epoch -> mean validation score, per site).
The choice depends only on the runs' histories, so repeating it gives the same result.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..utils import read_json, write_json
from . import layout

__all__ = ["SELECT_SCOPES", "select_pooled", "prune_epoch_weights", "epoch_weights_path", "INITIAL",
           "POOLED_SELECTION"]

SELECT_SCOPES = ("run", "pooled")
#: the starting weights of a run with ``train.select_initial`` (epoch -1), under ``checkpoints/``
INITIAL = "initial.ckpt"
POOLED_SELECTION = "pooled_selection.json"


def epoch_weights_path(run_dir: str | Path, epoch: int) -> Path:
    """Where a run keeps the weights of ``epoch`` (-1: the starting weights)."""
    ckpt = Path(run_dir) / layout.CHECKPOINTS
    return ckpt / INITIAL if epoch < 0 else ckpt / f"epoch={epoch:03d}.ckpt"


def select_pooled(run_dirs: Sequence[str | Path], prune: bool = False) -> dict | None:
    """Choose one epoch for ``run_dirs`` by their mean validation score; rewrite their ``best.ckpt``.

    A choice already made for exactly these runs (their ``pooled_selection.json``) is returned as it
    is, so a resumed chain does not need the epochs' weights again.

    Args:
        run_dirs: finished runs of one stage (one per site), same selection metric.
        prune: delete every epoch's weights (and the starting weights) once chosen
            (``train.keep_epoch_weights: auto``); ``best.ckpt`` holds the chosen ones.

    Returns:
        ``{"metric", "epoch", "score", "table": {epoch: mean}, "per_run": {run: {epoch: score}}}``, or ``None`` when
        there is nothing to choose (no validation metric, or every run trained for zero epochs and
        keeps its starting weights).

    Raises:
        InputError: a run lacks its history or the weights of the chosen epoch, or the runs were
            selected on different metrics.
    """
    runs = [Path(r) for r in run_dirs]
    done = [read_json(rd / POOLED_SELECTION) if (rd / POOLED_SELECTION).exists() else None for rd in runs]
    if done[0] is not None and all(d == done[0] for d in done) and set(done[0]["per_run"]) == set(map(str, runs)):
        return done[0]
    if all(rd.joinpath(layout.RUN).exists() and read_json(rd / layout.RUN).get("epochs_completed") == 0
           for rd in runs):
        return None   # trained for zero epochs (e.g. fine-tuning switched off): best.ckpt holds the start
    histories = {}
    for rd in runs:
        path = rd / layout.HISTORY
        if not path.exists():
            raise InputError("a run of a pooled selection has no history.csv", file=path,
                             fix="train the run first (modaltune train / benchmark resume it)")
        histories[rd] = pd.read_csv(path)
    metrics = {str(h["select_metric"].iloc[0]) for h in histories.values() if len(h)}
    if not metrics or metrics == {"last"}:
        return None
    if len(metrics) > 1:
        raise InputError(f"the runs of a pooled selection chose epochs on different metrics: {sorted(metrics)}",
                         file=runs[0], fix="give the stage one train.select_metric")
    metric = metrics.pop()
    epochs = sorted(set.intersection(*(set(map(int, h["epoch"])) for h in histories.values())))
    table, per_run = {}, {str(rd): {} for rd in runs}
    for e in epochs:
        scores = [float(h.loc[h["epoch"] == e, "score"].iloc[0]) for h in histories.values()]
        for rd, s in zip(runs, scores):
            per_run[str(rd)][str(e)] = None if math.isnan(s) else s
        finite = [s for s in scores if not math.isnan(s)]
        table[e] = float(np.mean(finite)) if finite else float("nan")
    lower = metric == "val_loss"
    best = None
    for e in epochs:   # as a run's own choice: ties keep the earlier epoch, NaN never beats a number, and
        s = table[e]   # without any usable score the later epoch is kept
        if best is None or (math.isnan(s) and math.isnan(table[best])):
            best = e
        elif not math.isnan(s) and (math.isnan(table[best]) or (s < table[best] if lower else s > table[best])):
            best = e
    if best is None:
        return None
    for rd in runs:
        _rewrite_best(rd, best, metric, table[best])
    result = {"metric": metric, "epoch": best, "score": table[best], "table": {str(e): None if math.isnan(v) else v for e, v in table.items()},
              "per_run": per_run}
    for rd in runs:
        write_json(rd / POOLED_SELECTION, result)
        if prune:
            prune_epoch_weights(rd)
    return result


def prune_epoch_weights(run_dir: str | Path) -> None:
    """Delete a run's kept epoch weights and starting weights (``best.ckpt`` stays)."""
    ckpt = Path(run_dir) / layout.CHECKPOINTS
    for path in [*ckpt.glob("epoch=*.ckpt"), ckpt / INITIAL]:
        path.unlink(missing_ok=True)


def _rewrite_best(run_dir: Path, epoch: int, metric: str, score: float) -> None:
    import torch

    src = epoch_weights_path(run_dir, epoch)
    if not src.exists():
        raise InputError(f"the weights of epoch {epoch} were not kept", file=src,
                         fix="retrain the stage (every epoch's weights are kept under checkpoints/; the starting "
                             "weights only with train.select_initial)")
    ckpt = layout.read_checkpoint(src)
    sd = layout.method_state(ckpt["state_dict"])   # epochs >= 0: Lightning checkpoints of the training module
    old = layout.read_checkpoint(run_dir / layout.BEST)
    if set(sd) != set(old["state_dict"]):
        raise InputError(f"the weights of epoch {epoch} do not match the run's best.ckpt", file=src,
                         fix="retrain the stage")
    meta = {k: v for k, v in old.items() if k not in ("state_dict", "epoch", "score", "select_metric")}
    obj = {"state_dict": sd, **meta, "epoch": epoch, "select_metric": metric, "score": score,
           "select_scope": "pooled"}
    tmp = run_dir / (layout.BEST + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(run_dir / layout.BEST)
    run = read_json(run_dir / layout.RUN) if (run_dir / layout.RUN).exists() else {}
    run.update({"best_epoch": epoch, "best_score": score, "select_scope": "pooled"})
    write_json(run_dir / layout.RUN, run)
