"""MICE's losses: the ragged multi-view contrastive loss against a double loop, and the NLL at alpha 0
against hand-computed values (spec mice.md (c), (j) 8)."""

from __future__ import annotations

import math

import pytest
import torch

from modaltune.methods.losses import multiview_contrastive, nll_survival_loss

# patients 0..3 own 3, 2, 1 and 2 real tokens (patient 2 has a single modality)
OWNER = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])


def _reference(feats: torch.Tensor, owner: torch.Tensor, tau: float, form: str) -> float:
    """Double loop over anchors and candidates, straight from the definitions."""
    z = [f / f.norm() for f in feats.double()]
    per_anchor = []
    for a in range(len(z)):
        positives = [p for p in range(len(z)) if p != a and owner[p] == owner[a]]
        if not positives:
            continue                                    # anchors without a positive are left out
        others = [j for j in range(len(z)) if j != a]
        denominator = sum(math.exp(float(z[a] @ z[j]) / tau) for j in others)
        if form == "supcon_out":
            per_anchor.append(-sum(float(z[a] @ z[p]) / tau - math.log(denominator) for p in positives)
                              / len(positives))
        else:
            numerator = sum(math.exp(float(z[a] @ z[p]) / tau) for p in positives)
            per_anchor.append(-math.log(numerator / denominator))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("form", ["supcon_out", "infonce_in"])
def test_contrastive_equals_double_loop_reference_on_a_ragged_batch(form):
    feats = torch.randn(len(OWNER), 7, generator=torch.Generator().manual_seed(0))
    got = multiview_contrastive(feats, OWNER, temperature=0.1, form=form)
    assert float(got) == pytest.approx(_reference(feats, OWNER, 0.1, form), rel=1e-5)
    assert float(multiview_contrastive(feats, OWNER, temperature=0.5, form=form)) == pytest.approx(
        _reference(feats, OWNER, 0.5, form), rel=1e-5)


def test_the_two_forms_differ_and_unknown_forms_are_refused():
    feats = torch.randn(len(OWNER), 7, generator=torch.Generator().manual_seed(1))
    a = multiview_contrastive(feats, OWNER, form="supcon_out")
    b = multiview_contrastive(feats, OWNER, form="infonce_in")
    assert abs(float(a) - float(b)) > 1e-3
    with pytest.raises(ValueError, match="form"):
        multiview_contrastive(feats, OWNER, form="simclr")


def test_contrastive_is_scale_invariant_per_token():
    feats = torch.randn(len(OWNER), 7, generator=torch.Generator().manual_seed(2))
    scale = torch.linspace(0.1, 40.0, len(OWNER))[:, None]
    torch.testing.assert_close(multiview_contrastive(feats * scale, OWNER), multiview_contrastive(feats, OWNER))


def test_single_modality_patients_add_no_anchor_term():
    feats = torch.randn(len(OWNER), 7, generator=torch.Generator().manual_seed(3), requires_grad=True)
    # the mean runs over the 7 anchors that have a positive; the code's form would count the lone token's
    # anchor as a zero and give 7/8 of this value
    got = float(multiview_contrastive(feats, OWNER))
    assert got == pytest.approx(_reference(feats.detach(), OWNER, 0.1, "supcon_out"), rel=1e-5)
    assert got != pytest.approx(_reference(feats.detach(), OWNER, 0.1, "supcon_out") * 7 / 8, rel=1e-3)
    # a batch where every patient has one real token has no anchor: zero, graph kept, finite zero gradients
    single = torch.arange(4)
    for form in ("supcon_out", "infonce_in"):
        loss = multiview_contrastive(feats[:4], single, form=form)
        assert float(loss) == 0.0 and loss.requires_grad
        feats.grad = None
        loss.backward()
        assert torch.equal(feats.grad, torch.zeros_like(feats))


@pytest.mark.parametrize("form", ["supcon_out", "infonce_in"])
def test_contrastive_gradients_are_finite_with_a_single_modality_patient(form):
    feats = torch.randn(len(OWNER), 7, generator=torch.Generator().manual_seed(4), requires_grad=True)
    multiview_contrastive(feats, OWNER, form=form).backward()
    assert torch.isfinite(feats.grad).all()
    assert feats.grad[5].abs().sum() > 0          # the single token still acts as a negative of the others


def test_nll_with_alpha_zero_equals_hand_computed_values():
    # all logits 0: every hazard is 1/2, so S = (1/2, 1/4, 1/8, 1/16)
    logits = torch.zeros(2, 4)
    # patient 0: event in bin 1 -> -log S_0 - log h_1 = 2 log 2; patient 1: censored in bin 2 -> -log S_2 = 3 log 2
    got = nll_survival_loss(logits, torch.tensor([1, 2]), torch.tensor([1.0, 0.0]), alpha=0.0)
    assert float(got) == pytest.approx(2.5 * math.log(2), rel=1e-6)
    # an event in the first bin: -log 1 - log h_0 = log 2; censored in the last bin: -log S_3 = 4 log 2
    got = nll_survival_loss(logits, torch.tensor([0, 3]), torch.tensor([1.0, 0.0]), alpha=0.0)
    assert float(got) == pytest.approx(2.5 * math.log(2), rel=1e-6)
    only_event = nll_survival_loss(logits[:1], torch.tensor([0]), torch.tensor([1.0]), alpha=0.0)
    assert float(only_event) == pytest.approx(math.log(2), rel=1e-6)
    # alpha 0.4 re-weights the uncensored term: (0.6 * (2 + 3) + 0.4 * 2) / 2 log 2 != 2.5 log 2
    with_alpha = nll_survival_loss(logits, torch.tensor([1, 2]), torch.tensor([1.0, 0.0]), alpha=0.4)
    assert float(with_alpha) == pytest.approx(1.9 * math.log(2), rel=1e-6)
