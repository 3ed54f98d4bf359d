"""Attention-based MIL (ABMIL, Ilse et al. 2018): attention pooling over a bag of patches.

Ilse et al. give two scoring functions for the attention pooling, and both are used as
baselines in the literature: the *gated* one (Eq. 9, ``w^T (tanh(V h) * sigm(U h))``; CLAM and
ModalTune's ABMIL baseline) and the plain one (Eq. 8, ``w^T tanh(V h)``; the ABMIL baseline of
the disentangled teacher/student paper). :class:`ABMIL` takes either (``gated``); the two
scorers share the pooling code in :class:`_AttentionPool`.

Contract shared with the other MIL aggregators: see :mod:`modaltune.encoders.mil`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import neg_big

__all__ = ["GatedAttention", "NonGatedAttention", "ABMIL"]


class _AttentionPool(nn.Module):
    """Softmax attention pooling over instances; subclasses define :meth:`scores`."""

    def scores(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Unnormalised scores [B,N] for instance embeddings ``h`` [B,N,dim]."""
        raise NotImplementedError

    def weights(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """Softmax attention weights [B,N] (masked patches get weight 0)."""
        s = self.scores(h).float()
        if mask is not None:
            s = s.masked_fill(~mask, neg_big(s))
        return torch.softmax(s, dim=-1)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attention-pooled embedding [B,dim]."""
        a = self.weights(h, mask).to(h.dtype)
        if mask is not None:
            a = a * mask.to(a.dtype)
        return torch.einsum("bn,bnd->bd", a, h)


class GatedAttention(_AttentionPool):
    """Gated attention scores (Ilse et al. 2018, Eq. 9): ``w^T (tanh(V h) * sigm(U h))``.

    Args:
        dim: instance embedding width.
        hidden: width of the attention MLP.
        dropout: dropout inside the attention branches.
    """

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.V = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.U = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(hidden, 1)

    def scores(self, h: Tensor) -> Tensor:
        """Unnormalised scores [B,N] for instance embeddings ``h`` [B,N,dim]."""
        return self.w(self.V(h) * self.U(h)).squeeze(-1)


class NonGatedAttention(_AttentionPool):
    """Plain attention scores (Ilse et al. 2018, Eq. 8): ``w^T tanh(V h)``.

    ``Linear(dim, hidden) -> Tanh -> Dropout -> Linear(hidden, 1)``; the dropout sits where the
    gated version has it, so ``dropout=0`` is exactly the paper's scorer.

    Args:
        dim: instance embedding width.
        hidden: width of the attention MLP.
        dropout: dropout after the tanh.
    """

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.V = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.w = nn.Linear(hidden, 1)

    def scores(self, h: Tensor) -> Tensor:
        """Unnormalised scores [B,N] for instance embeddings ``h`` [B,N,dim]."""
        return self.w(self.V(h)).squeeze(-1)


class ABMIL(nn.Module):
    """Attention-based MIL (Ilse et al. 2018), gated by default.

    Patch features go through ``Linear(D, dim) + ReLU + Dropout`` (the CLAM patch embedding,
    512 wide by default), are scored by (gated) attention, softmax-normalised over the bag and
    averaged. The paper leaves the widths open; we use CLAM's "small" sizes (512 / 256) and a
    single attention branch. An empty bag pools to zeros.

    Args:
        in_dim: patch feature width ``D``.
        dim: embedding width ``H`` (output of ``forward_features``).
        attn_dim: hidden width of the attention.
        dropout: dropout after the patch embedding and inside the attention.
        n_out: width of the optional linear head (0 = identity).
        gated: gated attention (Eq. 9, :class:`GatedAttention`) or the plain one (Eq. 8,
            :class:`NonGatedAttention`).
    """

    def __init__(self, in_dim: int, dim: int = 512, attn_dim: int = 256, dropout: float = 0.25, n_out: int = 0,
                 gated: bool = True):
        super().__init__()
        self.out_dim = dim
        self.gated = bool(gated)
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        scorer = GatedAttention if self.gated else NonGatedAttention
        self.attention = scorer(dim, attn_dim, dropout)
        self.head = nn.Linear(dim, n_out) if n_out > 0 else nn.Identity()

    def forward_attention(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attention weights [B,N] over the patches of each bag (sum to 1)."""
        return self.attention.weights(self.embed(bag), mask)

    def forward_features(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Slide embedding [B,dim]."""
        return self.attention(self.embed(bag), mask)

    def forward_head(self, h: Tensor) -> Tensor:
        """The optional linear head on slide embeddings ``h`` [B,dim]."""
        return self.head(h)

    def forward(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """``forward_head(forward_features(bag, mask))``."""
        return self.forward_head(self.forward_features(bag, mask))
