"""Tests of the shared loss functions against slow reference computations."""

from __future__ import annotations

import math

import pytest
import torch

from modaltune.methods.losses import (
    cox_ph_loss,
    cross_entropy,
    kl_text_loss,
    nll_survival_loss,
    supcon_loss,
    survival_risk,
)


def test_kl_text_loss_matches_manual():
    torch.manual_seed(0)
    z, y = torch.randn(3, 16), torch.randn(3, 16)
    total = 0.0
    for t in range(3):
        zn = z[t] / z[t].norm()
        yn = y[t] / y[t].norm()
        p = torch.softmax(yn, 0)
        logq = torch.log_softmax(zn, 0)
        total += float((p * (torch.log(p) - logq)).sum())
    expected = total / 3 * 10.0
    assert kl_text_loss(z, y) == pytest.approx(expected, rel=1e-5)
    assert kl_text_loss(z, y, scale=1.0) == pytest.approx(expected / 10, rel=1e-5)
    assert kl_text_loss(z[0], y[0]) == pytest.approx(kl_text_loss(z[:1], y[:1]).item(), rel=1e-6)


def test_kl_temperature_sharpens_both_softmaxes():
    torch.manual_seed(1)
    z, y = torch.randn(2, 32), torch.randn(2, 32)
    t = 0.1
    total = 0.0
    for i in range(2):
        p = torch.softmax(y[i] / y[i].norm() / t, 0)
        logq = torch.log_softmax(z[i] / z[i].norm() / t, 0)
        total += float((p * (torch.log(p) - logq)).sum())
    assert kl_text_loss(z, y, temperature=t) == pytest.approx(total / 2 * 10.0, rel=1e-5)
    # near-uniform regime at t = 1: the loss is ~ scale / (2 D) * |centred z_n - centred y_n|^2
    zn, yn = torch.nn.functional.normalize(z, dim=-1), torch.nn.functional.normalize(y, dim=-1)
    quad = float(((zn - zn.mean(-1, keepdim=True)) - (yn - yn.mean(-1, keepdim=True))).pow(2).sum(-1).mean())
    assert kl_text_loss(z, y) == pytest.approx(10.0 / (2 * 32) * quad, rel=0.1)
    with pytest.raises(ValueError, match="temperature"):
        kl_text_loss(z, y, temperature=0.0)


def test_kl_text_loss_zero_for_same_direction():
    torch.manual_seed(0)
    y = torch.randn(3, 8)
    assert kl_text_loss(3.7 * y, y).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_text_loss(-y, y).item() > 0.01
    with pytest.raises(ValueError):
        kl_text_loss(torch.randn(3, 8), torch.randn(2, 8))


def _nll_slow(logits, y, e, alpha=0.4, eps=1e-7):
    losses = []
    for row, yb, ev in zip(logits.tolist(), y.tolist(), e.tolist()):
        h = [1 / (1 + math.exp(-v)) for v in row]
        s = [1.0]
        for hk in h:
            s.append(s[-1] * (1 - hk))
        c = 1 - ev
        unc = -(1 - c) * (math.log(max(s[yb], eps)) + math.log(max(h[yb], eps)))
        cen = -c * math.log(max(s[yb + 1], eps))
        losses.append((1 - alpha) * (unc + cen) + alpha * unc)
    return sum(losses) / len(losses)


def test_nll_survival_loss_matches_slow_reference():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 3, 1])
    e = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    got = nll_survival_loss(logits, y, e, alpha=0.4)
    assert got.item() == pytest.approx(_nll_slow(logits, y, e, 0.4), rel=1e-5)
    got0 = nll_survival_loss(logits, y, e, alpha=0.0)
    assert got0.item() == pytest.approx(_nll_slow(logits, y, e, 0.0), rel=1e-5)
    # unbatched
    one = nll_survival_loss(logits[1], y[1], e[1])
    assert one.item() == pytest.approx(_nll_slow(logits[1:2], y[1:2], e[1:2]), rel=1e-5)


def test_nll_prefers_correct_bin():
    y, e = torch.tensor([2]), torch.tensor([1.0])
    good = torch.tensor([[-5.0, -5.0, 5.0, 0.0]])
    bad = torch.tensor([[5.0, -5.0, -5.0, 0.0]])
    assert nll_survival_loss(good, y, e) < nll_survival_loss(bad, y, e)


def test_survival_risk_monotone_in_hazard():
    base = torch.zeros(4)
    risks = [survival_risk(base + d).item() for d in (-2.0, -1.0, 0.0, 1.0, 2.0)]
    assert all(a < b for a, b in zip(risks, risks[1:]))
    # batched and equal to -sum S
    logits = torch.randn(5, 4)
    s = torch.cumprod(1 - torch.sigmoid(logits), 1)
    torch.testing.assert_close(survival_risk(logits), -s.sum(1))


def _cox_slow(risk, time, event):
    total, n = 0.0, 0
    for i in range(len(risk)):
        if event[i]:
            denom = sum(math.exp(risk[j]) for j in range(len(risk)) if time[j] >= time[i])
            total += risk[i] - math.log(denom)
            n += 1
    return -total / n


def test_cox_ph_loss_breslow_with_ties():
    torch.manual_seed(0)
    risk = torch.randn(9)
    time = torch.tensor([5.0, 3.0, 3.0, 8.0, 1.0, 3.0, 8.0, 2.0, 6.0])
    event = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1]).float()
    got = cox_ph_loss(risk, time, event)
    assert got.item() == pytest.approx(_cox_slow(risk.tolist(), time.tolist(), event.tolist()), rel=1e-5)
    none = cox_ph_loss(risk.requires_grad_(), time, torch.zeros(9))
    assert none.item() == 0.0
    none.backward()


def _supcon_slow(feats, labels, temperature):
    b, m, _ = feats.shape
    f = torch.nn.functional.normalize(feats, dim=-1).reshape(b * m, -1)
    lab = labels.repeat_interleave(m).tolist()
    losses = []
    for i in range(b * m):
        others = [j for j in range(b * m) if j != i]
        denom = sum(math.exp(float(f[i] @ f[j]) / temperature) for j in others)
        pos = [j for j in others if lab[j] == lab[i]]
        if not pos:
            continue
        losses.append(-sum(float(f[i] @ f[j]) / temperature - math.log(denom) for j in pos) / len(pos))
    return sum(losses) / len(losses)


def test_supcon_loss_matches_slow_reference():
    torch.manual_seed(0)
    feats = torch.randn(5, 3, 8)
    labels = torch.tensor([0, 1, 0, 2, 1])
    got = supcon_loss(feats, labels, temperature=0.1)
    assert got.item() == pytest.approx(_supcon_slow(feats, labels, 0.1), rel=1e-4)
    # default labels: each sample its own class (its views are the positives)
    got2 = supcon_loss(feats, None, temperature=0.5)
    assert got2.item() == pytest.approx(_supcon_slow(feats, torch.arange(5), 0.5), rel=1e-4)
    # aligned views give a lower loss than random ones
    aligned = torch.randn(5, 1, 8).expand(5, 3, 8) + 0.01 * torch.randn(5, 3, 8)
    assert supcon_loss(aligned) < supcon_loss(feats)


def test_cross_entropy_unbatched():
    logits = torch.tensor([2.0, 0.5, -1.0])
    got = cross_entropy(logits, torch.tensor(0))
    assert got.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + math.exp(0.5) + math.exp(-1))),
                                       rel=1e-6)
