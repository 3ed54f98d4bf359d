"""Gradient policies: PCGrad maths, and the engine applying it to a whole optimiser step.

The toy method's two loss terms are linear in one parameter vector ``w`` with per-patient
coefficients, so every per-term gradient is known in closed form: a test computes what PCGrad must
give on the concatenated batch of a step and compares it with what the method's gradient hook sees.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from modaltune.config import resolve_config
from modaltune.data.splits import make_holdout_split
from modaltune.errors import ConfigError
from modaltune.methods.base import LossOutput, Method
from modaltune.registry import METHODS
from modaltune.training.engine import train_method
from modaltune.training.gradients import pcgrad_combine

TOY = "_test_gradients_two_terms"


def _coef(case: str, kind: str, agree: bool) -> torch.Tensor:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    a = rng.normal(size=3)
    if kind == "a":
        return torch.tensor(a, dtype=torch.float32)
    b = (0.5 * a + 0.1) if agree else (-a + rng.normal(scale=0.15, size=3))
    return torch.tensor(b, dtype=torch.float32)


class _TwoTerms(Method):
    requires = frozenset()
    batching = "list"
    evaluation = "predict"
    log: list = []

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.w = nn.Parameter(torch.ones(3))
        self.agree = bool(cfg["model"].get("agree", False))

    @classmethod
    def default_config(cls):
        return {"model": {"agree": False}}

    def loss(self, batch):
        ids = [p["case_id"] for p in batch]
        if self.training:
            type(self).log.append(("batch", ids))
        a = torch.stack([_coef(c, "a", self.agree) for c in ids]).mean(0)
        b = torch.stack([_coef(c, "b", self.agree) for c in ids]).mean(0)
        return LossOutput({"first": a @ self.w, "second": b @ self.w},
                          stats={"patients": torch.tensor(float(len(ids)))})

    def adjust_gradients(self, ctx):
        type(self).log.append(("step", ctx.params["w"].grad.detach().clone(),
                               {k: v[0].clone() for k, v in ctx.term_grads.items()}, dict(ctx.stats)))

    def embed(self, batch):
        return self.w.detach().expand(len(batch), 3)

    def predict(self, batch):
        return {"logits": None, "risk": torch.zeros(len(batch))}


if TOY not in METHODS:
    METHODS.register(TOY)(_TwoTerms)


def _pcgrad(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """PCGrad of two gradients written out: each projected off the other when they conflict."""
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2 if g1 @ g2 < 0 else g1
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1 if g1 @ g2 < 0 else g2
    return p1 + p2


def test_pcgrad_maths():
    g1, g2 = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([-1.0, 1.0, 0.0])
    params = [nn.Parameter(torch.zeros(3))]
    out = pcgrad_combine({"a": [g1], "b": [g2]}, params)[0]
    assert torch.allclose(out, _pcgrad(g1, g2))
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    assert float(p1 @ g2) == pytest.approx(0.0, abs=1e-7)            # projected onto the normal plane
    agree = torch.tensor([1.0, 2.0, 0.5])
    assert torch.equal(pcgrad_combine({"a": [g1], "b": [agree]}, params)[0], g1 + agree)   # left alone
    # several parameters: projection happens on the concatenated gradient
    two = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))]
    out2 = pcgrad_combine({"a": [g1[:2], g1[2:]], "b": [g2[:2], g2[2:]]}, two)
    assert torch.allclose(torch.cat(out2), _pcgrad(g1, g2))


@pytest.fixture(scope="module")
def split(small_cohort):
    return make_holdout_split(small_cohort.manifest, seed=0)


def _run(cohort, split, tmp_path, policy: str, agree: bool, accumulate: int):
    _TwoTerms.log.clear()
    cfg = resolve_config(TOY, overrides=["train.progress_bar=false", "train.epochs=1", "train.warmup_epochs=0",
                                         "train.batch_size=2", f"train.accumulate={accumulate}", "seed=0",
                                         f"train.gradient_policy={policy}", f"model.agree={str(agree).lower()}",
                                         "train.weight_decay=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_method(cfg, cohort, split, tmp_path / f"{policy}_{agree}_{accumulate}")
    steps, pending = [], []
    for entry in _TwoTerms.log:
        if entry[0] == "batch":
            pending.append(entry[1])
        else:
            steps.append((pending, *entry[1:]))
            pending = []
    return steps


def _expected_terms(micro_batches, agree: bool, accumulate: int):
    """Per-term gradients of one step as Lightning accumulates them: each micro-batch's mean, / accumulate."""
    g = {"first": torch.zeros(3), "second": torch.zeros(3)}
    for ids in micro_batches:
        g["first"] += torch.stack([_coef(c, "a", agree) for c in ids]).mean(0) / accumulate
        g["second"] += torch.stack([_coef(c, "b", agree) for c in ids]).mean(0) / accumulate
    return g


@pytest.mark.parametrize("accumulate", [1, 2])
def test_conflicting_gradients_are_projected(small_cohort, split, tmp_path, accumulate):
    steps = _run(small_cohort, split, tmp_path, "pcgrad", agree=False, accumulate=accumulate)
    assert steps and all(len(mb) == accumulate for mb, *_ in steps[:-1])
    conflicts = 0
    for micro_batches, grad, terms, stats in steps:
        g = _expected_terms(micro_batches, False, accumulate)
        assert torch.allclose(terms["first"], g["first"], atol=1e-6)
        assert torch.allclose(terms["second"], g["second"], atol=1e-6)     # the residual term
        assert torch.allclose(grad, _pcgrad(g["first"], g["second"]), atol=1e-6)
        assert float(stats["patients"]) == sum(len(ids) for ids in micro_batches)
        conflicts += bool(g["first"] @ g["second"] < 0)
    assert conflicts == len(steps)
    if accumulate == 2:
        # the decision is made on the step's batch: projecting each micro-batch separately differs
        mb, grad, *_ = steps[0]
        per_micro = sum(_pcgrad(*(_expected_terms([ids], False, 2)[k] for k in ("first", "second"))) for ids in mb)
        assert not torch.allclose(grad, per_micro, atol=1e-4)


def test_agreeing_gradients_are_left_alone(small_cohort, split, tmp_path):
    steps = _run(small_cohort, split, tmp_path, "pcgrad", agree=True, accumulate=2)
    for micro_batches, grad, _, _ in steps:
        g = _expected_terms(micro_batches, True, 2)
        assert float(g["first"] @ g["second"]) > 0
        assert torch.allclose(grad, g["first"] + g["second"], atol=1e-6)


def test_sum_policy_gives_the_plain_gradient_and_no_term_gradients(small_cohort, split, tmp_path):
    steps = _run(small_cohort, split, tmp_path, "sum", agree=False, accumulate=2)
    for micro_batches, grad, terms, _ in steps:
        g = _expected_terms(micro_batches, False, 2)
        assert terms == {}
        assert torch.allclose(grad, g["first"] + g["second"], atol=1e-6)


def test_unknown_policy_is_refused_before_training(small_cohort, split, tmp_path):
    cfg = resolve_config(TOY, overrides=["train.gradient_policy=mgda"])
    with pytest.raises(ConfigError, match="gradient_policy"):
        train_method(cfg, small_cohort, split, tmp_path / "bad")
