"""Transcriptomics encoders: pathway tokenizer (per-pathway SNN) and the ModalTune gene mixer.

The pathway tokenizer follows SurvPath / ModalTune: every pathway has its own self-normalising
network (SNN) over the genes it contains, ``Linear(n_genes_in_pathway, dim) -> ELU ->
AlphaDropout`` followed by a second ``Linear(dim, dim) -> ELU -> AlphaDropout`` (the reference
code's second SNN block keeps the ELU and alpha dropout; the brief's "then Linear 256->256" is
read as that block).

Efficiency: the 331 first-layer linears are stored as one flat weight ``[S, dim]`` over the
``S = sum_p |pathway p|`` gene-pathway memberships. The forward gathers the genes of every
membership (``x[:, gene_of_membership]``), scales each weight row by its gene value and sums the
rows of each pathway with one ``index_add`` -- exactly the per-pathway matmuls without padding
(pathway sizes are skewed, so a padded ``[P, max_g, dim]`` weight would waste most of its memory).
The second layer is a grouped matmul ``einsum('bpd,pde->bpe')``. No Python loop over pathways
runs in ``forward``.

``TranscriptomicsEncoder`` = tokenizer -> ``depth`` MLP-mixer blocks (token mixing over the
pathway axis ``P -> P*token_ratio -> P`` and channel mixing ``dim -> dim*channel_ratio -> dim``,
GELU, dropout, pre-norm residuals) -> LayerNorm -> ``Linear(dim, out_dim)`` -> ``Linear(P,
n_tokens)`` over the token axis, giving ``[B, n_tokens, out_dim]``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

__all__ = ["PathwayTokenizer", "MixerBlock", "TranscriptomicsEncoder", "chunk_pathways"]


def _as_index_list(pathways: Sequence, n_genes: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i, p in enumerate(pathways):
        arr = np.asarray(p, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            raise ConfigError(f"pathway {i} has no genes; drop empty pathways before building the encoder")
        if arr.min() < 0 or arr.max() >= n_genes:
            raise ConfigError(f"pathway {i} indexes genes outside [0, {n_genes}); gene indices must "
                              "refer to the cohort's gene list")
        out.append(arr)
    if not out:
        raise ConfigError("the transcriptomics encoder needs at least one pathway")
    return out


def chunk_pathways(n_genes: int, chunk: int = 100) -> list[np.ndarray]:
    """Contiguous gene chunks used as pseudo-pathways when a cohort has no gene sets."""
    if n_genes <= 0:
        raise ConfigError("cannot build pseudo-pathways without genes")
    return [np.arange(s, min(s + chunk, n_genes)) for s in range(0, n_genes, chunk)]


class PathwayTokenizer(nn.Module):
    """Per-pathway SNN: omics ``[B, G]`` -> pathway tokens ``[B, P, dim]``.

    Args:
        pathways: one array of gene indices (into the ``G`` omics columns) per pathway.
        n_genes: ``G``.
        dim: token width (256 in SurvPath / ModalTune).
        dropout: alpha-dropout rate (0.25).
    """

    def __init__(self, pathways: Sequence, n_genes: int, dim: int = 256, dropout: float = 0.25):
        super().__init__()
        paths = _as_index_list(pathways, n_genes)
        self.n_genes = int(n_genes)
        self.n_pathways = len(paths)
        self.dim = int(dim)
        sizes = np.array([len(p) for p in paths], dtype=np.int64)
        self.register_buffer("gene_index", torch.from_numpy(np.concatenate(paths)), persistent=False)
        self.register_buffer("segment", torch.from_numpy(np.repeat(np.arange(len(paths)), sizes)),
                             persistent=False)
        self.register_buffer("sizes", torch.from_numpy(sizes), persistent=False)
        total = int(sizes.sum())
        self.weight1 = nn.Parameter(torch.empty(total, dim))   # row s: weights of gene s in its pathway
        self.bias1 = nn.Parameter(torch.empty(self.n_pathways, dim))
        self.weight2 = nn.Parameter(torch.empty(self.n_pathways, dim, dim))  # [P, in, out]
        self.bias2 = nn.Parameter(torch.empty(self.n_pathways, dim))
        self.act = nn.ELU()
        self.drop1 = nn.AlphaDropout(dropout)
        self.drop2 = nn.AlphaDropout(dropout)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float | None = None) -> None:
        """``nn.Linear``'s default initialisation per pathway (fan-in = pathway size), or with
        ``std`` a truncated normal of that std and zero biases (ModalTune's reference init)."""
        if std is not None:
            for w in (self.weight1, self.weight2):
                nn.init.trunc_normal_(w, std=std)
            self.bias1.zero_()
            self.bias2.zero_()
            return
        bound1 = (1.0 / self.sizes.double().sqrt()).float()            # [P]
        row_bound = bound1[self.segment].unsqueeze(1)                   # [S, 1]
        self.weight1.uniform_(-1.0, 1.0).mul_(row_bound)
        self.bias1.uniform_(-1.0, 1.0).mul_(bound1.unsqueeze(1))
        b2 = 1.0 / math.sqrt(self.dim)
        self.weight2.uniform_(-b2, b2)
        self.bias2.uniform_(-b2, b2)

    def first_layer(self, omics: torch.Tensor) -> torch.Tensor:
        """Pre-activation of the first per-pathway linear: ``[B, G] -> [B, P, dim]``."""
        x = omics[:, self.gene_index]                                   # [B, S]
        contrib = x.unsqueeze(-1) * self.weight1                        # [B, S, dim]
        out = self.bias1.unsqueeze(0).expand(x.shape[0], -1, -1).to(contrib.dtype).clone()
        return out.index_add(1, self.segment, contrib)

    def forward(self, omics: torch.Tensor) -> torch.Tensor:
        """See the class docstring."""
        if omics.dim() == 1:
            omics = omics.unsqueeze(0)
        if omics.shape[-1] != self.n_genes:
            raise ValueError(f"omics has {omics.shape[-1]} genes, the tokenizer expects {self.n_genes}")
        h = self.drop1(self.act(self.first_layer(omics)))
        h = torch.einsum("bpd,pde->bpe", h, self.weight2.to(h.dtype)) + self.bias2.to(h.dtype)
        return self.drop2(self.act(h))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class MixerBlock(nn.Module):
    """MLP-mixer block over ``[B, n_tokens, dim]`` with pre-norm residuals.

    Token mixing: ``x + FF_tokens(LN(x)^T)^T`` with ``n_tokens -> n_tokens*token_ratio -> n_tokens``;
    channel mixing: ``x + FF_channels(LN(x))`` with ``dim -> dim*channel_ratio -> dim``.
    """

    def __init__(self, n_tokens: int, dim: int, token_ratio: float = 0.5, channel_ratio: float = 0.5,
                 dropout: float = 0.25):
        super().__init__()
        self.norm_tokens = nn.LayerNorm(dim)
        self.token_mlp = _FeedForward(n_tokens, max(1, int(n_tokens * token_ratio)), dropout)
        self.norm_channels = nn.LayerNorm(dim)
        self.channel_mlp = _FeedForward(dim, max(1, int(dim * channel_ratio)), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See the class docstring."""
        x = x + self.token_mlp(self.norm_tokens(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm_channels(x))


class TranscriptomicsEncoder(nn.Module):
    """ModalTune transcriptomics encoder: omics ``[B, G]`` -> tokens ``[B, n_tokens, out_dim]``."""

    def __init__(self, pathways: Sequence, n_genes: int, dim: int = 256, depth: int = 3,
                 token_ratio: float = 0.5, channel_ratio: float = 0.5, n_tokens: int = 64,
                 out_dim: int = 768, dropout: float = 0.25):
        super().__init__()
        self.tokenizer = PathwayTokenizer(pathways, n_genes, dim=dim, dropout=dropout)
        n_p = self.tokenizer.n_pathways
        self.n_pathways = n_p
        self.n_tokens = int(n_tokens)
        self.out_dim = int(out_dim)
        self.mixer = nn.Sequential(*[MixerBlock(n_p, dim, token_ratio, channel_ratio, dropout)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)
        self.compress = nn.Linear(n_p, n_tokens)   # over the token (pathway) axis

    def forward(self, omics: torch.Tensor) -> torch.Tensor:
        """See the class docstring."""
        x = self.tokenizer(omics)                  # [B, P, dim]
        x = self.mixer(x)
        x = self.proj(self.norm(x))                # [B, P, out_dim]
        return self.compress(x.transpose(1, 2)).transpose(1, 2)   # [B, n_tokens, out_dim]

    def forward_pooled(self, omics: torch.Tensor) -> torch.Tensor:
        """Mean over the compressed tokens: ``[B, out_dim]``."""
        return self.forward(omics).mean(dim=1)
