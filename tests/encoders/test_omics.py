"""Tests of the pathway tokenizer and the ModalTune transcriptomics encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modaltune.encoders.omics import MixerBlock, PathwayTokenizer, TranscriptomicsEncoder, chunk_pathways
from modaltune.errors import ConfigError


def _pathways(n_genes=30, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [3, 7, 1, 12, 5]
    return [np.sort(rng.choice(n_genes, s, replace=False)) for s in sizes]


def _slow_reference(tok: PathwayTokenizer, pathways, omics: torch.Tensor) -> torch.Tensor:
    """Per-pathway nn.Linear modules with the tokenizer's weights, looped in Python."""
    outs = []
    start = 0
    for p, genes in enumerate(pathways):
        g = len(genes)
        l1 = nn.Linear(g, tok.dim)
        l2 = nn.Linear(tok.dim, tok.dim)
        with torch.no_grad():
            l1.weight.copy_(tok.weight1[start:start + g].t())
            l1.bias.copy_(tok.bias1[p])
            l2.weight.copy_(tok.weight2[p].t())
            l2.bias.copy_(tok.bias2[p])
        start += g
        net = nn.Sequential(l1, nn.ELU(), l2, nn.ELU()).eval()
        outs.append(net(omics[:, torch.as_tensor(genes)]))
    return torch.stack(outs, dim=1)


def test_tokenizer_matches_per_pathway_loop():
    torch.manual_seed(0)
    pw = _pathways()
    tok = PathwayTokenizer(pw, n_genes=30, dim=16, dropout=0.25).eval()
    x = torch.randn(4, 30)
    fast = tok(x)
    slow = _slow_reference(tok, pw, x)
    assert fast.shape == (4, len(pw), 16)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    # an unbatched [G] vector works too
    torch.testing.assert_close(tok(x[0]), slow[:1], rtol=1e-5, atol=1e-6)


def test_tokenizer_only_uses_pathway_genes_and_gradients_flow():
    torch.manual_seed(0)
    pw = [np.array([0, 1]), np.array([3])]
    tok = PathwayTokenizer(pw, n_genes=5, dim=8).eval()
    x = torch.randn(2, 5)
    y = x.clone()
    y[:, 2] += 10.0   # gene 2 is in no pathway
    y[:, 4] -= 3.0    # neither is gene 4
    torch.testing.assert_close(tok(x), tok(y))
    x.requires_grad_(True)
    tok(x).sum().backward()
    assert x.grad[:, [0, 1, 3]].abs().sum() > 0
    assert x.grad[:, [2, 4]].abs().sum() == 0
    assert tok.weight1.grad is not None and tok.weight2.grad is not None


def test_tokenizer_rejects_bad_pathways():
    with pytest.raises(ConfigError):
        PathwayTokenizer([np.array([0, 9])], n_genes=5)
    with pytest.raises(ConfigError):
        PathwayTokenizer([np.array([], dtype=int)], n_genes=5)
    with pytest.raises(ConfigError):
        PathwayTokenizer([], n_genes=5)


def test_mixer_block_shape_and_token_mixing():
    torch.manual_seed(0)
    blk = MixerBlock(n_tokens=6, dim=8, dropout=0.0).eval()
    x = torch.randn(2, 6, 8)
    out = blk(x)
    assert out.shape == x.shape
    # token mixing: changing one token changes the others
    x2 = x.clone()
    x2[:, 0] += torch.randn(8)
    assert not torch.allclose(blk(x2)[:, 3], out[:, 3])


def test_transcriptomics_encoder_shapes():
    torch.manual_seed(0)
    pw = _pathways()
    enc = TranscriptomicsEncoder(pw, n_genes=30, dim=16, depth=3, n_tokens=4, out_dim=24).eval()
    x = torch.randn(3, 30)
    out = enc(x)
    assert out.shape == (3, 4, 24)
    assert torch.isfinite(out).all()
    pooled = enc.forward_pooled(x)
    assert pooled.shape == (3, 24)
    torch.testing.assert_close(pooled, out.mean(1))
    enc.train()
    enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_chunk_pathways_cover_all_genes():
    chunks = chunk_pathways(250, 100)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert np.array_equal(np.concatenate(chunks), np.arange(250))
