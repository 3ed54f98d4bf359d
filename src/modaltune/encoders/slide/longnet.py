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

Dilated attention (torchscale ``DilatedAttention`` semantics, checked line by line):

- branches ``(w, r)`` from ``segment_lengths`` x ``dilated_ratios``; ``w`` is capped at the
  sequence length ``L`` (``N + 1`` with [CLS]);
- the sequence is zero-padded to a multiple of ``w`` and cut into segments of ``w``; each segment
  is zero-padded to a multiple of ``r``;
- heads are split into ``r`` contiguous groups of ``ceil(H / r)`` heads; head ``h`` belongs to
  group ``g = h // ceil(H / r)`` and, within every segment, sees only the positions ``j`` with
  ``j % r == g`` (so when ``H < r`` the offsets ``>= H`` are covered by no head of that branch);
- softmax attention (scale ``1/sqrt(head_dim)``) within each sparsified segment. **Padding is not
  masked**, exactly as in the reference: padded positions are zero query/key/value vectors, so a
  padded key contributes ``exp(0)`` to the softmax denominator and nothing to the numerator. This
  only affects the last, partial segment of a branch (and segments whose length is not a
  multiple of ``r``); we keep it so that pretrained GigaPath weights see the inputs they were
  trained with;
- every branch returns, per position and head, its output and the log-sum-exp (LSE) of its
  attention scores (``-inf`` where the branch does not cover that position/head);
- branches are merged with weights ``softmax_over_branches(LSE)``. As in torchscale the weights
  are computed under ``no_grad``: gradients flow through each branch's output but not through the
  merge weights (forward values are exact; this is the reference's gradient).

Cost per branch is ``O(L * w / r)`` time and ``O(L / r)`` extra memory: every branch is one
batched attention call over all its segments (no Python loop over segments, no ``L x L`` matrix).
The LSE comes from PyTorch's fused attention kernels (``_scaled_dot_product_flash_attention_for_cpu``
on CPU; flash / memory-efficient kernels on CUDA); where those private entry points are missing
or refuse the inputs, the output comes from ``F.scaled_dot_product_attention`` and the LSE from
an explicit, chunked ``logsumexp(QK^T)`` under ``no_grad``.

On CPU the whole dilated attention of a layer is one autograd function
(:class:`_FusedDilatedAttention`): ``qkv`` is zero-padded once, every (batch row, branch, head
group) is a flash-kernel call on a *strided view* of it (the head group ``g`` of branch ``r`` is
``x.view(nseg, m, r, 3, H, d)[:, :, g, :, heads_g]``, no gather), outputs are accumulated into
the merged result with their branch weights, and the backward calls the flash backward kernel
per view and adds into one gradient buffer. This removes the per-branch padding copies, head
gathers, dense zero-filled scatters and their zero-filled gradients of the composite path,
which took most of the time of a training step (4k patches, 12 layers x 3 tasks: 67 s -> 37 s on
2 cores; see ``benchmarks/README.md``). Both paths compute the same values and gradients
(tested against each other and against a loop reference).

Segment lengths. ModalTune's Table 6 lists ``[1024, 2048, 4096, 8192, 16384]`` (the default of
torchscale's ``make_longnet_from_name`` and of the LongNet configs in GigaPath's repository), but
GigaPath's ``LongNetViT`` overrides it with ``get_optimal_segment_length(max_wsi_size=262144,
tile_size=256)`` = ``2 ** linspace(10, 20, 5)`` = ``[1024, 5792, 32768, 185363, 1048576]``, which
is what the released checkpoint runs with and ModalTune's code inherits. We default to GigaPath's
values; pass ``segment_lengths=(1024, 2048, 4096, 8192, 16384)`` for the Table 6 listing.

Interface used by the Modal Adapter (``methods/modaltune/adapter.py``): :meth:`embed_tokens`,
``layers`` (a ``ModuleList`` of :class:`LongNetLayer`, ``layer(x [B,L,D]) -> [B,L,D]``),
:meth:`final_norm`, and :meth:`forward`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...errors import ConfigError, InputError, InputWarning, warn_input
from ...registry import SLIDE_ENCODERS

__all__ = [
    "LongNetConfig", "LongNetSlideEncoder", "LongNetLayer", "LongNetEncoder", "DilatedAttention",
    "FeedForward", "PatchEmbed", "DropPath", "dilated_attention", "dilated_branch", "merge_branches",
    "attention_with_lse", "sincos_position_embedding", "load_gigapath_checkpoint",
    "build_longnet", "GIGAPATH_SEGMENT_LENGTHS", "TABLE6_SEGMENT_LENGTHS",
]

log = logging.getLogger(__name__)

#: Segment lengths GigaPath's slide encoder actually runs with (``2 ** linspace(10, 20, 5)``).
GIGAPATH_SEGMENT_LENGTHS: tuple[int, ...] = (1024, 5792, 32768, 185363, 1048576)
#: Segment lengths as listed in ModalTune's Table 6 (torchscale's LongNet default).
TABLE6_SEGMENT_LENGTHS: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)

ENCODER_LN_EPS = 1e-5   # torchscale EncoderConfig.layernorm_eps
OUTPUT_LN_EPS = 1e-6    # GigaPath's outer ``norm``


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass
class LongNetConfig:
    """Hyper-parameters of the LongNet slide encoder (defaults: Prov-GigaPath's released model).

    Attributes:
        in_dim: tile-feature width (1536 for the Prov-GigaPath tile encoder).
        dim: model width. depth: layers. heads: attention heads. ffn_dim: FFN hidden width.
        segment_lengths, dilated_ratios: the dilated-attention branches (see module docstring).
        dropout: residual / FFN / embedding dropout (GigaPath fine-tuning used 0.25; frozen use: 0).
        drop_path: maximum stochastic-depth rate (layer ``i`` uses ``linspace(0, p, depth)[i]``).
        tile_size: the position grid cell in level-0 pixels (GigaPath: 256).
        grid_size: cells per side of GigaPath's position table (1000); only used to warn when a
            tile falls outside the table GigaPath was trained with.
        checkpoint_activations: recompute each layer in backward (memory ~ one layer's
            activations instead of ``depth``); only affects :meth:`LongNetSlideEncoder.forward`.
    """

    in_dim: int = 1536
    dim: int = 768
    depth: int = 12
    heads: int = 16
    ffn_dim: int = 3072
    segment_lengths: tuple[int, ...] = GIGAPATH_SEGMENT_LENGTHS
    dilated_ratios: tuple[int, ...] = (1, 2, 4, 8, 16)
    dropout: float = 0.0
    drop_path: float = 0.0
    tile_size: int = 256
    grid_size: int = 1000
    checkpoint_activations: bool = False

    def __post_init__(self) -> None:
        self.segment_lengths = tuple(int(s) for s in self.segment_lengths)
        self.dilated_ratios = tuple(int(r) for r in self.dilated_ratios)
        for name in ("in_dim", "dim", "depth", "heads", "ffn_dim", "tile_size", "grid_size"):
            v = getattr(self, name)
            if int(v) != v or int(v) <= 0:
                raise ConfigError(f"LongNetConfig.{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        if self.dim % self.heads:
            raise ConfigError(f"LongNetConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.dim % 4:
            raise ConfigError(f"LongNetConfig.dim ({self.dim}) must be divisible by 4 (2-D sin-cos "
                              "position embedding)")
        if not self.segment_lengths or len(self.segment_lengths) != len(self.dilated_ratios):
            raise ConfigError("LongNetConfig.segment_lengths and dilated_ratios must be non-empty and "
                              f"of equal length, got {self.segment_lengths} and {self.dilated_ratios}")
        if min(self.segment_lengths) <= 0 or min(self.dilated_ratios) <= 0:
            raise ConfigError("LongNetConfig.segment_lengths and dilated_ratios must be positive")
        for name in ("dropout", "drop_path"):
            v = float(getattr(self, name))
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"LongNetConfig.{name} must be in [0, 1), got {v}")
            setattr(self, name, v)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @classmethod
    def gigapath(cls, **overrides: Any) -> "LongNetConfig":
        """Prov-GigaPath ``gigapath_slide_enc12l768d``: 1536 -> 768, 12 layers, 16 heads, FFN 3072."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def small(cls, in_dim: int, dim: int = 128, depth: int = 4, heads: int = 4, ffn_dim: int = 512,
              segment_lengths: Sequence[int] = (64, 128, 256, 512, 1024),
              dilated_ratios: Sequence[int] = (1, 2, 4, 8, 16), **overrides: Any) -> "LongNetConfig":
        """A small encoder of the same architecture, for tests and CPU experiments (random init)."""
        return cls(in_dim=in_dim, dim=dim, depth=depth, heads=heads, ffn_dim=ffn_dim,
                   segment_lengths=tuple(segment_lengths), dilated_ratios=tuple(dilated_ratios),
                   **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["segment_lengths"] = list(self.segment_lengths)
        d["dilated_ratios"] = list(self.dilated_ratios)
        return d


# ----------------------------------------------------------------------------------------------
# attention kernels returning the log-sum-exp
# ----------------------------------------------------------------------------------------------
_FAST_OK: dict[tuple[str, torch.dtype], bool] = {}
#: Set to False to force the portable path (public SDPA + explicit LSE); used by the tests.
USE_FUSED_LSE_KERNELS = True


def _lse_explicit(q: torch.Tensor, k: torch.Tensor, scale: float,
                  budget: int = 1 << 26) -> torch.Tensor:
    """``logsumexp(q k^T * scale)`` over keys, fp32, chunked over the leading dims (no grad)."""
    b, h, lq, _ = q.shape
    lk = k.shape[2]
    out = torch.empty(b, h, lq, dtype=torch.float32, device=q.device)
    per = max(1, budget // max(1, h * lq * lk))
    with torch.no_grad():
        for i in range(0, b, per):
            s = torch.matmul(q[i:i + per].float(), k[i:i + per].float().transpose(-1, -2)) * scale
            out[i:i + per] = torch.logsumexp(s, dim=-1)
    return out


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention ``[B, H, L, d] -> ([B, H, L, d], lse [B, H, L] fp32)``.

    The output is differentiable w.r.t. ``q, k, v``; the LSE is not (it only feeds the
    no-grad branch weights). Scale ``1/sqrt(d)``, no mask, no dropout.
    """
    lq = q.shape[2]
    key = (q.device.type, q.dtype)
    if USE_FUSED_LSE_KERNELS and _FAST_OK.get(key, True):
        try:
            if q.device.type == "cpu":
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
            elif q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
                res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False)
                out, lse = res[0], res[1]
            elif q.device.type == "cuda":
                res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False)
                out, lse = res[0], res[1]
            else:
                raise RuntimeError("no fused LSE kernel for this device")
            lse = lse[..., :lq]
            if out.shape != q.shape[:-1] + v.shape[-1:] or lse.shape != q.shape[:-1]:
                raise RuntimeError(f"unexpected fused attention shapes {tuple(out.shape)}, {tuple(lse.shape)}")
            return out, lse.detach().float()
        except (RuntimeError, AttributeError, NotImplementedError, TypeError) as exc:
            _FAST_OK[key] = False
            log.info("fused attention with LSE unavailable on %s/%s (%s); using SDPA + explicit LSE",
                     key[0], key[1], exc)
    out = F.scaled_dot_product_attention(q, k, v)
    return out, _lse_explicit(q, k, 1.0 / math.sqrt(q.shape[-1]))


# ----------------------------------------------------------------------------------------------
# dilated attention
# ----------------------------------------------------------------------------------------------
def _head_groups(heads: int, ratio: int, device: torch.device) -> torch.Tensor:
    """Offset (group) of every head for dilation ``ratio``: ``h // ceil(heads / ratio)``."""
    per = -(-heads // ratio)
    return torch.arange(heads, device=device) // per


def dilated_branch(qkv: torch.Tensor, segment_length: int, ratio: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One dilated-attention branch.

    Args:
        qkv: ``[B, L, 3, H, d]`` projected queries, keys and values.
        segment_length: ``w`` (capped at ``L``). ratio: dilation ``r``.

    Returns:
        ``out [B, L, H, d]`` (zeros where the branch does not cover a position/head) and
        ``lse [B, L, H]`` fp32 (``-inf`` there), see the module docstring for the exact rule.
    """
    b, length, three, h, d = qkv.shape
    if three != 3:
        raise ValueError(f"qkv must be [B, L, 3, H, d], got {tuple(qkv.shape)}")
    w = min(int(segment_length), length)
    r = int(ratio)
    nseg = -(-length // w)
    m = -(-w // r)                      # sparse tokens per segment (after padding w to m*r)
    x = qkv
    if nseg * w != length:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, nseg * w - length))
    x = x.reshape(b, nseg, w, 3, h, d)
    if m * r != w:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, m * r - w))
    if r == 1:
        xs = x                                                   # [B, nseg, m, 3, H, d]
        groups = None
    else:
        groups = _head_groups(h, r, qkv.device)
        heads = torch.arange(h, device=qkv.device)
        x = x.reshape(b, nseg, m, r, 3, h, d).transpose(3, 4)       # [B, nseg, m, 3, r, H, d]
        xs = x[:, :, :, :, groups, heads]                        # [B, nseg, m, 3, H, d]
    xs = xs.reshape(b * nseg, m, 3, h, d)
    q, k, v = (t.transpose(1, 2) for t in xs.unbind(2))          # [B*nseg, H, m, d]
    o, lse = attention_with_lse(q, k, v)                         # [B*nseg, H, m, d], [B*nseg, H, m]
    o = o.transpose(1, 2).reshape(b, nseg, m, h, d)
    lse = lse.transpose(1, 2).reshape(b, nseg, m, h)
    if r == 1:
        out = o.reshape(b, nseg * m, h, d)[:, :length]
        lse_d = lse.reshape(b, nseg * m, h)[:, :length]
        return out, lse_d
    dense = o.new_zeros(b, nseg, m, r, h, d)
    dense[:, :, :, groups, heads] = o
    lse_dense = lse.new_full((b, nseg, m, r, h), float("-inf"))
    lse_dense[:, :, :, groups, heads] = lse
    out = dense.view(b, nseg, m * r, h, d)[:, :, :w].reshape(b, nseg * w, h, d)[:, :length]
    lse_d = lse_dense.view(b, nseg, m * r, h)[:, :, :w].reshape(b, nseg * w, h)[:, :length]
    return out, lse_d


def merge_branches(outs: Sequence[torch.Tensor], lses: Sequence[torch.Tensor]) -> torch.Tensor:
    """Combine branch outputs with weights ``softmax_over_branches(lse)`` (computed without grad).

    A position covered by no branch gets zeros (torchscale gives it zeros too).
    """
    with torch.no_grad():
        weights = torch.softmax(torch.stack(list(lses), dim=0), dim=0).nan_to_num_(0.0)
    out = None
    for o, wgt in zip(outs, weights):
        term = o * wgt.unsqueeze(-1).to(o.dtype)
        out = term if out is None else out + term
    return out


# ----------------------------------------------------------------------------------------------
# fused CPU path: all branches in one autograd Function over strided views (no gathers/scatters)
# ----------------------------------------------------------------------------------------------
def _fused_plan(length: int, heads: int, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]
                ) -> tuple[int, list[tuple[int, int, int, list[tuple[int, int, int]]]]] | None:
    """Layout of every branch inside one zero-padded copy of ``qkv`` (``None`` if not expressible).

    Returns ``(P, branches)``: ``P`` = padded length, each branch ``(nseg, m, r, groups)`` with
    ``groups`` = ``[(g, h0, h1)]`` (offset ``g`` attended by heads ``h0:h1``). Branch ``(w, r)`` reads
    the prefix ``[:nseg * m * r]`` of the padded sequence viewed as ``[nseg, m, r]``; that equals the
    per-segment padding of :func:`dilated_branch` whenever there is one segment or ``r`` divides
    ``w`` (always true below 185,363 tokens for GigaPath's lengths).
    """
    branches = []
    padded = length
    for w, r in zip(segment_lengths, dilated_ratios):
        w = min(int(w), length)
        r = int(r)
        nseg = -(-length // w)
        m = -(-w // r)
        if nseg > 1 and m * r != w:
            return None
        per = -(-heads // r)
        groups = [(g, g * per, min((g + 1) * per, heads)) for g in range(r) if g * per < heads]
        branches.append((nseg, m, r, groups))
        padded = max(padded, nseg * m * r)
    return padded, branches


class _FusedDilatedAttention(torch.autograd.Function):
    """LongNet dilated attention on CPU through the fused flash kernel and its backward.

    Same function and gradient as :func:`dilated_branch` + :func:`merge_branches` (merge weights
    constant), but every (batch row, branch, head group) is one kernel call on a strided view of a
    single zero-padded ``qkv``: no per-branch padding, gathers, dense scatters or zero-filled
    gradient buffers, which dominated the memory traffic of the composite version.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, padded: int, branches: list) -> torch.Tensor:  # noqa: D401
        b, length, _, h, d = qkv.shape
        x = qkv if padded == length else F.pad(qkv, (0, 0, 0, 0, 0, 0, 0, padded - length))
        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        calls = []          # (branch index, batch row, g, h0, h1, out, lse)
        lse_all = qkv.new_full((len(branches), b, padded, h), float("-inf"), dtype=torch.float32)
        for i, (nseg, m, r, groups) in enumerate(branches):
            n = nseg * m * r
            for bi in range(b):
                xb = x[bi, :n].view(nseg, m, r, 3, h, d)
                lb = lse_all[i, bi, :n].view(nseg, m, r, h)
                for g, h0, h1 in groups:
                    q, k, v = (xb[:, :, g, j, h0:h1].transpose(1, 2) for j in range(3))   # [nseg, hc, m, d]
                    o, lse = flash(q, k, v, 0.0, False)
                    lb[:, :, g, h0:h1] = lse.transpose(1, 2)
                    calls.append((i, bi, g, h0, h1, o, lse))
        weights = torch.softmax(lse_all, dim=0).nan_to_num_(0.0)
        out = qkv.new_zeros(b, padded, h, d)
        for i, bi, g, h0, h1, o, _ in calls:
            nseg, m, r, _ = branches[i]
            n = nseg * m * r
            dst = out[bi, :n].view(nseg, m, r, h, d)[:, :, g, h0:h1]
            wgt = weights[i, bi, :n].view(nseg, m, r, h)[:, :, g, h0:h1].unsqueeze(-1).to(o.dtype)
            dst.addcmul_(o.transpose(1, 2), wgt)
        ctx.save_for_backward(x, weights, *[c[5] for c in calls], *[c[6] for c in calls])
        ctx.calls = [c[:5] for c in calls]
        ctx.branches = branches
        ctx.length = length
        return out[:, :length]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weights, *saved = ctx.saved_tensors
        n_calls = len(ctx.calls)
        outs, lses = saved[:n_calls], saved[n_calls:]
        b, padded, _, h, d = x.shape
        length = ctx.length
        gpad = grad if padded == length else F.pad(grad, (0, 0, 0, 0, 0, padded - length))
        gx = torch.zeros_like(x)
        flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        for (i, bi, g, h0, h1), o, lse in zip(ctx.calls, outs, lses):
            nseg, m, r, _ = ctx.branches[i]
            n = nseg * m * r
            xb = x[bi, :n].view(nseg, m, r, 3, h, d)
            q, k, v = (xb[:, :, g, j, h0:h1].transpose(1, 2) for j in range(3))
            wgt = weights[i, bi, :n].view(nseg, m, r, h)[:, :, g, h0:h1].unsqueeze(-1).to(grad.dtype)
            g_o = (gpad[bi, :n].view(nseg, m, r, h, d)[:, :, g, h0:h1] * wgt).transpose(1, 2)
            gq, gk, gv = flash_bwd(g_o, q, k, v, o, lse, 0.0, False)
            gb = gx[bi, :n].view(nseg, m, r, 3, h, d)
            for j, gj in enumerate((gq, gk, gv)):
                gb[:, :, g, j, h0:h1] += gj.transpose(1, 2)
        return gx[:, :length], None, None


def _fused_cpu_ok(qkv: torch.Tensor) -> bool:
    return (USE_FUSED_LSE_KERNELS and qkv.device.type == "cpu"
            and _FAST_OK.get(("cpu", qkv.dtype), True)
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"))


def dilated_attention(qkv: torch.Tensor, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]
                      ) -> torch.Tensor:
    """LongNet dilated attention ``[B, L, 3, H, d] -> [B, L, H, d]`` (all branches, merged).

    On CPU this runs :class:`_FusedDilatedAttention` (one padded copy, strided kernel calls);
    elsewhere, or when the fused kernels are unavailable, the composite per-branch path.
    """
    if _fused_cpu_ok(qkv):
        plan = _fused_plan(qkv.shape[1], qkv.shape[3], segment_lengths, dilated_ratios)
        if plan is not None:
            try:
                return _FusedDilatedAttention.apply(qkv, plan[0], plan[1])
            except (RuntimeError, AttributeError, NotImplementedError, TypeError) as exc:
                if "allocate" in str(exc):      # out of memory: the composite path needs more
                    raise
                _FAST_OK[("cpu", qkv.dtype)] = False
                log.info("fused CPU dilated attention unavailable for %s (%s); using the composite path",
                         qkv.dtype, exc)
    outs, lses = [], []
    for w, r in zip(segment_lengths, dilated_ratios):
        o, lse = dilated_branch(qkv, w, r)
        outs.append(o)
        lses.append(lse)
    if len(outs) == 1:
        # a single branch: weight 1 wherever it covers, 0 elsewhere
        return outs[0] * torch.isfinite(lses[0]).unsqueeze(-1).to(outs[0].dtype)
    return merge_branches(outs, lses)


# ----------------------------------------------------------------------------------------------
# modules (names follow GigaPath / torchscale, so state-dict keys match)
# ----------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with ``p = 0``)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
        return self.proj(x)


def sincos_position_embedding(coords: torch.Tensor, dim: int, tile_size: int = 256) -> torch.Tensor:
    """GigaPath's 2-D sin-cos embedding of level-0 pixel ``coords [..., 2]`` -> ``[..., dim]`` fp32.

    Equals row ``floor(x/tile)*1000 + floor(y/tile) + 1`` of GigaPath's table for tiles inside the
    1000 x 1000 grid: ``[sincos(floor(y/tile)), sincos(floor(x/tile))]``, each half ``dim/2`` wide
    (sin block then cos block), computed in float64.
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


# ----------------------------------------------------------------------------------------------
# checkpoint loading and registry
# ----------------------------------------------------------------------------------------------
def _describe_checkpoint(sd: dict[str, torch.Tensor]) -> str:
    """Guess the size of a GigaPath-style state dict, for error messages."""
    parts = []
    w = sd.get("patch_embed.proj.weight")
    if isinstance(w, torch.Tensor) and w.dim() == 2:
        parts.append(f"in_dim={w.shape[1]}, dim={w.shape[0]}")
    layer_ids = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.") and k.split(".")[2].isdigit()}
    if layer_ids:
        parts.append(f"depth={max(layer_ids) + 1}")
    f = sd.get("encoder.layers.0.ffn.fc1.weight")
    if isinstance(f, torch.Tensor) and f.dim() == 2:
        parts.append(f"ffn_dim={f.shape[0]}")
    return ", ".join(parts) if parts else "unknown size"


def load_gigapath_checkpoint(model: LongNetSlideEncoder, path: str | Path, strict: bool = False
                             ) -> tuple[list[str], list[str]]:
    """Load Prov-GigaPath's ``slide_encoder.pth`` (local file only; nothing is downloaded).

    Accepts a state dict stored under ``"model"`` (GigaPath's format), under ``"state_dict"``, or
    bare; a leading ``module.`` prefix is stripped. Uses ``torch.load(weights_only=True)``.

    Returns:
        ``(missing_keys, unexpected_keys)``; both are logged and, when non-empty, warned about.

    Raises:
        InputError: the file is missing or unreadable, a tensor's shape differs from the model's
            (the message names the key, both shapes and the preset to choose), or ``strict`` and
            keys are missing/unexpected.
    """
    path = Path(path)
    fix_download = ("download slide_encoder.pth from the Hugging Face repository prov-gigapath/prov-gigapath "
                    "(after accepting its terms) and point the config's checkpoint at the local file")
    if not path.is_file():
        raise InputError("GigaPath slide-encoder checkpoint not found", file=path, fix=fix_download)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise InputError(f"could not read the slide-encoder checkpoint ({type(exc).__name__}: {exc})",
                         file=path, fix=fix_download) from exc
    sd = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError("the checkpoint holds no state dict of tensors (expected GigaPath's "
                         "slide_encoder.pth: {'model': state_dict})", file=path, fix=fix_download)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = dict(sd)
    sd.pop("pos_embed", None)   # fixed sin-cos table (non-persistent in GigaPath); computed on the fly

    own = model.state_dict()
    cfg = getattr(model, "cfg", None)
    for k, v in sd.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            ours = (f"in_dim={cfg.in_dim}, dim={cfg.dim}, depth={cfg.depth}, ffn_dim={cfg.ffn_dim}"
                    if cfg is not None else "this model")
            raise InputError(
                f"checkpoint tensor '{k}' has shape {tuple(v.shape)} but the model's is {tuple(own[k].shape)} "
                f"(checkpoint: {_describe_checkpoint(sd)}; model: {ours})",
                file=path,
                fix="choose the size preset that matches the checkpoint (LongNetConfig.gigapath(), i.e. "
                    "model.encoder_size: gigapath, for Prov-GigaPath's slide_encoder.pth) and tile features "
                    "of the checkpoint's in_dim")
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if strict and (missing or unexpected):
        raise InputError(f"checkpoint keys do not match the model: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}", file=path,
                         fix="use the size preset matching the checkpoint, or load with strict=False")
    model.load_state_dict(sd, strict=False)
    for name, keys in (("missing", missing), ("unexpected", unexpected)):
        for k in keys:
            log.info("GigaPath checkpoint %s: %s key %s", path, name, k)
    if missing or unexpected:
        warn_input(f"slide-encoder checkpoint loaded with {len(missing)} missing and {len(unexpected)} "
                   f"unexpected keys (missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                   f"unexpected: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''})", file=path,
                   fix="check that the checkpoint is Prov-GigaPath's slide_encoder.pth and the preset matches")
    log.info("loaded GigaPath slide encoder weights from %s (%d tensors)", path, len(sd) - len(unexpected))
    return missing, unexpected


@SLIDE_ENCODERS.register("longnet")
def build_longnet(cfg: dict | None = None) -> LongNetSlideEncoder:
    """Factory for the registry: ``{"preset": "gigapath"|"small", "checkpoint": path|None, **fields}``.

    ``preset`` (alias ``size``) defaults to ``"gigapath"``; ``"small"`` needs ``in_dim``. Other keys
    override :class:`LongNetConfig` fields. A ``checkpoint`` is loaded with
    :func:`load_gigapath_checkpoint` (``strict`` key, default False).
    """
    cfg = dict(cfg or {})
    preset = cfg.pop("preset", cfg.pop("size", "gigapath"))
    ckpt = cfg.pop("checkpoint", None)
    strict = bool(cfg.pop("strict", False))
    fields_ = {f.name for f in dataclasses.fields(LongNetConfig)}
    unknown = sorted(set(cfg) - fields_)
    if unknown:
        raise ConfigError(f"unknown LongNet config keys {unknown}; known: {sorted(fields_)}")
    if preset == "gigapath":
        conf = LongNetConfig.gigapath(**cfg)
    elif preset == "small":
        if "in_dim" not in cfg:
            raise ConfigError("the 'small' LongNet preset needs in_dim (the tile-feature width)")
        conf = LongNetConfig.small(**cfg)
    else:
        raise ConfigError(f"LongNet preset must be 'gigapath' or 'small', got {preset!r}")
    model = LongNetSlideEncoder(conf)
    if ckpt is not None:
        load_gigapath_checkpoint(model, ckpt, strict=strict)
    return model
