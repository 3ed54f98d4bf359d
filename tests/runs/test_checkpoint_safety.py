"""Checkpoints are read without unpickling arbitrary objects; bad ones give a named error.

A crafted ``best.ckpt`` whose pickle would call a function when loaded (``__reduce__``) is refused by
the run-directory loader and by ``modaltune evaluate`` (exit 2), and the function never runs. A
corrupt ``best.ckpt`` (evaluate) or ``last.ckpt`` (``--resume``) is a :class:`CheckpointError`
naming the file and the fix, not a raw traceback.
"""

from __future__ import annotations

import pathlib
import shutil
import warnings

import pytest
import torch

from modaltune.cli import main
from modaltune.config import resolve_config
from modaltune.data.splits import make_holdout_split
from modaltune.errors import CheckpointError, InputError
from modaltune.runs.layout import read_checkpoint
from modaltune.runs.load import load_run
from modaltune.training.engine import train_method


class _Payload:
    """Unpickling this object would create ``marker`` (stands in for any code an attacker runs)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def trained(small_cohort, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    cfg = resolve_config("abmil", overrides=["train.epochs=1", "train.progress_bar=false", "data.bag_cap=8",
                                             "seed=0", "train.keep_training_state=true"])
    split = make_holdout_split(small_cohort.manifest, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_method(cfg, small_cohort, split, run_dir)
    return run_dir, cfg, split


def _copy(run_dir: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    shutil.copytree(run_dir, dest)
    return dest


def _crafted(path: pathlib.Path, marker: pathlib.Path) -> None:
    honest = torch.load(path, weights_only=True)
    torch.save({**honest, "note": _Payload(marker)}, path)


def test_crafted_checkpoint_is_refused_and_runs_nothing(trained, tmp_path):
    run = _copy(trained[0], tmp_path / "run")
    marker = tmp_path / "pwned"
    _crafted(run / "best.ckpt", marker)
    with pytest.raises(CheckpointError, match="refused to load the checkpoint") as err:
        load_run(run)
    assert isinstance(err.value, InputError) and str(run / "best.ckpt") in str(err.value)
    assert "fix:" in str(err.value)
    assert not marker.exists()


def test_evaluate_refuses_a_crafted_checkpoint(trained, tmp_path, capsys):
    run = _copy(trained[0], tmp_path / "run")
    marker = tmp_path / "pwned"
    _crafted(run / "best.ckpt", marker)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "refused to load the checkpoint" in err and "best.ckpt" in err
    assert not marker.exists() and not (run / "metrics.json").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_evaluate_names_a_corrupt_best_checkpoint(trained, tmp_path, capsys, content):
    run = _copy(trained[0], tmp_path / "run")
    best = run / "best.ckpt"
    data = best.read_bytes()
    best.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the checkpoint" in err and str(best) in err and "fix:" in err


def test_resume_from_a_corrupt_last_checkpoint_is_a_named_error(trained, small_cohort, tmp_path):
    run = _copy(trained[0], tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    assert last.exists()
    last.write_bytes(last.read_bytes()[:100])
    _, cfg, split = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="corrupt") as err:
            train_method(cfg, small_cohort, split, run, resume=True)
    assert str(last) in str(err.value) and "without --resume" in str(err.value)


def test_honest_checkpoints_load(trained):
    ckpt = read_checkpoint(trained[0] / "best.ckpt")
    assert "state_dict" in ckpt
    last = read_checkpoint(trained[0] / "checkpoints" / "last.ckpt")   # the full Lightning state
    assert "optimizer_states" in last
