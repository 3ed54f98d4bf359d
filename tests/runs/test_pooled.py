"""Pooled epoch selection: one epoch for all sites of a stage, by the mean validation score."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from modaltune.errors import InputError
from modaltune.runs import layout
from modaltune.runs.pooled import epoch_weights_path, select_pooled


def _run(tmp_path, name, scores, metric="val_c_index", initial=True):
    """A finished run: history with ``scores`` for epochs -1.. (or 0.. without ``initial``), weights = epoch."""
    rd = tmp_path / name
    (rd / layout.CHECKPOINTS).mkdir(parents=True)
    epochs = list(range(-1 if initial else 0, len(scores) - (1 if initial else 0)))
    pd.DataFrame({"epoch": epochs, "score": scores, "select_metric": metric}).to_csv(rd / layout.HISTORY, index=False)
    for e in epochs:
        w = torch.full((2,), float(e))
        obj = {"state_dict": {"w": w}, "epoch": -1} if e < 0 else {"state_dict": {"method.w": w}, "epoch": e}
        torch.save(obj, epoch_weights_path(rd, e))
    best = int(pd.Series(scores).fillna(-1).idxmax()) + epochs[0]      # what the run chose on its own
    torch.save({"state_dict": {"w": torch.full((2,), float(best))}, "epoch": best, "frozen_fingerprint": [0.0, 0, 0],
                "method": "toy"}, rd / layout.BEST)
    (rd / layout.RUN).write_text(json.dumps({"best_epoch": best, "finished": "x"}))
    return rd


def _best(rd):
    return torch.load(rd / layout.BEST, weights_only=True)


def test_the_epoch_with_the_best_mean_over_sites_is_kept_by_every_site(tmp_path):
    a = _run(tmp_path, "A", [0.50, 0.90, 0.40, 0.60])     # alone: epoch 0
    b = _run(tmp_path, "B", [0.70, 0.30, 0.80, 0.75])     # alone: epoch 1
    c = _run(tmp_path, "C", [float("nan")] * 4)           # no usable validation C-index: ignored
    res = select_pooled([a, b, c])
    # means over A and B: -1 0.60, 0 0.60, 1 0.60, 2 0.675 -> epoch 2
    assert res["epoch"] == 2 and res["score"] == pytest.approx(0.675)
    assert res["table"]["-1"] == pytest.approx(0.6)
    for rd in (a, b, c):
        best = _best(rd)
        assert best["epoch"] == 2 and torch.equal(best["state_dict"]["w"], torch.full((2,), 2.0))
        assert best["select_scope"] == "pooled" and best["method"] == "toy" and "frozen_fingerprint" in best
        assert json.loads((rd / layout.RUN).read_text())["best_epoch"] == 2
    assert select_pooled([a, b, c]) == res                # repeatable


def test_ties_keep_the_earliest_candidate_and_the_starting_weights_can_win(tmp_path):
    a = _run(tmp_path, "A", [0.7, 0.6, 0.7])
    b = _run(tmp_path, "B", [0.7, 0.8, 0.7])
    res = select_pooled([a, b])
    assert res["epoch"] == -1                             # -1 and 0 tie at 0.7: the start is kept
    assert torch.equal(_best(a)["state_dict"]["w"], torch.full((2,), -1.0))


def test_validation_loss_is_minimised(tmp_path):
    a = _run(tmp_path, "A", [0.9, 0.5, 0.7], metric="val_loss", initial=False)
    b = _run(tmp_path, "B", [0.8, 0.6, 0.2], metric="val_loss", initial=False)
    assert select_pooled([a, b])["epoch"] == 2            # means 0.85, 0.55, 0.45


def test_missing_weights_and_mixed_metrics_are_refused(tmp_path):
    a = _run(tmp_path, "A", [0.1, 0.9])
    b = _run(tmp_path, "B", [0.1, 0.9])
    epoch_weights_path(b, 0).unlink()
    with pytest.raises(InputError, match="epoch 0 were not kept"):
        select_pooled([a, b])
    c = _run(tmp_path, "C", [0.1, 0.9], metric="val_auc")
    with pytest.raises(InputError, match="different metrics"):
        select_pooled([a, c])
    d = _run(tmp_path, "D", [0.1, 0.9], metric="last")
    assert select_pooled([d]) is None


def test_pruning_deletes_the_epochs_weights_and_a_made_choice_is_kept(tmp_path):
    a = _run(tmp_path, "A", [0.5, 0.9, 0.4])
    b = _run(tmp_path, "B", [0.5, 0.8, 0.6])
    res = select_pooled([a, b], prune=True)
    assert res["epoch"] == 0
    assert not list((a / layout.CHECKPOINTS).glob("*.ckpt")) and not list((b / layout.CHECKPOINTS).glob("*.ckpt"))
    assert torch.equal(_best(b)["state_dict"]["w"], torch.zeros(2))
    assert select_pooled([a, b], prune=True) == res          # a resumed chain: the choice stands
    with pytest.raises(InputError, match="not kept"):         # another group of runs needs the weights again
        select_pooled([a], prune=True)


def test_without_any_usable_score_the_last_epoch_is_kept(tmp_path):
    nan = float("nan")
    a = _run(tmp_path, "A", [nan, nan, nan])
    b = _run(tmp_path, "B", [nan, nan, nan])
    assert select_pooled([a, b])["epoch"] == 1           # as a run's own selection does


def test_runs_trained_for_zero_epochs_keep_their_starting_weights(tmp_path):
    """A stage switched off (``epochs: 0``) has no history: nothing to choose, nothing refused."""
    runs = []
    for name in ("A", "B"):
        rd = tmp_path / name
        rd.mkdir()
        torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": -1}, rd / layout.BEST)
        (rd / layout.RUN).write_text(json.dumps({"epochs_completed": 0, "finished": "x"}))
        runs.append(rd)
    assert select_pooled(runs) is None
    assert torch.equal(_best(runs[0])["state_dict"]["w"], torch.ones(2))
    (runs[1] / layout.RUN).write_text(json.dumps({"epochs_completed": 2, "finished": "x"}))
    with pytest.raises(InputError, match="no history"):    # a trained run without its history is still refused
        select_pooled(runs)
