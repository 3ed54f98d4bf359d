"""Feature distillation's prototype matching (``losses.prototype_mse``, ``model.feat_match``)."""

from __future__ import annotations

import pytest
import torch
from dmsf_helpers import batch_of, build

from modaltune.errors import ConfigError
from modaltune.methods.disentangled.losses import prototype_mse


def _reference(s: torch.Tensor, t: torch.Tensor, best: bool) -> torch.Tensor:
    """Slow reference: per patient, the MSE of each prototype order; the mean over patients."""
    d = s.shape[1] // 2
    total = 0.0
    for i in range(s.shape[0]):
        orders = [(0, 1), (1, 0)] if best else [(0, 1)]
        costs = []
        for a, b in orders:
            p1, p2 = s[i, a * d:(a + 1) * d], s[i, b * d:(b + 1) * d]
            costs.append((sum(float(x) ** 2 for x in p1 - t[i, :d]) + sum(float(x) ** 2 for x in p2 - t[i, d:])) / (2 * d))
        total += min(costs)
    return torch.tensor(total / s.shape[0])


@pytest.mark.parametrize("match", ["ordered", "best"])
def test_value_matches_the_slow_reference(match):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert torch.allclose(prototype_mse(s, t, match), _reference(s, t, match == "best"), atol=1e-6)
    if match == "ordered":
        assert torch.allclose(prototype_mse(s, t, match), torch.nn.functional.mse_loss(s, t))


def test_best_is_invariant_to_each_patients_prototype_order_and_ordered_is_not():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    swap = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    s2 = torch.where(swap[:, None], torch.cat([s[:, 4:], s[:, :4]], 1), s)
    assert torch.allclose(prototype_mse(s, t, "best"), prototype_mse(s2, t, "best"))
    assert not torch.allclose(prototype_mse(s, t, "ordered"), prototype_mse(s2, t, "ordered"))
    # a student whose prototypes are the teacher's subspaces in either order costs nothing
    t_swapped = torch.where(swap[:, None], torch.cat([t[:, 4:], t[:, :4]], 1), t)
    assert float(prototype_mse(t_swapped, t, "best")) == 0.0 and float(prototype_mse(t_swapped, t, "ordered")) > 0


def test_best_sends_gradient_only_through_the_chosen_order():
    s = torch.tensor([[1.0, 0.0, 0.0, 1.0]], requires_grad=True)   # P1 = [1, 0], P2 = [0, 1]
    t = torch.tensor([[0.0, 1.0, 1.0, 0.0]])                       # X_T = P2, X_E = P1: the swapped order
    prototype_mse(s, t, "best").backward()
    assert torch.count_nonzero(s.grad) == 0                         # swapped order fits exactly


def test_unknown_match_is_refused(two_mag_cohort, two_mag_split):
    with pytest.raises(ConfigError, match="feat_match"):
        prototype_mse(torch.zeros(1, 4), torch.zeros(1, 4), "hungarian")
    with pytest.raises(ConfigError, match="feat_match"):
        build("dmsf_distill", two_mag_cohort, two_mag_split, "model.feat_match=hungarian")


def test_distillation_uses_the_configured_match(two_mag_cohort, two_mag_split):
    teacher, _, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split)
    losses = {}
    for match in ("ordered", "best"):
        student, cfg, _ = build("dmsf_distill", two_mag_cohort, two_mag_split, f"model.feat_match={match}",
                                frozen={"teacher": teacher.eval()})
        student.train()
        torch.manual_seed(0)
        out = student.loss(batch_of(two_mag_cohort, two_mag_split, cfg))
        losses[match] = float(out.terms["feat"].detach())
    assert losses["best"] < losses["ordered"]    # some patient fits better with its prototypes swapped
