"""Epoch selection: validation metric, ties broken by the other validation metric."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import torch
from torch import nn

from modaltune.training.callbacks import SelectionCallback


def _run(tmp_path, metric, epochs_scores):
    it = iter(epochs_scores)
    cb = SelectionCallback(lambda method: next(it), metric, tmp_path)
    module = SimpleNamespace(method=nn.Linear(2, 2), epoch_loss=lambda: 0.0, log_dict=lambda *a, **k: None)
    for epoch in range(len(epochs_scores)):
        trainer = SimpleNamespace(current_epoch=epoch, optimizers=[torch.optim.SGD(module.method.parameters(), lr=0.1)],
                                  is_global_zero=True)
        cb.on_train_epoch_start(trainer, module)
        cb.on_train_epoch_end(trainer, module)
    return cb


def test_best_epoch_by_validation_metric(tmp_path):
    cb = _run(tmp_path, "val_balanced_accuracy", [
        {"val_balanced_accuracy": 0.6, "val_c_index": 0.9},
        {"val_balanced_accuracy": 0.8, "val_c_index": 0.5},
        {"val_balanced_accuracy": 0.7, "val_c_index": 0.99},
    ])
    assert cb.best_epoch == 1
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["best_epoch"]) == [0, 1, 1]
    assert (tmp_path / "best.ckpt").exists()


def test_one_log_line_per_epoch(tmp_path, caplog):
    with caplog.at_level("INFO", logger="modaltune.training"):
        _run(tmp_path, "val_c_index", [{"val_c_index": 0.6}, {"val_c_index": float("nan")}])
    lines = [r.getMessage() for r in caplog.records if r.name == "modaltune.training.callbacks"]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1: train loss 0.0000, val_c_index 0.6000 (best), ") and lines[0].endswith(" s")
    assert lines[1].startswith("epoch 2: train loss 0.0000, val_c_index n/a, ")


def test_ties_broken_by_the_other_validation_metric(tmp_path):
    cb = _run(tmp_path, "val_balanced_accuracy", [
        {"val_balanced_accuracy": 1.0, "val_c_index": 0.5},
        {"val_balanced_accuracy": 1.0, "val_c_index": 0.7},
        {"val_balanced_accuracy": 1.0, "val_c_index": 0.6},
        {"val_balanced_accuracy": 1.0, "val_c_index": 0.7},   # equal on both: the earlier epoch stays
    ])
    assert cb.best_epoch == 1 and cb.best_score == 1.0


def test_loss_is_minimised_without_tiebreak(tmp_path):
    cb = _run(tmp_path, "val_loss", [{"val_loss": 0.5}, {"val_loss": 0.3}, {"val_loss": 0.3}, {"val_loss": 0.4}])
    assert cb.best_epoch == 1


def test_selection_state_survives_a_checkpoint(tmp_path):
    cb = _run(tmp_path, "val_c_index", [{"val_c_index": 0.6, "val_balanced_accuracy": 0.5}])
    fresh = SelectionCallback(lambda m: {}, "val_c_index", tmp_path)
    fresh.load_state_dict(cb.state_dict())
    assert (fresh.best_epoch, fresh.best_score, fresh.best_tiebreak) == (0, 0.6, 0.5)
