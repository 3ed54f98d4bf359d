"""Epoch selection on the validation split (a Lightning callback).

At the end of every training epoch the callback scores the current weights on the validation
patients (:func:`~modaltune.training.scoring.score_epoch`), appends a row to ``history.csv`` and,
when the selection metric improved, writes the weights to ``best.ckpt``. Its state (history, best
epoch and score) is part of Lightning's checkpoints, so a resumed run continues the same selection.
Under DDP every rank scores (identical weights give identical scores); only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from lightning.pytorch import Callback

from ..runs.layout import BEST, HISTORY, save_weights
from ..runs.pooled import epoch_weights_path
from .scoring import is_better

__all__ = ["SelectionCallback", "SeedEpochCallback", "TIEBREAK", "epoch_line"]

log = logging.getLogger(__name__)

#: Secondary validation metric that breaks ties of the selection metric.
TIEBREAK = {"val_balanced_accuracy": "val_c_index", "val_c_index": "val_balanced_accuracy",
            "val_auc": "val_balanced_accuracy"}


def epoch_line(row: dict, metric: str, epochs: int, improved: bool) -> str:
    """One line per epoch: epoch, train loss, validation score, seconds (the run's progress report)."""
    def num(v) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.4f}"

    score = "" if metric == "last" else f", {metric} {num(row.get('score'))}" + (" (best)" if improved else "")
    seconds = float(row.get("train_time_s") or 0) + float(row.get("eval_time_s") or 0)
    if int(row["epoch"]) < 0:   # train.select_initial: the weights the run started from
        return f"starting weights{score}, {seconds:.1f} s"
    return (f"epoch {int(row['epoch']) + 1}{f'/{epochs}' if epochs > 0 else ''}: train loss {num(row.get('train_loss'))}{score}, "
            f"{seconds:.1f} s")


class SelectionCallback(Callback):
    """Score each epoch on validation, keep the best one (``best.ckpt``) and write ``history.csv``.

    Args:
        scorer: ``scorer(method) -> dict`` of validation scores (``val_loss``, ``val_balanced_accuracy``, ...).
        metric: the selection metric (``val_*`` or ``last``); ``val_loss`` is minimised, others maximised.
        run_dir: where ``history.csv`` and ``best.ckpt`` go.
        meta: extra fields written into ``best.ckpt``.
        score_initial: also score the weights the run starts from, before the first epoch, as
            epoch ``-1`` (``train.select_initial`` of a run with ``init_from``): they are kept when
            no epoch beats them on validation, so fine-tuning that only overfits changes nothing.
        keep_initial: also write the starting weights to ``checkpoints/initial.ckpt`` (for a pooled
            selection, :mod:`modaltune.runs.pooled`).

    Ties of the selection metric (common with small validation sets: balanced accuracy saturates)
    are broken by the other validation metric (C-index for balanced accuracy and vice versa), then
    by the earlier epoch. Only validation scores are used.
    """

    def __init__(self, scorer: Callable[[Any], dict], metric: str, run_dir: str | Path, meta: dict | None = None,
                 score_initial: bool = False, keep_initial: bool = False):
        self.scorer, self.metric, self.run_dir = scorer, metric, Path(run_dir)
        self.meta = dict(meta or {})
        self.score_initial = bool(score_initial) and metric != "last"
        self.keep_initial = bool(keep_initial)
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.best_tiebreak: float | None = None
        self._t0 = time.time()

    @property
    def state_key(self) -> str:
        """Key of this callback's state in Lightning checkpoints."""
        return "SelectionCallback"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        """Start the epoch's timer."""
        self._t0 = time.time()

    def on_train_start(self, trainer, pl_module) -> None:
        """With ``score_initial``: score the starting weights as epoch -1 (not again when resuming)."""
        if self.score_initial and not any(int(r["epoch"]) == -1 for r in self.history):
            if trainer.is_global_zero and self.keep_initial:   # beside the epochs' weights (for a pooled choice)
                save_weights(pl_module.method, epoch_weights_path(self.run_dir, -1), epoch=-1, **self.meta)
            self._select(trainer, pl_module, -1, 0.0, log_to_lightning=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Score the epoch on validation, keep the best weights, append to history.csv."""
        self._select(trainer, pl_module, int(trainer.current_epoch), time.time() - self._t0)

    def _select(self, trainer, pl_module, epoch: int, train_time: float, log_to_lightning: bool = True) -> None:
        t1 = time.time()
        scores = self.scorer(pl_module.method)
        lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float("nan")
        score = float(epoch) if self.metric == "last" else float(scores.get(self.metric, float("nan")))
        tie_metric = TIEBREAK.get(self.metric)
        tiebreak = float(scores.get(tie_metric, float("nan"))) if tie_metric else float("nan")
        improved = is_better(score, self.best_score, lower=self.metric == "val_loss")
        if (not improved and self.best_score is not None and score == self.best_score
                and is_better(tiebreak, self.best_tiebreak, lower=False) and not math.isnan(tiebreak)):
            improved = True
        if improved:
            self.best_epoch, self.best_score, self.best_tiebreak = epoch, score, tiebreak
            if trainer.is_global_zero:
                save_weights(pl_module.method, self.run_dir / BEST, epoch=epoch, select_metric=self.metric,
                             score=score, **self.meta)
        train_loss = pl_module.epoch_loss() if epoch >= 0 else float("nan")
        row = {"epoch": epoch, "train_loss": train_loss, "lr": lr, **scores,
               "select_metric": self.metric, "score": score, "best_epoch": self.best_epoch,
               "train_time_s": round(train_time, 3), "eval_time_s": round(time.time() - t1, 3)}
        self.history = [r for r in self.history if r["epoch"] < epoch] + [row]
        if trainer.is_global_zero:
            self.write_history()
            log.info(epoch_line(row, self.metric, int(getattr(trainer, "max_epochs", 0) or 0), improved))
        finite = {k: float(v) for k, v in scores.items() if isinstance(v, float) and v == v}
        if finite and log_to_lightning:
            pl_module.log_dict(finite, on_epoch=True, batch_size=1, sync_dist=True)   # same on every rank

    def write_history(self) -> None:
        """Write ``history.csv``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(self.history).to_csv(self.run_dir / HISTORY, index=False)

    def state_dict(self) -> dict:
        """History and best epoch, for resumable runs."""
        return {"history": self.history, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "best_tiebreak": self.best_tiebreak, "metric": self.metric}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.history = list(state.get("history") or [])
        self.best_epoch = state.get("best_epoch")
        self.best_score = state.get("best_score")
        self.best_tiebreak = state.get("best_tiebreak")


class SeedEpochCallback(Callback):
    """Reseed torch before every training step from (seed, epoch, step, rank), so that a resumed run
    draws the same dropout/noise as an uninterrupted one (whatever else consumed random numbers)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Reseed torch from (seed, epoch, step, rank)."""
        import torch

        torch.manual_seed((self.seed * 1_000_003 + int(trainer.current_epoch) * 100_019 + int(batch_idx) * 101
                           + int(trainer.global_rank)) % (2**63 - 1))
