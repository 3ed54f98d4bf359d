"""MambaMIL as coded in MICE: a Mamba block that only shapes the attention of an ABMIL-style pool.

MICE (Zhou et al., "A multimodal foundation model to enhance generalizability and data efficiency
for pan-cancer prognosis prediction") calls its slide aggregator MambaMIL, but the official code
(``moothes/MICE``, ``models/MICE/network.py``) is not the published MambaMIL/SR-Mamba: it is

    F = ReLU(Dropout(Linear(in_dim, dim)(X)))        # patch features, the MICE "MLP block"
    G = Mamba(F) + F                                 # one mamba_ssm.Mamba v1 block, residual
    a = softmax_N(Linear(attn_dim, 1)(tanh(Linear(dim, attn_dim)(G))))
    p = a^T F                                        # pooled from the *pre*-Mamba features

so the Mamba block only decides where to look (``pool_from="pre"``, the default; ``"post"`` pools
``G`` instead, an option of ours). Mamba is causal and order-dependent: patches must stay in file
order, and any subsampling must keep that order. The block is our pure-torch
:class:`modaltune.encoders.ssm.Mamba` (mamba_ssm kernels on CUDA when installed). Submodule names
follow the official class (``feature``, ``mamba_block``, ``attention``) so its weights load.

Contract (as the other MIL aggregators): ``forward_features(bag) -> [B, dim]``,
``forward_attention(bag) -> [B, N]`` (sums to 1), ``out_dim``. A bag is ``[N, D]`` or
``[B, N, D]``; a batch of bags may be right-padded with ``mask [B, N]`` (True = patch): because
the scan is causal, padding after the last patch cannot change the real patches' outputs.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from modaltune.encoders.ssm import Mamba
from modaltune.errors import ConfigError, InputError

__all__ = ["MambaMIL"]

_MAMBA_KEYS = tuple(k for k in inspect.signature(Mamba.__init__).parameters if k not in ("self", "d_model"))


class MambaMIL(nn.Module):
    """MICE's MambaMIL slide aggregator (see the module docstring).

    Args:
        in_dim: patch feature width (UNI: 1024).
        dim: embedding width (MICE: 256); also the Mamba ``d_model``.
        attn_dim: hidden width of the attention MLP (MICE: ``dim // 4`` = 64).
        dropout: dropout of the patch MLP block (MICE: 0.2).
        pool_from: ``"pre"`` pools the pre-Mamba features F (MICE's code), ``"post"`` pools G.
        mamba: keyword arguments of :class:`~modaltune.encoders.ssm.Mamba` (defaults = MICE:
            d_state 16, d_conv 4, expand 2).
    """

    def __init__(self, in_dim: int = 1024, dim: int = 256, attn_dim: int = 64, dropout: float = 0.2,
                 pool_from: str = "pre", mamba: dict | None = None):
        super().__init__()
        if pool_from not in ("pre", "post"):
            raise ConfigError(f"MambaMIL pool_from must be 'pre' (MICE's code) or 'post', got {pool_from!r}")
        unknown = sorted(set(mamba or {}) - set(_MAMBA_KEYS))
        if unknown:
            raise ConfigError(f"MambaMIL got unknown mamba settings {unknown}; fix: use only {list(_MAMBA_KEYS)}")
        self.in_dim, self.out_dim, self.pool_from = in_dim, dim, pool_from
        self.feature = nn.Sequential(nn.Linear(in_dim, dim), nn.Dropout(dropout), nn.ReLU())
        self.mamba_block = Mamba(dim, **(mamba or {}))
        self.attention = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))

    def _check(self, bag: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if bag.dim() == 2:
            bag = bag.unsqueeze(0)
            mask = None if mask is None else mask.reshape(1, -1)
        if bag.dim() != 3 or bag.shape[-1] != self.in_dim:
            raise InputError(f"MambaMIL expects a bag [N, {self.in_dim}] or [B, N, {self.in_dim}], got "
                             f"{tuple(bag.shape)}", fix=f"pass patch features of width {self.in_dim}")
        if bag.shape[1] == 0 or (mask is not None and not bool(mask.any(1).all())):
            raise InputError("MambaMIL got an empty bag (no patch features)",
                             fix="a patient without WSI features must take the caller's missing-modality path "
                                 "(e.g. MICE's cancer-token synthesis) instead of calling the aggregator")
        if mask is not None:
            mask = mask.to(torch.bool)
            if mask.shape != bag.shape[:2] or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise InputError(f"MambaMIL mask {tuple(mask.shape)} must be [B, N] with the patches first and "
                                 "the padding after them (Mamba is causal)", fix="right-pad the bags")
        return bag, mask

    def _attend(self, bag: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        bag, mask = self._check(bag, mask)
        feats = self.feature(bag)
        g = self.mamba_block(feats) + feats
        scores = self.attention(g).squeeze(-1).float()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1), feats, g

    def forward_attention(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attention weights over the patches.

        Args:
            bag: ``[N, in_dim]`` or ``[B, N, in_dim]`` patch features in slide order.
            mask: optional ``[B, N]`` bool, True = patch (right padding only).

        Returns:
            ``[B, N]`` weights, non-negative, summing to 1 over the patches of each bag.
        """
        return self._attend(bag, mask)[0]

    def forward_features(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Slide embedding ``p = a^T F`` (``pool_from="pre"``) or ``a^T G`` (``"post"``).

        Args:
            bag: ``[N, in_dim]`` or ``[B, N, in_dim]`` patch features in slide order.
            mask: optional ``[B, N]`` bool, True = patch (right padding only).

        Returns:
            ``[B, dim]`` (``[1, dim]`` for a single bag).
        """
        a, feats, g = self._attend(bag, mask)
        pooled = feats if self.pool_from == "pre" else g
        return torch.einsum("bn,bnd->bd", a.to(pooled.dtype), pooled)

    def forward(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Same as :meth:`forward_features` (MICE puts no head on the aggregator)."""
        return self.forward_features(bag, mask)
