"""Bulk-transcriptomics encoders used by the Genomics baselines: MLP, SNN and S-MLP.

All map ``omics [B,G]`` to an embedding ``[B,H]`` (``.out_dim == H``).

References:
    SNN: Klambauer et al. Self-normalizing neural networks. NeurIPS 2017 (SELU, AlphaDropout,
    LeCun-normal initialisation); the genomic SNN of Chen et al. (Pathomic Fusion / MCAT) uses
    the same blocks.
    S-MLP: Elmarakeby et al. Biologically informed deep neural network for prostate cancer
    discovery (P-NET). Nature 2021: a sparse gene -> pathway layer whose connections follow
    pathway membership, followed here by dense layers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["MLPEncoder", "SNNEncoder", "SparsePathwayLinear", "SparsePathwayMLP"]


class MLPEncoder(nn.Module):
    """Plain MLP: ``[Linear -> ReLU -> Dropout] x len(hidden)``.

    Args:
        n_genes: input width ``G``.
        hidden: widths of the hidden layers (the last one is the embedding width).
        dropout: dropout after each block.
    """

    def __init__(self, n_genes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.25):
        super().__init__()
        layers: list[nn.Module] = []
        d = n_genes
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, omics: Tensor) -> Tensor:
        """Embed omics ``[B, G]`` -> ``[B, H]``."""
        return self.net(omics)


class SNNEncoder(nn.Module):
    """Self-normalising network (Klambauer et al. 2017): ``[Linear -> SELU -> AlphaDropout]``
    blocks, weights drawn from LeCun normal (std ``1/sqrt(fan_in)``), zero biases.

    Args:
        n_genes: input width ``G``.
        hidden: widths of the hidden layers.
        dropout: AlphaDropout rate.
    """

    def __init__(self, n_genes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.25):
        super().__init__()
        layers: list[nn.Module] = []
        d = n_genes
        for h in hidden:
            lin = nn.Linear(d, h)
            nn.init.normal_(lin.weight, 0.0, 1.0 / np.sqrt(d))
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.SELU(), nn.AlphaDropout(dropout)]
            d = h
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, omics: Tensor) -> Tensor:
        """Embed omics ``[B, G]`` -> ``[B, H]``."""
        return self.net(omics)


class SparsePathwayLinear(nn.Module):
    """Gene -> pathway linear layer with connections only from member genes.

    Only the weights of member (gene, pathway) pairs are stored (one parameter entry per
    membership and output unit), so non-member weights do not exist and are exactly zero under
    any optimiser, weight decay included. ``mask`` (buffer, [P,G]) is the binary membership
    and :meth:`dense_weight` returns the equivalent dense ``[P*units, G]`` matrix.

    Args:
        n_genes: input width ``G``.
        pathways: gene indices of each pathway (``P`` arrays).
        units: output units per pathway (P-NET uses 1).
        bias: add a bias per output unit.
    """

    def __init__(self, n_genes: int, pathways: Sequence[np.ndarray], units: int = 1, bias: bool = True):
        super().__init__()
        if len(pathways) == 0:
            raise ValueError("SparsePathwayLinear needs at least one pathway")
        rows, cols = [], []
        for p, genes in enumerate(pathways):
            genes = np.unique(np.asarray(genes, dtype=np.int64))
            if genes.size and (genes.min() < 0 or genes.max() >= n_genes):
                raise ValueError(f"pathway {p} has gene indices outside [0, {n_genes})")
            rows.append(np.full(genes.size, p, dtype=np.int64))
            cols.append(genes)
        row = torch.from_numpy(np.concatenate(rows))
        col = torch.from_numpy(np.concatenate(cols))
        self.n_genes, self.n_pathways, self.units = n_genes, len(pathways), units
        self.out_dim = self.n_pathways * units
        self.register_buffer("row", row, persistent=False)
        self.register_buffer("col", col, persistent=False)
        mask = torch.zeros(self.n_pathways, n_genes)
        mask[row, col] = 1.0
        self.register_buffer("mask", mask, persistent=False)
        # Glorot-style init on the true fan-in (number of member genes) of each pathway.
        fan_in = torch.bincount(row, minlength=self.n_pathways).clamp(min=1).float()
        std = (1.0 / fan_in[row]).sqrt().unsqueeze(1).expand(-1, units)
        self.weight = nn.Parameter(torch.randn(row.numel(), units) * std)
        self.bias = nn.Parameter(torch.zeros(self.n_pathways, units)) if bias else None

    def forward(self, omics: Tensor) -> Tensor:
        """``omics`` [B,G] -> [B, P*units]."""
        contrib = omics[:, self.col].unsqueeze(-1) * self.weight.to(omics.dtype)  # [B,nnz,u]
        out = omics.new_zeros(omics.shape[0], self.n_pathways, self.units)
        out = out.index_add(1, self.row, contrib)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(omics.shape[0], -1)

    def dense_weight(self) -> Tensor:
        """The equivalent dense weight [P*units, G] (zeros outside membership)."""
        w = self.weight.new_zeros(self.n_pathways, self.units, self.n_genes)
        w[self.row, :, self.col] = self.weight
        return w.reshape(-1, self.n_genes)


class SparsePathwayMLP(nn.Module):
    """S-MLP (P-NET style): sparse gene -> pathway layer with tanh (P-NET's activation) and
    dropout, then dense ``Linear -> ReLU -> Dropout`` layers.

    P-NET continues with a hierarchy of sparse pathway -> parent-pathway layers; the
    hierarchy is not part of our gene-set input, so dense layers follow the pathway layer
    (as the brief for this baseline states).

    Args:
        n_genes: input width ``G``.
        pathways: gene indices of each pathway.
        units_per_pathway: output units of each pathway node.
        hidden: widths of the dense layers after the pathway layer.
        dropout: dropout rate.
    """

    def __init__(
        self,
        n_genes: int,
        pathways: Sequence[np.ndarray],
        units_per_pathway: int = 1,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.25,
    ):
        super().__init__()
        self.sparse = SparsePathwayLinear(n_genes, pathways, units_per_pathway)
        layers: list[nn.Module] = [nn.Tanh(), nn.Dropout(dropout)]
        d = self.sparse.out_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.dense = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, omics: Tensor) -> Tensor:
        """Embed omics ``[B, G]`` -> ``[B, H]``."""
        return self.dense(self.sparse(omics))
