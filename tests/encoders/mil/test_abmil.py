"""Tests of attention-based MIL (ABMIL), gated and non-gated."""

from __future__ import annotations

import pytest
import torch

from modaltune.encoders.mil import ABMIL, GatedAttention, NonGatedAttention


def test_abmil_attention_sums_to_one_and_permutation_behaviour():
    torch.manual_seed(0)
    model = ABMIL(8, dim=16, attn_dim=8).eval()
    bag = torch.randn(2, 10, 8)
    perm = torch.randperm(10)
    with torch.no_grad():
        a, a_perm = model.forward_attention(bag), model.forward_attention(bag[:, perm])
        h, h_perm = model.forward_features(bag), model.forward_features(bag[:, perm])
    assert a.shape == (2, 10)
    assert torch.allclose(a.sum(-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(a[:, perm], a_perm, atol=1e-6)  # equivariant
    assert torch.allclose(h, h_perm, atol=1e-5)  # invariant
    assert h.shape == (2, 16)
    # attention is not trivially uniform
    assert a.std() > 0


def test_abmil_mask_ignores_padding_and_head():
    torch.manual_seed(0)
    model = ABMIL(8, dim=16, attn_dim=8, n_out=3).eval()
    bag = torch.randn(1, 6, 8)
    padded = torch.cat([bag, torch.randn(1, 4, 8) * 50], dim=1)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    with torch.no_grad():
        assert torch.allclose(model.forward_features(bag), model.forward_features(padded, mask), atol=1e-5)
        assert model(bag).shape == (1, 3)
        assert model.forward_attention(padded, mask)[:, 6:].abs().max() == 0


def test_non_gated_abmil_is_ilse_eq8():
    """Non-gated: ``softmax_n(w^T tanh(V h_n))`` over the embedded patches, then their weighted mean."""
    torch.manual_seed(0)
    model = ABMIL(8, dim=16, attn_dim=8, dropout=0.0, gated=False).eval()
    assert isinstance(model.attention, NonGatedAttention) and not hasattr(model.attention, "U")
    lin1, lin2 = model.attention.V[0], model.attention.w
    assert (lin1.in_features, lin1.out_features, lin2.in_features, lin2.out_features) == (16, 8, 8, 1)
    bag = torch.randn(2, 9, 8)
    with torch.no_grad():
        h = model.embed(bag)
        scores = (torch.tanh(h @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias).squeeze(-1)
        a = torch.softmax(scores, dim=-1)
        torch.testing.assert_close(model.forward_attention(bag), a)
        torch.testing.assert_close(model.forward_features(bag), torch.einsum("bn,bnd->bd", a, h))
    # padding is ignored as in the gated version
    padded = torch.cat([bag, torch.randn(2, 3, 8) * 50], dim=1)
    mask = torch.tensor([[True] * 9 + [False] * 3] * 2)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(padded, mask), model.forward_features(bag))


def test_gated_is_the_default_and_differs_from_non_gated():
    torch.manual_seed(0)
    gated = ABMIL(8, dim=16, attn_dim=8)
    assert gated.gated and isinstance(gated.attention, GatedAttention)
    assert {k.split(".")[1] for k in gated.state_dict() if k.startswith("attention.")} == {"V", "U", "w"}
    torch.manual_seed(0)
    plain = ABMIL(8, dim=16, attn_dim=8, gated=False)
    assert {k.split(".")[1] for k in plain.state_dict() if k.startswith("attention.")} == {"V", "w"}
    bag = torch.randn(1, 7, 8)
    with torch.no_grad():
        assert not torch.allclose(gated.eval().forward_attention(bag), plain.eval().forward_attention(bag))


@pytest.mark.parametrize("gated", [True, False])
def test_abmil_under_bf16_autocast(gated):
    torch.manual_seed(0)
    bag = torch.randn(1, 10, 8)
    model = ABMIL(8, dim=16, attn_dim=8, gated=gated)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model.forward_features(bag)
        a = model.forward_attention(bag)
    h.float().sum().backward()
    assert torch.isfinite(h.float()).all() and torch.allclose(a.float().sum(-1), torch.ones(1), atol=1e-2)
