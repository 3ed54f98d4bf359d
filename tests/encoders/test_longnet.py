"""Tests of the LongNet (Prov-GigaPath) slide encoder.

The dilated attention is checked against a slow reference written here with explicit loops over
batch, segment and head, following torchscale's rules (zero padding that is *not* masked, head
``h`` of ``H`` attends to positions ``j % r == h // ceil(H / r)`` within each segment, branches
merged by the softmax of their log-sum-exps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modaltune.encoders.slide import longnet as ln
from modaltune.encoders.slide.longnet import (
    LongNetConfig,
    LongNetSlideEncoder,
    dilated_attention,
    dilated_branch,
    load_gigapath_checkpoint,
    sincos_position_embedding,
)
from modaltune.errors import InputError
from modaltune.registry import SLIDE_ENCODERS

torch.set_num_threads(1)


@pytest.fixture(params=["fused", "portable"])
def kernel_path(request, monkeypatch):
    """Run a test with the fused-LSE kernels and with the portable SDPA + explicit LSE path."""
    monkeypatch.setattr(ln, "USE_FUSED_LSE_KERNELS", request.param == "fused")
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
    real_apply = ln._FusedDilatedAttention.apply
    monkeypatch.setattr(ln._FusedDilatedAttention, "apply", lambda *a: calls.append(1) or real_apply(*a))
    qkv = _qkv(b, length, heads, 8, seed=length).double().requires_grad_(True)
    g_out = torch.randn(b, length, heads, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    monkeypatch.setattr(ln, "USE_FUSED_LSE_KERNELS", True)
    out = dilated_attention(qkv, segs, ratios)
    assert calls, "the fused CPU path was not taken"
    (out * g_out).sum().backward()
    grad_fused, qkv.grad = qkv.grad.clone(), None

    monkeypatch.setattr(ln, "USE_FUSED_LSE_KERNELS", False)
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
    assert ln._fused_plan(40, 4, (10,), (4,)) is None
    padded, branches = ln._fused_plan(4001, 16, ln.GIGAPATH_SEGMENT_LENGTHS, (1, 2, 4, 8, 16))
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


# ---------------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------------
def _tiny(**kw) -> LongNetConfig:
    base = dict(dim=32, depth=2, heads=4, ffn_dim=64)
    base.update(kw)
    return LongNetConfig.small(16, **base)


def _bag(n, in_dim=16, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, in_dim, generator=g)
    coords = torch.randint(0, 200, (b, n, 2), generator=g).float() * 256 + 17.0
    return x, coords


def test_permutation_invariance_when_every_branch_is_full_attention():
    # Dilation picks tokens by *position*, so a LongNet is permutation invariant only when every
    # branch has ratio 1 and a segment covering the whole sequence (no padding either): then each
    # branch is ordinary full attention, which is permutation-equivariant; positions travel with
    # the coords and [CLS] stays first.
    torch.manual_seed(0)
    model = LongNetSlideEncoder(_tiny(segment_lengths=(64, 512), dilated_ratios=(1, 1))).eval()
    x, c = _bag(50)
    perm = torch.randperm(50)
    with torch.no_grad():
        a = model(x, c)
        b = model(x[:, perm], c[:, perm])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dilated_config_invariance_only_for_residue_and_segment_preserving_permutations():
    torch.manual_seed(0)
    model = LongNetSlideEncoder(_tiny()).eval()      # segments (64, ..., 1024), ratios (1, ..., 16)
    x, c = _bag(150)                                  # L = 151: 64-segments padded, others capped
    # sequence positions p = patch index + 1; swap positions 17 <-> 33 and 2 <-> 50: same residue
    # mod 16 (hence mod every ratio) and the same segment of every branch -> output unchanged
    perm = torch.arange(150)
    for p1, p2 in ((17, 33), (2, 50)):
        perm[p1 - 1], perm[p2 - 1] = p2 - 1, p1 - 1
    with torch.no_grad():
        a = model(x, c)
        b = model(x[:, perm], c[:, perm])
        other = torch.randperm(150, generator=torch.Generator().manual_seed(5))
        d = model(x[:, other], c[:, other])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (a - d).abs().max() > 1e-4                 # a general permutation does change it


def test_interface_and_forward_compose():
    torch.manual_seed(0)
    model = LongNetSlideEncoder(_tiny()).eval()
    x, c = _bag(30, b=2)
    with torch.no_grad():
        tokens = model.embed_tokens(x, c)
        assert tokens.shape == (2, 31, 32)
        torch.testing.assert_close(tokens[:, 0], model.cls_token[0].expand(2, -1))
        h = tokens
        assert isinstance(model.layers, torch.nn.ModuleList) and len(model.layers) == 2
        for layer in model.layers:
            h = layer(h)
            assert h.shape == (2, 31, 32)
        manual = model.final_norm(h)[:, 0]
        out = model(x, c)
        torch.testing.assert_close(out, manual)
        torch.testing.assert_close(manual, model.norm(model.encoder.layer_norm(h))[:, 0])
        states = model(x, c, all_layer_embed=True)
    assert len(states) == 3 and all(s.shape == (2, 32) for s in states)
    torch.testing.assert_close(states[-1], model.norm(h)[:, 0])     # GigaPath: no encoder.layer_norm
    # a patient without tiles: only [CLS]
    with torch.no_grad():
        empty = model(torch.zeros(1, 0, 16), torch.zeros(1, 0, 2))
    assert empty.shape == (1, 32) and torch.isfinite(empty).all()


def _gigapath_table_rows(flat_idx: np.ndarray, dim: int, grid: int = 1000) -> np.ndarray:
    """Rows of GigaPath's MAE table (cls row 0 = zeros) computed the way the table is built."""
    def one_d(e, pos):
        omega = np.arange(e // 2, dtype=float) / (e / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.astype(np.float32), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    i = flat_idx - 1
    grid0 = (i % grid).astype(np.float32)        # meshgrid(w, h)[0]: the column
    grid1 = (i // grid).astype(np.float32)       # meshgrid(w, h)[1]: the row
    emb = np.concatenate([one_d(dim // 2, grid0), one_d(dim // 2, grid1)], axis=1)
    emb[flat_idx == 0] = 0.0
    return emb.astype(np.float32)


def test_position_embedding_matches_gigapath_table():
    coords = torch.tensor([[0.0, 0.0], [255.9, 256.0], [256.0 * 999 + 3, 77.0], [1234.0, 256.0 * 999],
                           [51200.0, 102400.0]])
    idx = (np.floor(coords[:, 0].numpy() / 256) * 1000 + np.floor(coords[:, 1].numpy() / 256) + 1).astype(np.int64)
    ours = sincos_position_embedding(coords, 64)
    ref = _gigapath_table_rows(idx, 64)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)
    assert not hasattr(LongNetSlideEncoder(_tiny()), "pos_embed")


def test_coords_outside_grid_warn():
    model = LongNetSlideEncoder(_tiny()).eval()
    x, c = _bag(5)
    c[0, 0, 1] = 256.0 * 1200
    with pytest.warns(Warning, match="position grid"):
        model.embed_tokens(x, c)


def test_gradients_flow_to_inputs():
    torch.manual_seed(0)
    model = LongNetSlideEncoder(_tiny())
    for p in model.parameters():
        p.requires_grad_(False)
    x, c = _bag(70)
    x.requires_grad_(True)
    probe = torch.randn(1, 32, generator=torch.Generator().manual_seed(2))  # (a plain sum of a
    model(x, c).mul(probe).sum().backward()                                # LayerNorm output is 0)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # activation checkpointing gives the same gradients
    g0 = x.grad.clone()
    x.grad = None
    model.cfg.checkpoint_activations = True
    model(x, c).mul(probe).sum().backward()
    torch.testing.assert_close(x.grad, g0, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_cpu():
    torch.manual_seed(0)
    model = LongNetSlideEncoder(_tiny()).eval()
    x, c = _bag(90)
    with torch.no_grad():
        ref = model(x, c)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x, c)
        except RuntimeError as exc:  # pragma: no cover - depends on the CPU build
            pytest.skip(f"bf16 autocast unsupported on this CPU build: {exc}")
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.25


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def gigapath_shapes(in_dim: int, dim: int, depth: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes of GigaPath's slide encoder, written out independently."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "patch_embed.proj.weight": (dim, in_dim), "patch_embed.proj.bias": (dim,),
        "encoder.layer_norm.weight": (dim,), "encoder.layer_norm.bias": (dim,),
        "norm.weight": (dim,), "norm.bias": (dim,),
    }
    for i in range(depth):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (dim, dim)
            shapes[p + f"self_attn.{proj}.bias"] = (dim,)
        for ln_name, width in (("self_attn.inner_attn_ln", dim), ("self_attn_layer_norm", dim),
                               ("ffn.ffn_layernorm", ffn), ("final_layer_norm", dim)):
            shapes[p + ln_name + ".weight"] = (width,)
            shapes[p + ln_name + ".bias"] = (width,)
        shapes[p + "ffn.fc1.weight"] = (ffn, dim)
        shapes[p + "ffn.fc1.bias"] = (ffn,)
        shapes[p + "ffn.fc2.weight"] = (dim, ffn)
        shapes[p + "ffn.fc2.bias"] = (dim,)
    return shapes


def test_gigapath_preset_has_gigapath_keys_and_shapes():
    with torch.device("meta"):
        model = LongNetSlideEncoder(LongNetConfig.gigapath())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == gigapath_shapes(1536, 768, 12, 3072)


def test_synthetic_gigapath_state_dict_loads_strictly(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in gigapath_shapes(16, 32, 2, 64).items()}
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": sd}, path)
    model = LongNetSlideEncoder(_tiny())
    missing, unexpected = load_gigapath_checkpoint(model, path, strict=True)
    assert missing == [] and unexpected == []
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    # a bare state dict works too
    torch.save(sd, tmp_path / "bare.pth")
    assert load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "bare.pth", strict=True) == ([], [])


def test_wrong_width_checkpoint_raises_naming_the_key(tmp_path):
    sd = {k: torch.zeros(s) for k, s in gigapath_shapes(16, 64, 2, 128).items()}
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(InputError, match=r"cls_token.*\(1, 1, 64\).*\(1, 1, 32\).*preset"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), path)


def test_missing_checkpoint_and_partial_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "nope.pth")
    sd = {k: torch.zeros(s) for k, s in gigapath_shapes(16, 32, 2, 64).items()}
    sd.pop("norm.weight")
    sd["decoder.extra"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "partial.pth")
    with pytest.warns(Warning, match="1 missing and 1 unexpected"):
        missing, unexpected = load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "partial.pth")
    assert missing == ["norm.weight"] and unexpected == ["decoder.extra"]
    with pytest.raises(InputError, match="do not match"):
        load_gigapath_checkpoint(LongNetSlideEncoder(_tiny()), tmp_path / "partial.pth", strict=True)


def test_registry_factory_and_presets():
    cfg = LongNetConfig.gigapath()
    assert cfg.segment_lengths == (1024, 5792, 32768, 185363, 1048576)
    assert (cfg.in_dim, cfg.dim, cfg.depth, cfg.heads, cfg.ffn_dim) == (1536, 768, 12, 16, 3072)
    model = SLIDE_ENCODERS.get("longnet")({"preset": "small", "in_dim": 16, "dim": 32, "depth": 1,
                                           "heads": 4, "ffn_dim": 64})
    assert isinstance(model, LongNetSlideEncoder) and len(model.layers) == 1
    from modaltune.errors import ConfigError
    with pytest.raises(ConfigError):
        LongNetConfig.small(16, dim=30, heads=4)
