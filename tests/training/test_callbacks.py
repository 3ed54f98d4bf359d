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


def _run_from(tmp_path, initial, epochs_scores, history=None):
    """Like _run, with ``score_initial``: the scorer returns ``initial`` first (the starting weights)."""
    it = iter(([initial] if initial is not None else []) + list(epochs_scores))
    cb = SelectionCallback(lambda method: next(it), "val_c_index", tmp_path, score_initial=True)
    if history is not None:
        cb.load_state_dict(history)
    module = SimpleNamespace(method=nn.Linear(2, 2), epoch_loss=lambda: 0.5, log_dict=lambda *a, **k: None)
    with torch.no_grad():
        module.method.weight.fill_(-1.0)
    trainer = SimpleNamespace(current_epoch=0, optimizers=[torch.optim.SGD(module.method.parameters(), lr=0.1)],
                              is_global_zero=True)
    cb.on_train_start(trainer, module)
    for epoch in range(len(epochs_scores)):
        with torch.no_grad():
            module.method.weight.fill_(float(epoch))   # every epoch changes the weights
        trainer.current_epoch = epoch
        cb.on_train_epoch_start(trainer, module)
        cb.on_train_epoch_end(trainer, module)
    return cb


def test_starting_weights_are_kept_when_no_epoch_beats_them(tmp_path, caplog):
    with caplog.at_level("INFO", logger="modaltune.training"):
        cb = _run_from(tmp_path, {"val_c_index": 0.7}, [{"val_c_index": 0.6}, {"val_c_index": 0.7}])
    assert cb.best_epoch == -1 and cb.best_score == 0.7             # a tie keeps the earlier: the start
    saved = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert saved["epoch"] == -1 and torch.all(saved["state_dict"]["weight"] == -1.0)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["epoch"]) == [-1, 0, 1] and hist["train_loss"].isna().tolist() == [True, False, False]
    assert caplog.records[0].getMessage().startswith("starting weights, val_c_index 0.7000 (best)")


def test_an_epoch_that_beats_the_starting_weights_is_kept(tmp_path):
    cb = _run_from(tmp_path, {"val_c_index": 0.6}, [{"val_c_index": 0.5}, {"val_c_index": 0.65}])
    assert cb.best_epoch == 1
    assert torch.all(torch.load(tmp_path / "best.ckpt", weights_only=True)["state_dict"]["weight"] == 1.0)


def test_starting_weights_are_not_rescored_on_resume(tmp_path):
    first = _run_from(tmp_path, {"val_c_index": 0.7}, [])
    resumed = _run_from(tmp_path, None, [{"val_c_index": 0.6}], history=first.state_dict())  # scorer: one call
    assert resumed.best_epoch == -1 and [r["epoch"] for r in resumed.history] == [-1, 0]
