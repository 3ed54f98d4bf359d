"""Pure-PyTorch Mamba v1 block (no CUDA extension needed).

MICE's slide aggregator (:mod:`modaltune.encoders.mambamil`) runs one ``mamba_ssm.Mamba`` block
over the patch sequence, but ``mamba-ssm``/``causal-conv1d`` are CUDA-only wheels. This module
writes the block from the maths of Gu & Dao, "Mamba: linear-time sequence modeling with selective
state spaces" (2023, Alg. 2, Sec. 3) with the parameter names, shapes and initialisation of
``mamba_ssm.Mamba`` v1, so state dicts load both ways. On CUDA with ``mamba_ssm`` (and optionally
``causal_conv1d``) importable, :class:`Mamba` calls their kernels (``use_fast_kernels``); CPU and
GPUs without the package use the chunked selective scan of :mod:`modaltune.encoders.ssm_scan`
(time-major ``[B, L, D]``; mamba_ssm's functions take ``[B, D, L]``), which, like mamba_ssm's
kernel, applies the ``D`` skip and the ``SiLU(z)`` gate itself, saving full-length passes and
saved tensors (that module's docstring describes the chunking, overflow, memory and threading
design). The causal depthwise convolution + SiLU is, like ``causal_conv1d_fn``, one autograd
Function: ``d_conv`` shifted in-place products, time-major (no transposes, no padded copy), that
saves only its inputs and recomputes the pre-activation in backward.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modaltune.encoders.ssm_reference import selective_scan_ref
from modaltune.encoders.ssm_scan import _no_autocast, auto_chunk_size, plan_chunks, selective_scan
from modaltune.errors import ConfigError, InputError

__all__ = ["Mamba", "selective_scan", "selective_scan_ref", "plan_chunks", "auto_chunk_size",
           "fast_kernels_available"]


@functools.lru_cache(maxsize=1)
def _fast_kernels():
    """(selective_scan_fn, causal_conv1d_fn or None) from the CUDA packages, or None."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA build raising at import
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    return selective_scan_fn, causal_conv1d_fn


def fast_kernels_available() -> bool:
    """Whether ``mamba_ssm``'s selective-scan kernel can be imported here."""
    return _fast_kernels() is not None


def _causal_conv(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """Causal depthwise convolution of ``x [B, L, D]`` (time-major) with ``w [D, K]``: tap ``j`` sees
    ``x_{t - K + 1 + j}``, as ``K`` shifted in-place products (no padded copy)."""
    K, L = w.shape[1], x.shape[1]
    out = x * w[:, K - 1]
    for j in range(max(0, K - 1 - L), K - 1):
        s = K - 1 - j
        out[:, s:].addcmul_(x[:, :L - s], w[:, j])
    return out if bias is None else out.add_(bias)


class _CausalConvSiLU(torch.autograd.Function):
    """``SiLU(causal depthwise conv(x) + bias)``, time-major (``causal_conv1d_fn`` with ``activation="silu"``).

    Saves only its inputs and recomputes the pre-activation in backward: no padded copy, and a
    handful of full-length passes instead of the ~25 (with as many fresh allocations) that
    autograd records for the same expression.
    """

    @staticmethod
    def forward(ctx, x, w, bias):
        ctx.save_for_backward(x, w, bias)
        return F.silu(_causal_conv(x, w, bias), inplace=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        x, w, bias = ctx.saved_tensors
        K, L = w.shape[1], x.shape[1]
        pre = _causal_conv(x, w, bias)
        g = torch.ops.aten.silu_backward.grad_input(gout.to(pre.dtype), pre, grad_input=pre)
        dx = g * w[:, K - 1]
        dw = torch.empty_like(w)
        scratch = torch.mul(g, x, out=dx.new_empty(dx.shape))
        dw[:, K - 1] = scratch.sum((0, 1))
        for j in range(K - 1):
            s = K - 1 - j
            if s >= L:
                dw[:, j] = 0
                continue
            dx[:, :L - s].addcmul_(g[:, s:], w[:, j])
            dw[:, j] = torch.mul(g[:, s:], x[:, :L - s], out=scratch[:, :L - s]).sum((0, 1))
        return dx.to(x.dtype), dw, None if bias is None else g.sum((0, 1)).to(bias.dtype)


class Mamba(nn.Module):
    """Mamba v1 block (Gu & Dao 2023), state-dict compatible with ``mamba_ssm.Mamba``.

    ``in_proj -> (x, z)``; ``x = SiLU(causal depthwise conv(x))``; ``(dt, B, C) = x_proj(x)``;
    ``delta = softplus(dt_proj(dt))``; ``y = selective_scan(x, delta, -exp(A_log), B, C, D, z)``
    (``(<C, h> + D x) * SiLU(z)``); ``out_proj(y)``. Input and output ``[B, L, d_model]``; causal:
    output t depends on inputs <= t only.

    Args:
        d_model: model width.
        d_state: SSM state size N.
        d_conv: causal convolution width.
        expand: ``d_inner = expand * d_model``.
        dt_rank: rank of the delta projection (``"auto"`` = ``ceil(d_model / 16)``).
        dt_min: smallest initial step size.
        dt_max: largest initial step size.
        dt_init: ``"random"`` (uniform) or ``"constant"`` initialisation of ``dt_proj.weight``.
        dt_scale: scale of that initialisation.
        dt_init_floor: floor of the initial step sizes.
        conv_bias: bias in the convolution.
        bias: bias in ``in_proj`` and ``out_proj``.
        chunk_size: largest chunk of the pure-torch scan (None: cache-sized, see
            :func:`~modaltune.encoders.ssm_scan.auto_chunk_size`).
        max_chunk_decay: largest log-decay inside a chunk (see :func:`selective_scan`).
        use_fast_kernels: use ``mamba_ssm`` / ``causal_conv1d`` kernels on CUDA when importable.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 chunk_size: int | None = None, max_chunk_decay: float = 40.0, use_fast_kernels: bool = True):
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ConfigError(f"Mamba dt_init must be 'random' or 'constant', got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"Mamba needs 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk_size, self.max_chunk_decay, self.use_fast_kernels = chunk_size, max_chunk_decay, use_fast_kernels
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        self.out_proj = nn.Linear(di, d_model, bias=bias)
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                nn.init.constant_(self.dt_proj.weight, std)
            else:
                nn.init.uniform_(self.dt_proj.weight, -std, std)
            log_dt = torch.rand(di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            dt = log_dt.exp().clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(di))
        self.D._no_weight_decay = True

    def _kernels(self, x: Tensor):
        """The CUDA kernels to use for ``x``, or None for the pure-torch path."""
        if not self.use_fast_kernels or x.device.type != "cuda":
            return None
        return _fast_kernels()

    def forward(self, x: Tensor) -> Tensor:
        """Run the block on ``x [B, L, d_model]`` -> ``[B, L, d_model]``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise InputError(f"Mamba expects [batch, length, {self.d_model}], got {tuple(x.shape)}",
                             fix="add the batch dimension (x[None]) or project the features to d_model")
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, d_inner] each
        kernels = self._kernels(x)
        w = self.conv1d.weight[:, 0]  # [d_inner, d_conv]: tap k sees x_{t - d_conv + 1 + k}
        if kernels is not None and kernels[1] is not None:
            xs = kernels[1](xs.transpose(1, 2).contiguous(), w, self.conv1d.bias, activation="silu").transpose(1, 2)
        else:  # causal depthwise convolution as d_conv shifted products: time-major, no transposes
            xs = _CausalConvSiLU.apply(xs, w, self.conv1d.bias)
        xs = xs.contiguous()
        dt, Bm, Cm = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())
        if kernels is not None:  # mamba_ssm layout [B, D, L]; softplus, D and the z gate inside the kernel
            y = kernels[0](*(t.transpose(1, 2).contiguous() for t in (xs, dt @ self.dt_proj.weight.t())), A,
                           *(t.transpose(1, 2).contiguous() for t in (Bm, Cm)), self.D.float(),
                           z=z.transpose(1, 2).contiguous(), delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True).transpose(1, 2)
        else:
            with _no_autocast(x.device):  # delta in fp32: softplus of a bf16 logit loses the small steps
                w, b_ = self.dt_proj.weight, self.dt_proj.bias
                cdt = torch.promote_types(w.dtype, torch.float32)
                delta = F.softplus(F.linear(dt.to(cdt), w.to(cdt), b_.to(cdt)))
                y = selective_scan(xs, delta, A, Bm, Cm, self.D, z, chunk_size=self.chunk_size,
                                   max_chunk_decay=self.max_chunk_decay)
        return self.out_proj(y.to(self.out_proj.weight.dtype))
