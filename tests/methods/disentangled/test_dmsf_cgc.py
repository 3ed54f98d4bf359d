"""CGC (spec (j) 3): projection maths on constructed gradients, partial logits, confidences, the hook on a
real teacher (only the classifier weight changes), and the engine's accumulated step deciding on the whole
step's batch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from dmsf_helpers import batch_of, build, tiny_cfg

from modaltune.methods.base import GradientContext
from modaltune.methods.disentangled import losses as dl
from modaltune.methods.disentangled.common import EXPERTS
from modaltune.methods.disentangled.teacher import DMSFTeacher
from modaltune.methods.losses import nll_survival_loss
from modaltune.registry import METHODS
from modaltune.training.engine import train_method


def _conflicting():
    g_t = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    g_e = torch.tensor([[-2.0, -1.0, 0.5], [1.0, 1.0, 1.0]], dtype=torch.float64)   # row 0 conflicts, row 1 not
    return g_t, g_e


def test_paper_projection_is_orthogonal_and_keeps_the_confident_side():
    g_t, g_e = _conflicting()
    assert float(g_t[0] @ g_e[0]) < 0 and float(g_t[1] @ g_e[1]) > 0
    new_t, new_e, conflict = dl.coordinate_rows(g_t, g_e, conf_tumor=1.0, conf_tme=3.0, mode="paper")
    assert conflict.tolist() == [True, False]
    assert float(new_t[0] @ g_e[0]) == pytest.approx(0.0, abs=1e-12)        # tumor (less confident) projected
    assert torch.equal(new_e, g_e)                                            # TME bit-identical
    assert torch.equal(new_t[1], g_t[1])                                      # cos >= 0: unchanged
    new_t, new_e, _ = dl.coordinate_rows(g_t, g_e, conf_tumor=3.0, conf_tme=1.0, mode="paper")
    assert torch.equal(new_t, g_t) and float(new_e[0] @ g_t[0]) == pytest.approx(0.0, abs=1e-12)
    # equal confidences: Eq. 6 has no case, nothing changes
    new_t, new_e, _ = dl.coordinate_rows(g_t, g_e, 2.0, 2.0)
    assert torch.equal(new_t, g_t) and torch.equal(new_e, g_e)


def test_agreeing_gradients_are_left_alone():
    g = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    h = g.abs() * torch.sign(g) + 0.1 * torch.sign(g)                         # same signs: dot > 0 in every row
    new_t, new_e, conflict = dl.coordinate_rows(g, h, 0.0, 5.0)
    assert not conflict.any() and torch.equal(new_t, g) and torch.equal(new_e, h)


def test_official_mode_is_the_rescaled_reflection():
    g_t, g_e = _conflicting()
    g, h = g_t[0], g_e[0]
    p = (g @ h) / (h @ h) * h
    expected = torch.linalg.norm(g - p) * (g - 2 * p) / torch.linalg.norm(g - 2 * p)
    new_t, new_e, _ = dl.coordinate_rows(g_t, g_e, 1.0, 3.0, mode="official")
    assert torch.allclose(new_t[0], expected, atol=1e-12) and torch.equal(new_e, g_e)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    assert cos(new_t[0], h) == pytest.approx(-cos(g, h), abs=1e-12)          # the reflection flips the cosine
    assert torch.equal(dl.project_out(g[None], torch.zeros(1, 3, dtype=g.dtype), "paper")[0], g)


def test_partial_logits_sum_to_the_logits():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 3)
    x_t, x_e = torch.randn(5, 4), torch.randn(5, 4)
    o_t, o_e = dl.partial_logits(x_t, x_e, lin.weight, lin.bias)
    assert torch.allclose(o_t + o_e, lin(torch.cat([x_t, x_e], -1)), atol=1e-6)
    assert torch.allclose(o_t, x_t @ lin.weight[:, :4].t() + lin.bias / 2, atol=1e-6)


def test_confidences_equal_a_manual_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3))
    y = np.array([0, 2, -1, 1, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    manual = sum(p[i, y[i]] for i in range(5) if y[i] >= 0)
    got = dl.class_confidence(torch.tensor(logits), torch.tensor(y))
    assert float(got) == pytest.approx(manual, rel=1e-6)
    hz = torch.tensor(rng.normal(size=(4, 4)), dtype=torch.float32)
    bins, event = torch.tensor([0, 3, 2, 1]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    known = torch.tensor([True, True, False, True])
    manual = sum(float(torch.exp(-nll_survival_loss(hz[i], bins[i], event[i], alpha=0.0))) for i in range(4) if known[i])
    assert float(dl.survival_confidence(hz, bins, event, known)) == pytest.approx(manual, rel=1e-5)


def test_hook_changes_only_the_classifier_weights(two_mag_cohort, two_mag_split):
    teacher, cfg, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split, "model.dropout=0.0")
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 6)
    out = teacher.loss(batch)
    sum(out.terms.values()).backward()
    before = {n: p.grad.clone() for n, p in teacher.named_parameters() if p.grad is not None}
    classifier = {f"experts.{e}.classifier.weight" for e in EXPERTS}
    assert classifier <= set(before)
    # make every class row conflict, so the hook has something to do
    for e in EXPERTS:
        g = teacher.experts[e].classifier.weight.grad
        g[:, 16:] = -g[:, :16] + 0.01
    before.update({f"experts.{e}.classifier.weight": teacher.experts[e].classifier.weight.grad.clone()
                   for e in EXPERTS})
    teacher.adjust_gradients(GradientContext(params=dict(teacher.named_parameters()), stats=out.stats))
    for name, p in teacher.named_parameters():
        if name in classifier:
            assert not torch.equal(p.grad, before[name])
        elif name in before:
            assert torch.equal(p.grad, before[name]), name


RECORDER = "_test_dmsf_cgc_recorder"


class _Recorder(DMSFTeacher):
    """The teacher, recording each micro-batch's classifier gradients and confidences and each step's hook."""

    log: list = []

    def loss(self, batch):
        out = super().loss(batch)
        if self.training:
            weights = [self.experts[e].classifier.weight for e in EXPERTS]
            grads = torch.autograd.grad(out.terms["task"], weights, retain_graph=True)
            type(self).log.append(("micro", [g.detach().clone() for g in grads],
                                   {k: v.detach().clone() for k, v in out.stats.items()}))
        return out

    def adjust_gradients(self, ctx):
        before = [self.experts[e].classifier.weight.grad.detach().clone() for e in EXPERTS]
        super().adjust_gradients(ctx)
        after = [self.experts[e].classifier.weight.grad.detach().clone() for e in EXPERTS]
        type(self).log.append(("step", before, after, {k: v.clone() for k, v in ctx.stats.items()}))


if RECORDER not in METHODS:
    METHODS.register(RECORDER)(_Recorder)


def _manual_cgc(grad: torch.Tensor, conf_t: float, conf_e: float, d: int) -> torch.Tensor:
    """Eq. 6 written out row by row."""
    out = grad.clone()
    for c in range(grad.shape[0]):
        gt, ge = grad[c, :d].double(), grad[c, d:].double()
        if float(gt @ ge) >= 0 or conf_t == conf_e:
            continue
        if conf_t < conf_e:
            out[c, :d] = (gt - (gt @ ge) / (ge @ ge) * ge).to(grad.dtype)
        else:
            out[c, d:] = (ge - (ge @ gt) / (gt @ gt) * gt).to(grad.dtype)
    return out


def test_engine_decides_on_the_accumulated_step(two_mag_cohort, two_mag_split, tmp_path):
    _Recorder.log.clear()
    cfg = tiny_cfg(RECORDER, "train.accumulate=2", "train.weight_decay=0", "model.dropout=0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_method(cfg, two_mag_cohort, two_mag_split, tmp_path / "run")
    steps, pending = [], []
    for entry in _Recorder.log:
        if entry[0] == "micro":
            pending.append(entry[1:])
        else:
            steps.append((pending, *entry[1:]))
            pending = []
    assert steps and all(len(micro) == 2 for micro, *_ in steps)
    changed = 0
    for micro, before, after, stats in steps:
        for i, e in enumerate(EXPERTS):
            grad = sum(m[0][i] for m in micro) / 2                            # Lightning's accumulated gradient
            assert torch.allclose(before[i], grad, atol=1e-6)
            conf = {s: sum(float(m[1][f"cgc_{e}_{s}"]) for m in micro) for s in ("tumor", "tme")}
            assert float(stats[f"cgc_{e}_tumor"]) == pytest.approx(conf["tumor"], rel=1e-6)
            assert float(stats[f"cgc_{e}_tme"]) == pytest.approx(conf["tme"], rel=1e-6)
            expected = _manual_cgc(before[i], float(stats[f"cgc_{e}_tumor"]), float(stats[f"cgc_{e}_tme"]), 16)
            assert torch.allclose(after[i], expected, atol=1e-7)
            changed += int(not torch.equal(after[i], before[i]))
    assert changed > 0                                                        # some step had a conflict
