"""Deformable attention on a 2-D grid of patch features (the disentangled framework's DCA).

Why: Zhang et al. ("Disentangled multi-modal learning of histology and transcriptomics", Eqs. 1-3
and 8-9) let a query map decide *where* on the patch-feature grid to look. A small offset network
Psi moves a coarse lattice of reference points, the key/value map is sampled bilinearly at the
moved points, and every query attends to those few sampled keys only (144 keys for a 50 x 50
grid instead of 2,500). The teacher uses it as cross-attention (query = a gene embedding
broadcast over the grid, keys/values = patches: "Tumor-to-H deformation"), the student as
self-attention ("H-to-H deformation").

What the official code does (spec (b) "Deformable cross-attention", a variant of the Deformable
Attention Transformer of Xia et al. 2022), which this module follows:

1. ``Q = to_q(q_src)``: grouped 1x1 conv ``dim -> heads * dim_head`` (``offset_groups`` groups,
   no bias); viewed per offset group as ``[(B*G), inner/G, H, W]``.
2. Offsets from the grouped queries: depthwise conv (kernel 6, stride 4, padding 1) -> GELU ->
   1x1 conv to 2 channels (no bias) -> tanh -> ``* offset_scale``, i.e. at most 4 lattice cells,
   on a lattice of ``floor((H + 2 - 6) / 4) + 1`` points a side (12 for 50, 2 for 8).
3. Points ``p + dp`` (channel 0 = x = column, channel 1 = y = row, the order ``grid_sample``
   uses) are normalised to [-1, 1] by ``lattice side - 1`` and ``kv_src``, split into the same
   groups, is sampled with ``grid_sample(bilinear, zeros padding, align_corners=False)``. Note
   the two conventions meet oddly (as in the official code): the lattice's end points land on
   the *outer edges* of the border patches, so a border point samples half a zero.
4. ``K, V``: grouped 1x1 convs of the sampled map.
5. ``logits = (Q / sqrt(dim_head)) K^T + CPB``; CPB = MLP(2 -> 32 ReLU -> 32 ReLU -> heads/G) of
   ``sign(d) * log(1 + |d|)``, ``d`` = normalised query position (the H x W grid, [-1, 1]) minus
   the normalised sampled key position of the head's group; softmax over the sampled keys;
   dropout; ``attention @ V``; output 1x1 conv ``inner -> dim`` with bias.

At the paper setting (dim 128, dim_head 64, 8 heads, 8 groups) this is 93,921 parameters.

Token input ``[B, N, C]`` is reshaped row-major into a ``sqrt(N) x sqrt(N)`` map as the official
code does (spec (i) D12: there a non-square N is silently truncated by ``int(sqrt(N))``; here it
is an error that points to :func:`modaltune.data.fixed_bags.fixed_bag`). The grid is the patch
*list* order; we make that list a (y, x) raster scan before resampling (spec (k) Q8).

Mixed precision (our choice): the offset network, the sampling, the continuous position bias and
the softmax run in the parameters' dtype (fp32) with autocast switched off. In bf16 (8 mantissa
bits) a lattice coordinate near 12 is resolved to ~0.06 cells and a normalised position to
~0.004, the same order as the differences the CPB has to express (rows of the attention map of
the teacher differ only through the CPB, by ~1e-3, spec (b) teacher item 2), so bf16 would
quantise away both the sub-cell offsets and their gradients. The projections and the ``QK^T`` /
``AV`` products do run under autocast. Cost: the continuous position bias (an MLP over every
(query, sampled key, group) pair, 23 M rows at the paper size) would dominate this layer; it is
computed separably over the grid's rows and columns with a tiled hand-written backward
(:mod:`modaltune.encoders.position_bias`), which makes the layer faster than dense attention over
the same tokens on CPU and ~7x leaner in memory (``benchmarks/README.md``).

Deviations: offsets are normalised by the lattice's own width/height (the official helper swaps
them, which only matters for non-square maps); ``log1p`` instead of ``log(1 + x)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from .position_bias import ContinuousPositionBias

__all__ = ["DeformableAttention2D"]


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"DeformableAttention2D: {name} must be a positive integer, got {value!r}")
    return value


class DeformableAttention2D(nn.Module):
    """Deformable (cross- or self-) attention over a ``[B, C, H, W]`` grid or ``[B, N, C]`` tokens.

    Args:
        dim: channels of the input and output maps.
        dim_head: width of one attention head.
        heads: number of attention heads.
        offset_groups: groups sharing one set of offsets (and the grouped 1x1 convs); divides
            ``heads`` and ``dim``. The paper setting uses ``offset_groups = heads``.
        downsample_factor: stride ``r`` of the offset network (lattice side ~ grid side / r).
        offset_kernel_size: kernel of the depthwise offset conv; ``>= r`` with ``k - r`` even.
        offset_scale: maximal offset in lattice cells (``tanh * offset_scale``).
        dropout: dropout on the attention weights.
        cpb_hidden: hidden width of the continuous position bias MLP.
    """

    def __init__(self, dim: int = 128, dim_head: int = 64, heads: int = 8, offset_groups: int = 8,
                 downsample_factor: int = 4, offset_kernel_size: int = 6, offset_scale: float = 4.0,
                 dropout: float = 0.1, cpb_hidden: int = 32):
        super().__init__()
        for name, value in [("dim", dim), ("dim_head", dim_head), ("heads", heads), ("offset_groups", offset_groups),
                            ("downsample_factor", downsample_factor), ("offset_kernel_size", offset_kernel_size),
                            ("cpb_hidden", cpb_hidden)]:
            _positive_int(name, value)
        if heads % offset_groups or dim % offset_groups:
            raise ConfigError(f"DeformableAttention2D: offset_groups ({offset_groups}) must divide heads ({heads}) "
                              f"and dim ({dim})")
        if offset_kernel_size < downsample_factor or (offset_kernel_size - downsample_factor) % 2:
            raise ConfigError(f"DeformableAttention2D: offset_kernel_size ({offset_kernel_size}) must be >= "
                              f"downsample_factor ({downsample_factor}) with an even difference")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"DeformableAttention2D: dropout must be in [0, 1), got {dropout}")
        self.dim, self.dim_head, self.heads, self.offset_groups = dim, dim_head, heads, offset_groups
        self.downsample_factor, self.offset_scale = downsample_factor, float(offset_scale)
        self.scale = dim_head ** -0.5
        inner = dim_head * heads
        offset_dim = inner // offset_groups
        self.to_q = nn.Conv2d(dim, inner, 1, groups=offset_groups, bias=False)
        self.to_offsets = nn.Sequential(
            nn.Conv2d(offset_dim, offset_dim, offset_kernel_size, stride=downsample_factor,
                      padding=(offset_kernel_size - downsample_factor) // 2, groups=offset_dim),
            nn.GELU(),
            nn.Conv2d(offset_dim, 2, 1, bias=False),
        )
        self.cpb = ContinuousPositionBias(cpb_hidden, heads // offset_groups)
        self.to_k = nn.Conv2d(dim, inner, 1, groups=offset_groups, bias=False)
        self.to_v = nn.Conv2d(dim, inner, 1, groups=offset_groups, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Conv2d(inner, dim, 1)

    # ----------------------------------------------------------------------------------- helpers
    def _as_map(self, x: Tensor, name: str) -> tuple[Tensor, bool]:
        """``[B, C, H, W]`` view of ``x`` and whether it came as ``[B, N, C]`` tokens."""
        if x.dim() == 3:
            b, n, c = x.shape
            side = math.isqrt(n)
            if side * side != n:
                raise InputError(f"{name} has N = {n} tokens, which is not a perfect square, so it cannot be "
                                 "laid out as a square grid",
                                 fix="resample each bag to grid^2 patches first "
                                     "(modaltune.data.fixed_bags.fixed_bag(features, coords, grid))")
            x = x.transpose(1, 2).reshape(b, c, side, side)
            tokens = True
        elif x.dim() == 4:
            tokens = False
        else:
            raise InputError(f"{name} must be [B, C, H, W] or [B, N, C], got shape {tuple(x.shape)}",
                             fix="pass a feature map or a batch of token sequences")
        if x.shape[1] != self.dim:
            raise InputError(f"{name} has {x.shape[1]} channels but the attention was built with dim={self.dim}",
                             fix="project the features to dim first or build the module with the features' width")
        if min(x.shape[-2:]) < self.downsample_factor:
            raise InputError(f"{name}'s grid {tuple(x.shape[-2:])} is smaller than downsample_factor "
                             f"({self.downsample_factor}), so the offset lattice would be empty",
                             fix="use a larger grid (fixed_bag(..., grid=...))")
        return x, tokens

    def _precise_dtype(self) -> torch.dtype:
        return self.to_out.weight.dtype

    def sampling_points(self, q: Tensor) -> Tensor:
        """Normalised sampling positions from the projected queries (offset net + lattice).

        Runs in the parameters' dtype with autocast off (see the module docstring).

        Args:
            q: [B, heads * dim_head, H, W] projected queries (``to_q`` output).

        Returns:
            [B * offset_groups, h, w, 2] (x, y) positions in [-1, 1] (beyond it where an offset
            pushes a point off the lattice), h x w the lattice.
        """
        b, inner, h, w = q.shape
        dtype = self._precise_dtype()
        with torch.autocast(device_type=q.device.type, enabled=False):
            grouped = q.reshape(b * self.offset_groups, inner // self.offset_groups, h, w).to(dtype)
            offsets = torch.tanh(self.to_offsets(grouped)) * self.offset_scale  # [(B G), 2, h', w']
            lh, lw = offsets.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(lh, device=q.device, dtype=dtype),
                                    torch.arange(lw, device=q.device, dtype=dtype), indexing="ij")
            px = xs + offsets[:, 0]
            py = ys + offsets[:, 1]
            return torch.stack((2.0 * px / max(lw - 1, 1) - 1.0, 2.0 * py / max(lh - 1, 1) - 1.0), dim=-1)

    def sample(self, kv: Tensor, points: Tensor) -> Tensor:
        """Bilinear samples of ``kv`` at ``points``, each channel group at its own points.

        Args:
            kv: [B, C, H, W] key/value source map.
            points: [B * offset_groups, h, w, 2] normalised (x, y) positions.

        Returns:
            [B, C, h, w] sampled map in the parameters' dtype.
        """
        b, c, h, w = kv.shape
        with torch.autocast(device_type=kv.device.type, enabled=False):
            grouped = kv.reshape(b * self.offset_groups, c // self.offset_groups, h, w).to(points.dtype)
            out = F.grid_sample(grouped, points, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(b, c, *points.shape[1:3])

    def _split_heads(self, t: Tensor) -> Tensor:
        b, _, h, w = t.shape
        return t.reshape(b, self.heads, self.dim_head, h * w).transpose(-1, -2)

    # ----------------------------------------------------------------------------------- forward
    def forward(self, q_src: Tensor, kv_src: Tensor | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Attend from every query position to the deformed samples of ``kv_src``.

        Args:
            q_src: [B, C, H, W] map or [B, N, C] tokens (N a perfect square) for the queries and
                the offsets.
            kv_src: the key/value source of the same shape; ``None`` = self-attention.
            return_attention: also return the attention weights and the sampling positions.

        Returns:
            ``out`` with ``q_src``'s layout ([B, C, H, W] or [B, N, C]); with ``return_attention``
            the tuple ``(out, attention [B, heads, H*W, n_keys] (before dropout, parameters'
            dtype), positions [B, offset_groups, h, w, 2] (normalised (x, y)))``.
        """
        q_map, tokens = self._as_map(q_src, "q_src")
        kv_map = q_map if kv_src is None else self._as_map(kv_src, "kv_src")[0]
        if kv_map.shape != q_map.shape:
            raise InputError(f"q_src and kv_src grids differ: {tuple(q_map.shape)} vs {tuple(kv_map.shape)}",
                             fix="resample both bags to the same grid (fixed_bag) before the attention")
        b, _, h, w = q_map.shape
        q = self.to_q(q_map)
        points = self.sampling_points(q)
        sampled = self.sample(kv_map, points).to(kv_map.dtype)
        k, v = self._split_heads(self.to_k(sampled)), self._split_heads(self.to_v(sampled))
        logits = torch.matmul(self._split_heads(q) * self.scale, k.transpose(-1, -2))  # [B, heads, HW, n_keys]
        n_keys = k.shape[-2]
        with torch.autocast(device_type=q_map.device.type, enabled=False):
            key_pos = points.reshape(b * self.offset_groups, n_keys, 2)
            bias = self.cpb(key_pos, h, w)  # [(B G), heads/G, HW, n_keys]
            bias = bias.reshape(b, self.heads, h * w, n_keys)
            attention = torch.softmax(logits.to(bias.dtype) + bias, dim=-1)
        out = torch.matmul(self.dropout(attention).to(v.dtype), v)  # [B, heads, HW, dim_head]
        out = self.to_out(out.transpose(-1, -2).reshape(b, self.heads * self.dim_head, h, w))
        if tokens:
            out = out.flatten(2).transpose(1, 2)
        if not return_attention:
            return out
        positions = points.reshape(b, self.offset_groups, *points.shape[1:])
        return out, attention, positions
