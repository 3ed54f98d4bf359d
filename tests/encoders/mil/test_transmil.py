"""Tests of TransMIL and the Nystrom attention it uses."""

from __future__ import annotations

import pytest
import torch

from modaltune.encoders.mil import NystromAttention, TransMIL, moore_penrose_pinv


def _full_attention_reference(att: NystromAttention, x: torch.Tensor) -> torch.Tensor:
    """Slow exact multi-head softmax attention with the module's own projections."""
    b, n, _ = x.shape
    h, d = att.heads, att.dim_head
    q, k, v = att.to_qkv(x).chunk(3, dim=-1)
    out = torch.zeros(b, n, h * d)
    for bi in range(b):
        for hi in range(h):
            sl = slice(hi * d, (hi + 1) * d)
            logits = q[bi, :, sl] @ k[bi, :, sl].T / d ** 0.5
            w = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
            w = w / w.sum(dim=1, keepdim=True)
            out[bi, :, sl] = w @ v[bi, :, sl]
    return att.to_out(out)


@pytest.mark.parametrize("n", [7, 16])
def test_nystrom_matches_softmax_attention_when_landmarks_equal_length(n):
    torch.manual_seed(0)
    att = NystromAttention(16, heads=2, dim_head=8, num_landmarks=n, pinv_iterations=30, residual=False).eval()
    x = torch.randn(2, n, 16) * 2
    with torch.no_grad():
        got, ref = att(x), _full_attention_reference(att, x)
    assert torch.allclose(got, ref, atol=1e-3, rtol=1e-3), (got - ref).abs().max()


def test_nystrom_with_fewer_landmarks_padding_and_mask():
    torch.manual_seed(0)
    att = NystromAttention(16, heads=2, dim_head=8, num_landmarks=4).eval()
    x = torch.randn(2, 11, 16)  # 11 is not a multiple of 4: left padding is used
    out = att(x)
    assert out.shape == (2, 11, 16) and torch.isfinite(out).all()
    # a masked-out token must not change the outputs of the other tokens
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[:, -1] = False
    x2 = x.clone()
    x2[:, -1] = 100.0
    with torch.no_grad():
        a, b = att(x, mask), att(x2, mask)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-4)


def test_pinv_of_invertible_matrix():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(3, 6, 6) * 3, dim=-1).double()
    z = moore_penrose_pinv(a, iters=40)
    assert torch.allclose(a @ z @ a, a, atol=1e-6)


@pytest.mark.parametrize("n", [1, 4, 10, 37])
def test_transmil_shapes_and_attention(n):
    torch.manual_seed(0)
    model = TransMIL(8, dim=16, heads=2, n_out=2).eval()
    bag = torch.randn(2, n, 8)
    with torch.no_grad():
        h = model.forward_features(bag)
        a = model.forward_attention(bag)
    assert h.shape == (2, 16) and torch.isfinite(h).all()
    assert model.forward_head(h).shape == (2, 2)
    assert a.shape == (2, n) and torch.allclose(a.sum(-1), torch.ones(2), atol=1e-5)


def test_transmil_backward():
    model = TransMIL(8, dim=16, heads=2, n_out=2)
    model(torch.randn(1, 13, 8)).sum().backward()
    assert model.fc[0].weight.grad is not None and model.fc[0].weight.grad.abs().sum() > 0


def test_transmil_under_bf16_autocast():
    torch.manual_seed(0)
    bag = torch.randn(1, 10, 8)
    model = TransMIL(8, dim=16, heads=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model.forward_features(bag)
        a = model.forward_attention(bag)
    h.float().sum().backward()
    assert torch.isfinite(h.float()).all() and torch.allclose(a.float().sum(-1), torch.ones(1), atol=1e-2)
