"""Tests of LongNet's dilated attention (composite and fused CPU paths).

The dilated attention is checked against a slow reference written here with explicit loops over
batch, segment and head, following torchscale's rules (zero padding that is *not* masked, head
``h`` of ``H`` attends to positions ``j % r == h // ceil(H / r)`` within each segment, branches
merged by the softmax of their log-sum-exps).
"""

from __future__ import annotations

import math

import pytest
import torch

from modaltune.encoders.slide import fused_cpu, kernels
from modaltune.encoders.slide.config import GIGAPATH_SEGMENT_LENGTHS
from modaltune.encoders.slide.dilated_attention import dilated_attention, dilated_branch

torch.set_num_threads(1)


@pytest.fixture(params=["fused", "portable"])
def kernel_path(request, monkeypatch):
    """Run a test with the fused-LSE kernels and with the portable SDPA + explicit LSE path."""
    monkeypatch.setattr(kernels, "USE_FUSED_LSE_KERNELS", request.param == "fused")
    return request.param


# ---------------------------------------------------------------------------------------------
# slow reference
# ---------------------------------------------------------------------------------------------
def ref_branch(q, k, v, w, r):
    """Loop reference of one branch: q, k, v [B, L, H, d] -> out [B, L, H, d], lse [B, L, H]."""
    b_, length, heads, d = q.shape
    w = min(w, length)
    nseg = math.ceil(length / w)
    m = math.ceil(w / r)
    per_group = math.ceil(heads / r)
    out = torch.zeros(b_, length, heads, d, dtype=torch.float64)
    lse = torch.full((b_, length, heads), float("-inf"), dtype=torch.float64)
    zero = torch.zeros(d, dtype=torch.float64)

    def token(t, bi, s, j, h):
        p = s * w + j
        return t[bi, p, h].double() if (j < w and p < length) else zero

    for bi in range(b_):
        for s in range(nseg):
            for h in range(heads):
                g = h // per_group
                js = [g + i * r for i in range(m)]
                qs = torch.stack([token(q, bi, s, j, h) for j in js])
                ks = torch.stack([token(k, bi, s, j, h) for j in js])
                vs = torch.stack([token(v, bi, s, j, h) for j in js])
                scores = qs @ ks.T / math.sqrt(d)
                probs = torch.softmax(scores, dim=-1)
                o = probs @ vs
                l_ = torch.logsumexp(scores, dim=-1)
                for i, j in enumerate(js):
                    p = s * w + j
                    if j < w and p < length:
                        out[bi, p, h] = o[i]
                        lse[bi, p, h] = l_[i]
    return out, lse


def ref_dilated(q, k, v, segs, ratios):
    outs, lses = zip(*[ref_branch(q, k, v, w, r) for w, r in zip(segs, ratios)])
    lse = torch.stack(lses)                                  # [nb, B, L, H]
    mx = lse.max(dim=0).values
    wts = torch.exp(lse - mx)
    wts = wts / wts.sum(dim=0)
    return sum(o * wt.unsqueeze(-1) for o, wt in zip(outs, wts))


def _qkv(b, length, heads, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, 3, heads, d, generator=g)


# ---------------------------------------------------------------------------------------------
# dilated attention
# ---------------------------------------------------------------------------------------------
BRANCH_CASES = [
    # (B, L, H, d, w, r)
    (2, 37, 4, 8, 16, 1),     # several segments, last one padded
    (1, 37, 4, 8, 16, 2),
    (2, 45, 4, 8, 64, 4),     # w capped at L; L not a multiple of r
    (1, 40, 4, 8, 10, 4),     # w not a multiple of r: each segment padded
    (1, 50, 4, 8, 32, 8),     # fewer heads than r: offsets 4..7 covered by no head
    (1, 33, 6, 4, 16, 4),     # H not a multiple of r (head groups of ceil(6/4) = 2)
    (1, 20, 3, 4, 1000, 1),   # single segment, ratio 1
]


@pytest.mark.parametrize("b,length,heads,d,w,r", BRANCH_CASES)
def test_branch_matches_loop_reference(kernel_path, b, length, heads, d, w, r):
    qkv = _qkv(b, length, heads, d, seed=length + w + r)
    out, lse = dilated_branch(qkv, w, r)
    ref_out, ref_lse = ref_branch(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], w, r)
    assert out.shape == (b, length, heads, d) and lse.shape == (b, length, heads)
    covered = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), covered)
    if r > heads:
        assert not covered.all()          # the uncovered offsets really exist in this case
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse[covered].double(), ref_lse[covered], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("segs,ratios,length,heads", [
    ((8, 16, 32, 64, 128), (1, 2, 4, 8, 16), 53, 4),
    ((1024, 5792, 32768), (1, 2, 4), 41, 8),          # GigaPath lengths, all capped at L
    ((8, 12), (1, 3), 30, 6),
])
def test_merged_matches_loop_reference(kernel_path, segs, ratios, length, heads):
    qkv = _qkv(2, length, heads, 8, seed=7)
    out = dilated_attention(qkv, segs, ratios)
    ref = ref_dilated(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], segs, ratios)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_full_segment_ratio_one_is_full_attention(kernel_path):
    b, length, heads, d = 2, 29, 4, 8
    qkv = _qkv(b, length, heads, d, seed=3)
    out = dilated_attention(qkv, (length,), (1,))
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))          # [B, H, L, d]
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    full = (probs @ v).transpose(1, 2)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)
    # and a longer segment than the sequence is capped, giving the same
    torch.testing.assert_close(dilated_attention(qkv, (4096,), (1,)), full, atol=1e-5, rtol=1e-5)


def test_gradients_match_reference_with_detached_merge_weights(kernel_path):
    """Gradients flow through each branch output; the merge weights are constants (torchscale)."""
    segs, ratios = (8, 16, 64), (1, 2, 4)
    qkv = _qkv(1, 27, 4, 4, seed=11).requires_grad_(True)
    g_out = torch.randn(1, 27, 4, 4, generator=torch.Generator().manual_seed(1))
    (dilated_attention(qkv, segs, ratios) * g_out).sum().backward()

    qkv_ref = qkv.detach().double().requires_grad_(True)
    q, k, v = qkv_ref[:, :, 0], qkv_ref[:, :, 1], qkv_ref[:, :, 2]
    outs = []
    lses = []
    for w, r in zip(segs, ratios):
        o, lse = _ref_branch_differentiable(q, k, v, w, r)
        outs.append(o)
        lses.append(lse.detach())
    wts = torch.softmax(torch.stack(lses), dim=0)
    ref = sum(o * wt.unsqueeze(-1) for o, wt in zip(outs, wts))
    (ref * g_out.double()).sum().backward()
    torch.testing.assert_close(qkv.grad.double(), qkv_ref.grad, atol=1e-5, rtol=1e-4)


FUSED_CASES = [
    # (B, L, H, segs, ratios)
    (2, 53, 4, (8, 16, 32, 64, 128), (1, 2, 4, 8, 16)),   # partial last segment, H < r
    (3, 41, 6, (16, 1000), (1, 4)),                       # H not a multiple of r, capped segment
    (1, 64, 4, (16, 32), (1, 2)),                         # no padding at all
    (2, 37, 8, (37,), (1,)),                              # one branch covering everything
]


@pytest.mark.parametrize("b,length,heads,segs,ratios", FUSED_CASES)
def test_fused_cpu_path_equals_composite_values_and_gradients(monkeypatch, b, length, heads, segs, ratios):
    """The one-function CPU path gives the composite path's outputs and input gradients."""
    calls = []
    real_apply = fused_cpu._FusedDilatedAttention.apply
    monkeypatch.setattr(fused_cpu._FusedDilatedAttention, "apply", lambda *a: calls.append(1) or real_apply(*a))
    qkv = _qkv(b, length, heads, 8, seed=length).double().requires_grad_(True)
    g_out = torch.randn(b, length, heads, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    monkeypatch.setattr(kernels, "USE_FUSED_LSE_KERNELS", True)
    out = dilated_attention(qkv, segs, ratios)
    assert calls, "the fused CPU path was not taken"
    (out * g_out).sum().backward()
    grad_fused, qkv.grad = qkv.grad.clone(), None

    monkeypatch.setattr(kernels, "USE_FUSED_LSE_KERNELS", False)
    ref = dilated_attention(qkv, segs, ratios)
    (ref * g_out).sum().backward()
    assert len(calls) == 1
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad_fused, qkv.grad, atol=1e-6, rtol=1e-6)
    # and against the loop reference
    loop = ref_dilated(qkv[:, :, 0].detach(), qkv[:, :, 1].detach(), qkv[:, :, 2].detach(), segs, ratios)
    torch.testing.assert_close(out.detach(), loop, atol=1e-6, rtol=1e-6)


def test_fused_plan_falls_back_when_segments_need_their_own_padding():
    """Several segments whose length r does not divide cannot share one padded copy."""
    assert fused_cpu._fused_plan(40, 4, (10,), (4,)) is None
    padded, branches = fused_cpu._fused_plan(4001, 16, GIGAPATH_SEGMENT_LENGTHS, (1, 2, 4, 8, 16))
    assert padded == 4096 and [br[:3] for br in branches] == [(4, 1024, 1), (1, 2001, 2), (1, 1001, 4),
                                                              (1, 501, 8), (1, 251, 16)]
    qkv = _qkv(1, 40, 4, 8, seed=5)
    ref = ref_dilated(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], (10, 40), (4, 1))
    torch.testing.assert_close(dilated_attention(qkv, (10, 40), (4, 1)).double(), ref, atol=1e-5, rtol=1e-5)


def test_fused_path_bf16_close_to_fp32():
    qkv = _qkv(1, 70, 4, 16, seed=9)
    out32 = dilated_attention(qkv, (16, 64), (1, 2))
    out16 = dilated_attention(qkv.bfloat16(), (16, 64), (1, 2))
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), out32, atol=3e-2, rtol=3e-2)


def _ref_branch_differentiable(q, k, v, w, r):
    """Same rule as :func:`ref_branch`, built with autograd-friendly ops (mask matrix per segment)."""
    b_, length, heads, d = q.shape
    w = min(w, length)
    per_group = math.ceil(heads / r)
    m = math.ceil(w / r)
    rows_out, rows_lse = [], []
    for p in range(length):
        s, j = divmod(p, w)
        head_out, head_lse = [], []
        for h in range(heads):
            g = h // per_group
            if j % r != g:
                head_out.append(torch.zeros(b_, d, dtype=q.dtype))
                head_lse.append(torch.full((b_,), float("-inf"), dtype=q.dtype))
                continue
            keys = [s * w + g + i * r for i in range(m)]
            real = [kk for kk in keys if kk - s * w < w and kk < length]
            n_zero = len(keys) - len(real)
            sc = torch.einsum("bd,bkd->bk", q[:, p, h], k[:, real, h]) / math.sqrt(d)
            sc = torch.cat([sc, torch.zeros(b_, n_zero, dtype=q.dtype)], dim=1)
            pr = torch.softmax(sc, dim=1)
            head_out.append(torch.einsum("bk,bkd->bd", pr[:, :len(real)], v[:, real, h]))
            head_lse.append(torch.logsumexp(sc, dim=1))
        rows_out.append(torch.stack(head_out, dim=1))
        rows_lse.append(torch.stack(head_lse, dim=1))
    return torch.stack(rows_out, dim=1), torch.stack(rows_lse, dim=1)
