"""Prov-GigaPath's LongNet slide encoder (``gigapath_slide_enc12l768d``) in pure PyTorch.

Written from the published architecture (Xu et al., *Nature* 2024; Ding et al., LongNet 2023) and
checked against the public ``prov-gigapath`` / ``torchscale`` code so that a released
``slide_encoder.pth`` loads with the same parameter names and computes the same function. No
flash-attn, xformers or timm: attention runs through PyTorch's scaled-dot-product attention
kernels, on CPU in fp32 and on GPU under bf16 autocast.

Model (GigaPath names in brackets; they are the state-dict keys)::

    tile features [B, N, in_dim] --Linear [patch_embed.proj]--> [B, N, dim]
      + 2-D sin-cos position of each tile (fixed, not a parameter)
      prepend [cls_token] (its position embedding is zero)       -> [B, N+1, dim]
    depth x LongNetLayer [encoder.layers.{i}]:
      x = x + DropPath(Dropout(SelfAttn(LN(x))))                  LN = self_attn_layer_norm
          SelfAttn = out_proj(inner_attn_ln(DilatedAttention(q_proj, k_proj, v_proj)))
      x = x + DropPath(FFN(LN(x)))                                LN = final_layer_norm
          FFN = Dropout(fc2(ffn_layernorm(GELU(fc1(x)))))
    encoder.layer_norm, then norm, then the [CLS] row            -> [B, dim]

LayerNorm epsilons: ``1e-5`` inside the encoder (torchscale's ``layernorm_eps``), ``1e-6`` for
the outer ``norm`` (GigaPath's ``partial(nn.LayerNorm, eps=1e-6)``). GELU is the exact (erf) one,
evaluated in fp32 as torchscale does. Embeddings are not scaled (``no_scale_embedding``).

Position embedding. GigaPath builds a ``1 + 1000*1000`` row MAE sin-cos table and indexes it with
``floor(x/256) * 1000 + floor(y/256) + 1`` (level-0 pixel coordinates; row 0 = [CLS] = zeros).
Row ``1 + a*1000 + b`` of that table is ``[sincos(b), sincos(a)]`` with ``a = floor(x/256)``,
``b = floor(y/256)`` and ``sincos(p) = [sin(p*w_k), cos(p*w_k)]``, ``w_k = 10000^(-k/(dim/4))``,
``k < dim/4`` (numpy float64, cast to float32). We evaluate exactly that for the tiles present
(float64, on the fly), so nothing of size ``1M x dim`` is stored and nothing enters the state
dict. Inside the 1000 x 1000 grid the result equals GigaPath's table; outside it (a tile at or
beyond 256,000 px, or negative coordinates) GigaPath would fail or alias rows, while we continue
the same formula and warn.

The rest of the encoder lives next to this file: the settings and segment lengths in
:mod:`.config`, the dilated attention in :mod:`.dilated_attention` (with its kernels in
:mod:`.kernels` and the fused CPU path in :mod:`.fused_cpu`), checkpoint loading in
:mod:`.gigapath_checkpoint`, and the one way to build an encoder from settings in
:mod:`.factory`.

Interface used by the Modal Adapter (``methods/modaltune/adapter.py``): :meth:`embed_tokens`,
``layers`` (a ``ModuleList`` of :class:`LongNetLayer`, ``layer(x [B,L,D]) -> [B,L,D]``),
:meth:`final_norm`, and :meth:`forward`.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...errors import InputError, InputWarning
from ..layers import DropPath
from .config import LongNetConfig
from .dilated_attention import dilated_attention
from .gigapath_checkpoint import load_gigapath_checkpoint

# LongNetConfig, DropPath and load_gigapath_checkpoint are re-exported because methods import
# them from here; their homes are .config, ..layers and .gigapath_checkpoint.
__all__ = [
    "LongNetSlideEncoder", "LongNetLayer", "LongNetEncoder", "DilatedAttention", "FeedForward",
    "PatchEmbed", "sincos_position_embedding", "ENCODER_LN_EPS", "OUTPUT_LN_EPS",
    "LongNetConfig", "DropPath", "load_gigapath_checkpoint",
]

ENCODER_LN_EPS = 1e-5   # torchscale EncoderConfig.layernorm_eps
OUTPUT_LN_EPS = 1e-6    # GigaPath's outer ``norm``


# modules (names follow GigaPath / torchscale, so state-dict keys match)
class DilatedAttention(nn.Module):
    """Self-attention with LongNet dilation and sub-LN: ``out_proj(inner_attn_ln(attn(q, k, v)))``.

    ``q_proj``, ``k_proj``, ``v_proj`` keep GigaPath's names; the forward concatenates their
    weights into one matmul.
    """

    def __init__(self, dim: int, heads: int, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]):
        super().__init__()
        self.dim, self.heads = int(dim), int(heads)
        self.head_dim = self.dim // self.heads
        self.segment_lengths = tuple(int(s) for s in segment_lengths)
        self.dilated_ratios = tuple(int(r) for r in dilated_ratios)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.inner_attn_ln = nn.LayerNorm(dim, eps=ENCODER_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention of ``x [B, L, dim]`` -> ``[B, L, dim]``."""
        b, length, _ = x.shape
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], dim=0)
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias], dim=0)
        qkv = F.linear(x, weight, bias).view(b, length, 3, self.heads, self.head_dim)
        attn = dilated_attention(qkv, self.segment_lengths, self.dilated_ratios)
        attn = attn.reshape(b, length, self.dim)
        return self.out_proj(self.inner_attn_ln(attn))


class FeedForward(nn.Module):
    """``Dropout(fc2(ffn_layernorm(GELU(fc1(x)))))``; GELU in fp32 as torchscale does."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.ffn_layernorm = nn.LayerNorm(ffn_dim, eps=ENCODER_LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise FFN of ``x [..., dim]`` -> ``[..., dim]``."""
        h = self.fc1(x)
        h = F.gelu(h.float()).to(h.dtype)
        return self.dropout(self.fc2(self.ffn_layernorm(h)))


class LongNetLayer(nn.Module):
    """One pre-norm LongNet encoder layer, ``forward(x [B, L, dim]) -> [B, L, dim]``."""

    def __init__(self, cfg: LongNetConfig, drop_path: float = 0.0):
        super().__init__()
        self.self_attn = DilatedAttention(cfg.dim, cfg.heads, cfg.segment_lengths, cfg.dilated_ratios)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim, eps=ENCODER_LN_EPS)
        self.dropout = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(drop_path)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim, cfg.dropout)
        self.final_layer_norm = nn.LayerNorm(cfg.dim, eps=ENCODER_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pre-norm attention block and one pre-norm FFN block, each with a residual."""
        x = x + self.drop_path(self.dropout(self.self_attn(self.self_attn_layer_norm(x))))
        return x + self.drop_path(self.ffn(self.final_layer_norm(x)))


class LongNetEncoder(nn.Module):
    """The layer stack (``encoder.layers``) and the output LayerNorm (``encoder.layer_norm``)."""

    def __init__(self, cfg: LongNetConfig):
        super().__init__()
        n = cfg.depth
        rates = [cfg.drop_path * i / (n - 1) for i in range(n)] if n > 1 else [0.0]  # np.linspace
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList([LongNetLayer(cfg, rates[i]) for i in range(cfg.depth)])
        self.layer_norm = nn.LayerNorm(cfg.dim, eps=ENCODER_LN_EPS)


class PatchEmbed(nn.Module):
    """``patch_embed.proj``: Linear ``in_dim -> dim`` (GigaPath's norm here is an Identity)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project tile features ``[..., in_dim]`` -> ``[..., dim]``."""
        return self.proj(x)


def sincos_position_embedding(coords: torch.Tensor, dim: int, tile_size: int = 256) -> torch.Tensor:
    """GigaPath's 2-D sin-cos embedding of level-0 pixel ``coords [..., 2]`` -> ``[..., dim]`` fp32.

    Equals row ``floor(x/tile)*1000 + floor(y/tile) + 1`` of GigaPath's table for tiles inside the
    1000 x 1000 grid: ``[sincos(floor(y/tile)), sincos(floor(x/tile))]``, each half ``dim/2`` wide
    (sin block then cos block), computed in float64.

    Args:
        coords: level-0 pixel coordinates ``[..., 2]`` (x, y).
        dim: embedding width (divisible by 4).
        tile_size: the grid cell in pixels.

    Returns:
        The fp32 embedding ``[..., dim]`` on the device of ``coords``.
    """
    dev = coords.device
    work = torch.device("cpu") if dev.type == "mps" else dev
    c = torch.floor(coords.to(device=work, dtype=torch.float64) / float(tile_size))
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device=work) / quarter)

    def one_d(p: torch.Tensor) -> torch.Tensor:
        ang = p.unsqueeze(-1) * omega
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)

    emb = torch.cat([one_d(c[..., 1]), one_d(c[..., 0])], dim=-1)
    return emb.to(device=dev, dtype=torch.float32)


class LongNetSlideEncoder(nn.Module):
    """Prov-GigaPath slide encoder (LongNet); see the module docstring.

    Args:
        cfg: a :class:`LongNetConfig` (or a dict of its fields).
    """

    def __init__(self, cfg: LongNetConfig | dict | None = None):
        super().__init__()
        if cfg is None:
            cfg = LongNetConfig.gigapath()
        elif isinstance(cfg, dict):
            cfg = LongNetConfig(**cfg)
        self.cfg = cfg
        self.dim = cfg.dim
        self.in_dim = cfg.in_dim
        self.patch_embed = PatchEmbed(cfg.in_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.encoder = LongNetEncoder(cfg)
        self.norm = nn.LayerNorm(cfg.dim, eps=OUTPUT_LN_EPS)
        self.reset_parameters()

    @property
    def layers(self) -> nn.ModuleList:
        """The LongNet layers (``encoder.layers``), each ``layer(x [B, L, dim]) -> [B, L, dim]``."""
        return self.encoder.layers

    def reset_parameters(self) -> None:
        """GigaPath's final initialisation: xavier-uniform linears, zero biases, unit LayerNorms,
        ``cls_token ~ N(0, 0.02)``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_token, std=0.02)

    # -- the adapter interface -------------------------------------------------------------
    def embed_tokens(self, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Tile features ``[B, N, in_dim]`` + level-0 coords ``[B, N, 2]`` -> tokens ``[B, N+1, dim]``.

        Linear projection plus 2-D sin-cos position, with the [CLS] token (position 0, zero
        position embedding) prepended; embedding dropout as in torchscale. ``N = 0`` is allowed.
        """
        x, coords = self._check_inputs(x, coords)
        h = self.patch_embed(x)
        if h.shape[1]:
            self._warn_outside_grid(coords)
            pos = sincos_position_embedding(coords, self.dim, self.cfg.tile_size)
            h = h + pos.to(h.dtype)
        cls = self.cls_token.expand(h.shape[0], -1, -1).to(h.dtype)
        return self.encoder.dropout(torch.cat([cls, h], dim=1))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(encoder.layer_norm(x))``: what GigaPath applies to the last layer's output
        before taking the [CLS] row (per token, so it may be applied to the [CLS] row alone)."""
        return self.norm(self.encoder.layer_norm(x))

    def forward(self, x: torch.Tensor, coords: torch.Tensor, all_layer_embed: bool = False
                ) -> torch.Tensor | list[torch.Tensor]:
        """Slide embedding ``[B, dim]`` (the [CLS] row after :meth:`final_norm`).

        With ``all_layer_embed=True`` returns GigaPath's list of ``depth + 1`` embeddings:
        ``norm(h_i)[:, 0]`` for the embedded input ``h_0`` and every layer's output ``h_i``. As in
        GigaPath, these are taken *without* ``encoder.layer_norm`` (the encoder's hidden states
        are collected before it), so the last entry differs from the default output.
        """
        h = self.embed_tokens(x, coords)
        states = [h] if all_layer_embed else None
        use_ckpt = self.cfg.checkpoint_activations and torch.is_grad_enabled() and h.requires_grad
        for layer in self.layers:
            h = checkpoint(layer, h, use_reentrant=False) if use_ckpt else layer(h)
            if states is not None:
                states.append(h)
        if states is not None:
            return [self.norm(s[:, :1])[:, 0] for s in states]
        return self.final_norm(h[:, :1])[:, 0]

    # -- helpers ---------------------------------------------------------------------------
    def _check_inputs(self, x: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if coords.dim() == 2:
            coords = coords.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"tile features must be [B, N, D], got shape {tuple(x.shape)}")
        if x.shape[-1] != self.in_dim:
            raise InputError(f"tile features are {x.shape[-1]}-d but the LongNet slide encoder expects "
                             f"{self.in_dim}-d",
                             fix="use features from the matching tile encoder (Prov-GigaPath: 1536-d) or "
                                 "set the encoder's in_dim to the feature width")
        if coords.shape != x.shape[:2] + (2,):
            raise ValueError(f"coords must be [B, N, 2] matching features {tuple(x.shape)}, got "
                             f"{tuple(coords.shape)}")
        return x, coords

    def _warn_outside_grid(self, coords: torch.Tensor) -> None:
        cells = torch.floor(coords.detach().double() / self.cfg.tile_size)
        if bool((cells < 0).any()) or bool((cells >= self.cfg.grid_size).any()):
            warnings.warn(
                f"tile coordinates fall outside GigaPath's {self.cfg.grid_size}x{self.cfg.grid_size} "
                f"position grid ({self.cfg.tile_size} px cells, i.e. beyond "
                f"{self.cfg.grid_size * self.cfg.tile_size} px or negative); the sin-cos position is "
                "extrapolated there (GigaPath itself would fail or alias positions) | fix: use level-0 "
                "pixel coordinates of slides under 256,000 px, or fewer/smaller slides per patient",
                InputWarning, stacklevel=3)
