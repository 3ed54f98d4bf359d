"""MICE's building blocks: the MLP block, the pre-norm transformer and the class-token expert.

Widths follow the official code (``moothes/MICE``; the paper only draws the block diagram), as the
implementation spec ``mice.md`` (b) records them:

- ``MLPB(a, b)`` = ``Linear(a, b) -> Dropout(0.2) -> ReLU`` (the code's "MLP block"). It equals the
  ``Linear -> ReLU -> Dropout`` order of :class:`~modaltune.encoders.genomics.MLPEncoder`, because
  ``ReLU(c x) = c ReLU(x)`` for the dropout scale ``c >= 0``; we keep the code's order so weights map
  one to one.
- ``TF(depth, heads, dim_head, mlp)`` = the lucidrains ``vit_pytorch`` transformer on width ``dim``:
  per layer ``x += W_o MHA(LN(x))`` (qkv ``Linear(dim, 3 heads dim_head, bias=False)``, scale
  ``dim_head^-1/2``, out ``Linear(heads dim_head, dim)``) then ``x += Linear(mlp, dim)(GELU(
  Linear(dim, mlp)(LN(x))))``; no dropout, **no positional embedding and no final norm**. Without
  positions the layer is permutation-equivariant over tokens, which is why MICE's output does not
  depend on the order of its modality tokens.
- ``Expert(rank r)`` = its own class token (``randn(1, 1, dim)``) prepended, ``TF(2, 4, r, r)``,
  output = the class-token row: attention width ``4 r`` and FFN width ``r``. The consensual,
  specialized and fusion experts are rank 64 (593,280 parameters at ``dim = 256``); the 15
  overlapping experts have ranks 8, 16, ..., 120.

The attention is written with plain matmuls (five tokens per patient: fused kernels buy nothing)
and works under bf16 autocast: the residual stream stays in the dtype of its input (fp32 for the
tokens MICE builds), LayerNorm and softmax run in fp32 as autocast decides.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError, InputError

__all__ = ["MLPB", "mlpb_stack", "Attention", "FeedForward", "TF", "Expert"]


class MLPB(nn.Sequential):
    """MICE's MLP block ``Linear(a, b) -> Dropout(p) -> ReLU``.

    Args:
        in_dim: input width ``a``.
        out_dim: output width ``b``.
        dropout: dropout rate (MICE: 0.2).
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.2):
        super().__init__(nn.Linear(int(in_dim), int(out_dim)), nn.Dropout(float(dropout)), nn.ReLU())
        self.out_dim = int(out_dim)


def mlpb_stack(in_dim: int, hidden: Sequence[int], dropout: float = 0.2) -> nn.Sequential:
    """``MLPB(in_dim, h_1) -> MLPB(h_1, h_2) -> ...`` (MICE's genomics and report encoders: ``(512, 256)``).

    Args:
        in_dim: input width.
        hidden: output widths of the blocks (the last one is the token width).
        dropout: dropout rate of every block.

    Returns:
        An ``nn.Sequential`` of :class:`MLPB` with ``out_dim`` set to the last width.
    """
    widths = [int(in_dim), *[int(h) for h in hidden]]
    if len(widths) < 2:
        raise ConfigError("an MLP-block encoder needs at least one hidden width")
    net = nn.Sequential(*[MLPB(a, b, dropout) for a, b in zip(widths[:-1], widths[1:])])
    net.out_dim = widths[-1]
    return net


class Attention(nn.Module):
    """Pre-norm multi-head self-attention of the lucidrains transformer (no dropout).

    Args:
        dim: token width.
        heads: number of heads.
        dim_head: width of one head (the attention width is ``heads * dim_head``).
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = int(heads), int(dim_head)
        inner = self.heads * self.dim_head
        self.scale = self.dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``W_o MHA(LN(x))`` of ``x`` ``[B, T, dim]`` (the caller adds the residual)."""
        b, t, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, self.dim_head).transpose(1, 2) for z in (q, k, v))
        attn = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, self.heads * self.dim_head)
        return self.to_out(out)


class FeedForward(nn.Module):
    """Pre-norm ``Linear(dim, mlp) -> GELU -> Linear(mlp, dim)`` (no dropout).

    Args:
        dim: token width.
        mlp: hidden width.
    """

    def __init__(self, dim: int, mlp: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, int(mlp)), nn.GELU(), nn.Linear(int(mlp), dim))

    def forward(self, x: Tensor) -> Tensor:
        """The FFN branch of ``x`` ``[B, T, dim]`` (the caller adds the residual)."""
        return self.net(x)


class TF(nn.Module):
    """MICE's ``TF(depth, heads, dim_head, mlp)`` (see the module docstring).

    Args:
        dim: token width (MICE: 256).
        depth: number of layers.
        heads: attention heads per layer.
        dim_head: width of one head.
        mlp: FFN hidden width.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp: int):
        super().__init__()
        if min(int(dim), int(depth), int(heads), int(dim_head), int(mlp)) < 1:
            raise ConfigError(f"TF widths must be positive: dim={dim} depth={depth} heads={heads} "
                              f"dim_head={dim_head} mlp={mlp}")
        self.dim = int(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(self.dim, heads, dim_head), FeedForward(self.dim, mlp)])
            for _ in range(int(depth)))

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``[B, T, dim]`` -> tokens ``[B, T, dim]``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise InputError(f"TF expects tokens [B, T, {self.dim}], got {tuple(x.shape)}")
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return x


class Expert(nn.Module):
    """A class-token expert: ``[z; x] -> TF(depth, heads, rank, rank) -> row of z``.

    Args:
        dim: token width.
        rank: head width and FFN width ``r`` (attention width ``heads * r``).
        depth: transformer layers (MICE: 2).
        heads: attention heads (MICE: 4).
    """

    def __init__(self, dim: int, rank: int, depth: int = 2, heads: int = 4):
        super().__init__()
        self.rank = int(rank)
        self.cls_token = nn.Parameter(torch.randn(1, 1, int(dim)))
        self.transformer = TF(dim, depth, heads, self.rank, self.rank)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``[B, T, dim]`` -> the class row ``[B, dim]``."""
        z = self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
        return self.transformer(torch.cat([z, x], dim=1))[:, 0]
