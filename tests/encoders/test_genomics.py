"""Tests of the genomics encoders (MLP, SNN, S-MLP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modaltune.encoders.genomics import MLPEncoder, SNNEncoder, SparsePathwayLinear, SparsePathwayMLP

PATHWAYS = [np.array([0, 1, 2, 3]), np.array([3, 4, 5]), np.array([10, 11, 12, 13, 14]), np.array([19])]
N_GENES = 20


def test_mlp_and_snn_shapes():
    x = torch.randn(3, N_GENES)
    assert MLPEncoder(N_GENES, (16, 8)).eval()(x).shape == (3, 8)
    snn = SNNEncoder(N_GENES, (16, 8))
    assert snn.eval()(x).shape == (3, 8)
    assert any(isinstance(m, torch.nn.AlphaDropout) for m in snn.modules())
    assert any(isinstance(m, torch.nn.SELU) for m in snn.modules())


def test_snn_is_self_normalising_at_init():
    torch.manual_seed(0)
    snn = SNNEncoder(256, (256, 256, 256, 256)).eval()
    out = snn(torch.randn(2000, 256))
    assert abs(out.mean().item()) < 0.2 and abs(out.std().item() - 1.0) < 0.2


def test_sparse_layer_equals_masked_dense():
    torch.manual_seed(0)
    layer = SparsePathwayLinear(N_GENES, PATHWAYS, units=3)
    x = torch.randn(5, N_GENES)
    w = layer.dense_weight()
    assert w.shape == (len(PATHWAYS) * 3, N_GENES)
    mask = layer.mask.repeat_interleave(3, dim=0)
    assert (w[mask == 0] == 0).all() and (w[mask == 1] != 0).all()
    ref = x @ w.T + layer.bias.reshape(-1)
    assert torch.allclose(layer(x), ref, atol=1e-5)
    # a non-member gene does not influence its pathway
    x2 = x.clone()
    x2[:, 6] += 100.0  # gene 6 is in no pathway
    assert torch.allclose(layer(x), layer(x2))


def test_smlp_masked_weights_stay_zero_under_adamw_weight_decay():
    torch.manual_seed(0)
    model = SparsePathwayMLP(N_GENES, PATHWAYS, units_per_pathway=2, hidden=(8,), dropout=0.0)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-2, weight_decay=0.5)
    before = model.sparse.dense_weight().detach().clone()
    mask = model.sparse.mask.repeat_interleave(2, dim=0).bool()
    for _ in range(10):
        x = torch.randn(8, N_GENES)
        loss = (head(model(x)).squeeze(-1) - x.sum(-1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.sparse.dense_weight().detach()
    assert (after[~mask] == 0).all()
    assert not torch.allclose(after[mask], before[mask])  # member weights did train
    assert model(torch.randn(2, N_GENES)).shape == (2, 8)


def test_sparse_layer_rejects_bad_indices():
    with pytest.raises(ValueError):
        SparsePathwayLinear(5, [np.array([0, 7])])
