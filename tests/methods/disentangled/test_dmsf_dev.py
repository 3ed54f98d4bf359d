"""DEV loss (spec (j) 4): NumPy values of the code form and of Eq. 7, zero at equal diagonals, gradcheck
through both magnifications' attention, and batch size 1 refused at build time while DEV is on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from dmsf_helpers import batch_of, build, tiny_cfg

from modaltune.errors import ConfigError, InputError
from modaltune.methods.disentangled.losses import dev_loss
from modaltune.runs.builders import declaration
from modaltune.training.engine import train_method


def _numpy_dev(a10: np.ndarray, a20: np.ndarray, lam: float, form: str) -> float:
    b = a10.shape[0]
    c = a10.reshape(b, -1) @ a20.reshape(b, -1).T
    if form == "code":
        c = c / np.sqrt((c ** 2).sum(1, keepdims=True))
        return float(lam * np.var(np.diag(c), ddof=1))
    d = np.diag(c)
    return float(lam * np.mean((d - d.mean()) ** 2))


@pytest.mark.parametrize("form", ["code", "paper"])
def test_value_matches_numpy(form):
    rng = np.random.default_rng(0)
    a10, a20 = rng.random((4, 2, 6, 3)), rng.random((4, 2, 6, 3))
    got = dev_loss(torch.tensor(a10), torch.tensor(a20), 1e4, form)
    assert float(got) == pytest.approx(_numpy_dev(a10, a20, 1e4, form), rel=1e-10)
    # fp32 inputs give the same value to fp32 precision
    got32 = dev_loss(torch.tensor(a10, dtype=torch.float32), torch.tensor(a20, dtype=torch.float32), 1e4, form)
    assert float(got32) == pytest.approx(float(got), rel=1e-4)


def test_the_two_forms_differ():
    rng = np.random.default_rng(1)
    a10, a20 = torch.tensor(rng.random((3, 10))), torch.tensor(rng.random((3, 10)))
    assert float(dev_loss(a10, a20, 1.0, "code")) != pytest.approx(float(dev_loss(a10, a20, 1.0, "paper")))


@pytest.mark.parametrize("form", ["code", "paper"])
def test_zero_when_the_diagonal_is_constant(form):
    a = torch.eye(4, 6, dtype=torch.float64) * 0.7          # orthogonal rows of equal norm: C = 0.49 I
    assert float(dev_loss(a, a, 1e4, form)) == pytest.approx(0.0, abs=1e-12)
    b = a.clone()
    b[0, 0] = 0.9                                            # one sample less consistent across scales
    assert float(dev_loss(a, b, 1e4, "paper")) > 0


@pytest.mark.parametrize("form", ["code", "paper"])
def test_gradcheck_wrt_both_magnifications(form):
    g = torch.Generator().manual_seed(0)
    a10 = torch.rand(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    a20 = torch.rand(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: dev_loss(x, y, 10.0, form), (a10, a20))


def test_one_sample_is_refused():
    with pytest.raises(InputError, match=">= 2"):
        dev_loss(torch.rand(1, 5), torch.rand(1, 5))
    with pytest.raises(ConfigError, match="dev_form"):
        dev_loss(torch.rand(2, 5), torch.rand(2, 5), form="eq7")


def test_batch_size_one_with_dev_is_refused_at_build_time(two_mag_cohort, two_mag_split, tmp_path):
    cfg = tiny_cfg("dmsf_teacher", "train.batch_size=1")
    assert declaration(cfg).min_batch_size == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="batch_size >= 2"):
            train_method(cfg, two_mag_cohort, two_mag_split, tmp_path / "bad")
    assert not (tmp_path / "bad" / "history.csv").exists()
    assert declaration(tiny_cfg("dmsf_teacher", "train.batch_size=1", "model.dev_weight=0")).min_batch_size == 1


def test_teacher_loss_has_dev_for_batches_and_skips_it_for_one_patient(two_mag_cohort, two_mag_split):
    teacher, cfg, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split)
    out = teacher.loss(batch_of(two_mag_cohort, two_mag_split, cfg, 3))
    assert set(out.terms) == {"task", "dev"} and float(out.terms["dev"].detach()) > 0
    assert {"dev_tumor", "dev_tme"} <= set(out.logs)
    teacher.eval()
    with torch.no_grad():
        one = teacher.loss(batch_of(two_mag_cohort, two_mag_split, cfg, 1, part="val"))
    assert set(one.terms) == {"task"} and torch.isfinite(one.terms["task"])
