"""Tests of MICE's MambaMIL aggregator (modaltune.encoders.mambamil)."""

from __future__ import annotations

import pytest
import torch

from modaltune.encoders.mambamil import MambaMIL
from modaltune.errors import ConfigError, InputError

IN, DIM = 12, 16


def _model(**kw):
    torch.manual_seed(0)
    return MambaMIL(in_dim=IN, dim=DIM, attn_dim=4, mamba={"d_state": 4, "chunk_size": 8}, **kw).eval()


def _features_in_test(m: MambaMIL, bag: torch.Tensor) -> torch.Tensor:
    """F = ReLU(Linear(bag)) written out (dropout is the identity in eval mode)."""
    lin = m.feature[0]
    return torch.relu(bag @ lin.weight.T + lin.bias)


def test_attention_sums_to_one_and_pooling_is_a_convex_combination_of_f():
    m = _model()
    bag = torch.randn(23, IN)
    with torch.no_grad():
        a, p = m.forward_attention(bag), m.forward_features(bag)
    assert a.shape == (1, 23) and p.shape == (1, DIM) and m.out_dim == DIM
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(1))
    torch.testing.assert_close(p, a @ _features_in_test(m, bag), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(m.forward_features(bag[None]), p)  # [N, D] and [1, N, D] agree


def test_bag_of_identical_patches_returns_that_row():
    m = _model()
    patch = torch.randn(IN)
    with torch.no_grad():
        p = m.forward_features(patch.repeat(17, 1))
        a = m.forward_attention(patch.repeat(17, 1))
    torch.testing.assert_close(p[0], _features_in_test(m, patch[None])[0], atol=1e-6, rtol=1e-6)
    assert a.std() > 0  # the weights still vary along the sequence: only F is constant


def test_patch_order_matters_through_the_mamba_block():
    m = _model()
    with torch.no_grad():
        m.attention[2].weight.mul_(50.0)  # a peaked attention makes the effect large
    bag = torch.randn(20, IN)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (m.forward_features(bag) - m.forward_features(bag[perm])).abs().max() > 1e-2
        m.mamba_block.out_proj.weight.zero_()  # G = F: plain attention pooling, order-free
        torch.testing.assert_close(m.forward_features(bag[perm]), m.forward_features(bag), atol=1e-6, rtol=1e-6)


def test_pre_and_post_pooling_differ():
    pre, post = _model(pool_from="pre"), _model(pool_from="post")
    post.load_state_dict(pre.state_dict())
    bag = torch.randn(15, IN)
    with torch.no_grad():
        p_pre, p_post = pre.forward_features(bag), post.forward_features(bag)
        torch.testing.assert_close(pre.forward_attention(bag), post.forward_attention(bag))
        f = _features_in_test(pre, bag)
        g = pre.mamba_block(f[None])[0] + f
        torch.testing.assert_close(p_post, pre.forward_attention(bag) @ g, atol=1e-6, rtol=1e-6)
    assert (p_pre - p_post).abs().max() > 1e-4


def test_empty_bag_points_to_the_missing_modality_path():
    m = _model()
    with pytest.raises(ValueError, match="missing-modality"):
        m.forward_features(torch.zeros(0, IN))
    with pytest.raises(ValueError, match="missing-modality"):
        m.forward_attention(torch.zeros(2, 3, IN), mask=torch.tensor([[True] * 3, [False] * 3]))


def test_right_padded_batch_equals_single_bags():
    m = _model()
    bags = [torch.randn(9, IN), torch.randn(5, IN)]
    batch = torch.zeros(2, 9, IN)
    batch[0], batch[1, :5] = bags[0], bags[1]
    mask = torch.arange(9)[None] < torch.tensor([[9], [5]])
    with torch.no_grad():
        p = m.forward_features(batch, mask)
        a = m.forward_attention(batch, mask)
        for i, bag in enumerate(bags):
            torch.testing.assert_close(p[i:i + 1], m.forward_features(bag), atol=1e-6, rtol=1e-6)
    assert (a[1, 5:] == 0).all()
    with pytest.raises(InputError, match="right-pad"):
        m.forward_features(batch, mask.flip(1))


def test_settings_and_inputs_are_checked():
    with pytest.raises(ConfigError, match="pool_from"):
        MambaMIL(IN, DIM, pool_from="mean")
    with pytest.raises(ConfigError, match="d_stat"):
        MambaMIL(IN, DIM, mamba={"d_stat": 8})
    with pytest.raises(InputError, match="width"):
        _model().forward_features(torch.randn(4, IN + 1))


def test_official_submodule_names_and_mice_defaults():
    m = MambaMIL()
    keys = set(m.state_dict())
    assert {"feature.0.weight", "feature.0.bias", "attention.0.weight", "attention.2.weight",
            "mamba_block.in_proj.weight", "mamba_block.A_log", "mamba_block.D"} <= keys
    assert m.feature[0].weight.shape == (256, 1024) and m.attention[0].weight.shape == (64, 256)
    assert m.mamba_block.d_inner == 512 and m.mamba_block.dt_rank == 16 and m.mamba_block.d_state == 16
    assert m.feature[1].p == 0.2 and m.pool_from == "pre"


def test_gradients_reach_every_parameter():
    m = _model().train()
    m.forward_features(torch.randn(30, IN)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
