"""MICE's building blocks: the transformer against an einsum reference, expert widths, the MLP block
(spec mice.md (b) Notation, (j) 3; the size table at K = 30 is checked in test_mice_model.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from modaltune.encoders.genomics import MLPEncoder
from modaltune.methods.mice.layers import MLPB, TF, Expert, mlpb_stack


def _tf_reference(tf: TF, x: torch.Tensor) -> torch.Tensor:
    """Pre-norm transformer written out with einsums, head by head, from the module's weights."""
    for attn, ff in tf.layers:
        h, dh = attn.heads, attn.dim_head
        y = F.layer_norm(x, (x.shape[-1],), attn.norm.weight, attn.norm.bias, attn.norm.eps)
        qkv = torch.einsum("btd,ed->bte", y, attn.to_qkv.weight)
        q, k, v = qkv[..., :h * dh], qkv[..., h * dh:2 * h * dh], qkv[..., 2 * h * dh:]
        heads = []
        for i in range(h):
            qi, ki, vi = (z[..., i * dh:(i + 1) * dh] for z in (q, k, v))
            scores = torch.einsum("bqe,bke->bqk", qi, ki) / dh ** 0.5
            heads.append(torch.einsum("bqk,bke->bqe", scores.softmax(-1), vi))
        x = x + torch.einsum("bte,de->btd", torch.cat(heads, -1), attn.to_out.weight) + attn.to_out.bias
        norm, lin1, _, lin2 = ff.net
        y = F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)
        y = F.gelu(torch.einsum("btd,ed->bte", y, lin1.weight) + lin1.bias)
        x = x + torch.einsum("bte,de->btd", y, lin2.weight) + lin2.bias
    return x


def test_tf_equals_an_einsum_reference_with_the_same_weights():
    torch.manual_seed(0)
    tf = TF(dim=16, depth=2, heads=3, dim_head=5, mlp=7)
    for p in tf.parameters():        # non-trivial LayerNorm affine parameters too
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(tf(x), _tf_reference(tf, x), atol=1e-5, rtol=1e-5)


def test_tf_has_no_positions_so_it_is_permutation_equivariant():
    torch.manual_seed(0)
    tf = TF(dim=16, depth=2, heads=2, dim_head=4, mlp=8)
    x = torch.randn(1, 6, 16)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(tf(x[:, perm]), tf(x)[:, perm], atol=1e-6, rtol=1e-6)


def test_expert_reads_the_row_of_its_own_class_token():
    torch.manual_seed(0)
    expert = Expert(dim=16, rank=4)
    x = torch.randn(3, 4, 16)
    full = expert.transformer(torch.cat([expert.cls_token.expand(3, -1, -1), x], 1))
    torch.testing.assert_close(expert(x), full[:, 0])
    assert expert.cls_token.shape == (1, 1, 16)


@pytest.mark.parametrize("rank", [8, 64, 120])
def test_an_expert_of_rank_r_has_attention_width_4r_and_ffn_width_r(rank):
    expert = Expert(dim=256, rank=rank)
    assert len(expert.transformer.layers) == 2
    for attn, ff in expert.transformer.layers:
        assert attn.heads == 4 and attn.dim_head == rank
        assert attn.to_qkv.weight.shape == (3 * 4 * rank, 256) and attn.to_qkv.bias is None
        assert attn.to_out.weight.shape == (256, 4 * rank)
        assert ff.net[1].weight.shape == (rank, 256) and ff.net[3].weight.shape == (256, rank)


def test_mlp_block_order_and_its_equivalence_to_the_relu_first_encoder():
    block = MLPB(6, 4, dropout=0.2)
    assert [type(m).__name__ for m in block] == ["Linear", "Dropout", "ReLU"]
    stack = mlpb_stack(10, [8, 4], dropout=0.2).eval()
    enc = MLPEncoder(10, (8, 4), dropout=0.2).eval()
    enc.net[0].load_state_dict(stack[0][0].state_dict())
    enc.net[3].load_state_dict(stack[1][0].state_dict())
    x = torch.randn(5, 10)
    torch.testing.assert_close(stack(x), enc(x))
    assert stack.out_dim == 4
