"""Tests of the LongNet (Prov-GigaPath) slide encoder: invariances, interface, position embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modaltune.encoders.slide.config import LongNetConfig
from modaltune.encoders.slide.longnet import LongNetSlideEncoder, sincos_position_embedding

torch.set_num_threads(1)


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
