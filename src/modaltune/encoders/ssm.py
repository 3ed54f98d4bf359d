"""Pure-PyTorch Mamba v1 block and selective scan (no CUDA extension needed).

MICE's slide aggregator (:mod:`modaltune.encoders.mambamil`) runs one ``mamba_ssm.Mamba`` block
over the patch sequence, but ``mamba-ssm``/``causal-conv1d`` are CUDA-only wheels. This module
writes the block from the maths of Gu & Dao, "Mamba: linear-time sequence modeling with selective
state spaces" (2023, Alg. 2, Sec. 3) with the parameter names, shapes and initialisation of
``mamba_ssm.Mamba`` v1, so state dicts load both ways. On CUDA with ``mamba_ssm`` (and optionally
``causal_conv1d``) importable, :class:`Mamba` calls their kernels (``use_fast_kernels``); CPU and
GPUs without the package use the chunked scan below. Layout: mamba_ssm's ``[B, D, L]``.

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,        y_t = <C_t, h_t> + D u_t

**Chunks.** Inside a chunk ``h_t = P_t (g h_0 + sum_{s<=t} v_s / P_s)`` with ``v = delta u B``
and ``P_t = exp(A sum_{s<=t} delta_s)`` (cumulative log-decays): one cumsum over ``[D, N, T]``
instead of T dependent steps, a dozen vectorised passes per chunk, chunks run in sequence, each
from the last state of the previous one. Time is the last (contiguous) axis because
``cumsum`` along it is several times faster on CPU than along a middle axis.

**Overflow.** ``1/P_s`` grows with the decay accumulated inside the chunk. Rescaling every term
in log space would cost more passes; instead the chunk boundaries come from the inputs: a chunk
ends before its total ``max_{b,d,n} |delta A|`` (first step excluded: it only scales ``h_0``)
exceeds ``max_chunk_decay`` (default 40), or at ``chunk_size`` steps, and exponents are centred
per channel on half the chunk's total, so every factor lies in ``[e^-20, e^20]`` (never inf or
denormal; ``g <= 1`` may underflow to 0 exactly when the true factor is negligible). One step of
any size is always allowed. Costs: the product form has a relative error ~``eps * max_chunk_decay``
per term (measured: same size as the fp32 sequential loop's), and large decays give short chunks
(exact, only slower; at MICE's initialisation chunks hold ~25 steps).

**Memory.** The scan is a :class:`torch.autograd.Function` that saves its inputs and the state at
each chunk start (``D*N`` numbers per chunk). Backward recomputes a chunk's states and runs the
adjoint ``lambda_t = C_t gy_t + exp(delta_{t+1} A) lambda_{t+1}`` with the same closed form
(reverse cumsum), so no ``[L, D, N]`` (let alone ``[L, T, D, N]``) tensor is ever stored: memory
is linear in L with a small constant, plus one chunk's ``[D, N, T]`` work tensors. Computed in
fp32 (fp64 for fp64 inputs) even under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modaltune.errors import ConfigError, InputError

__all__ = ["Mamba", "selective_scan", "selective_scan_ref", "plan_chunks", "fast_kernels_available"]


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


def _no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return contextlib.nullcontext()


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       h0: Tensor | None = None, return_last_state: bool = False):
    """Sequential selective scan: the recurrence written as a plain loop (tests, documentation).

    Args:
        u: inputs ``[B, D, L]``.
        delta: step sizes ``[B, D, L]`` (already softplus-ed, > 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, N, L]``.
        C: output projections ``[B, N, L]``.
        D: skip weights ``[D]`` (optional).
        h0: initial state ``[B, D, N]`` (zeros when None).
        return_last_state: also return the final state.

    Returns:
        ``y [B, D, L]``, or ``(y, h_L)`` when ``return_last_state``.
    """
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) if ys else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D[:, None]
    return (y, h) if return_last_state else y


def plan_chunks(step_decay: Tensor, chunk_size: int, max_chunk_decay: float) -> list[tuple[int, int]]:
    """Chunk boundaries such that no chunk accumulates more than ``max_chunk_decay`` of log-decay.

    Args:
        step_decay: ``[L]`` largest ``|delta_t A|`` over batch, channels and states at each step.
        chunk_size: largest chunk length.
        max_chunk_decay: largest sum of ``step_decay`` over a chunk, its first step excluded.

    Returns:
        ``[(start, end), ...]`` covering ``0..L`` in order.
    """
    bounds, start, acc = [], 0, 0.0
    for t, m in enumerate(step_decay.detach().tolist()):
        if t > start and (t - start >= chunk_size or acc + m > max_chunk_decay):
            bounds.append((start, t))
            start, acc = t, 0.0
        elif t > start:
            acc += m
    if step_decay.numel():
        bounds.append((start, step_decay.numel()))
    return bounds


def _chunk_geometry(dl: Tensor, bounds: list[tuple[int, int]]):
    """Per-chunk cumulative decays for all chunks at once (a few ops instead of a few per chunk).

    Returns ``dc [B, D, L]``: ``sum_{2 <= s <= t} delta_s`` inside each chunk, centred on half the
    chunk's total, and ``e0 [B, D, K]``: first step + half the total (scales the incoming state).
    """
    starts = torch.tensor([s for s, _ in bounds], device=dl.device)
    lens = torch.tensor([e - s for s, e in bounds], device=dl.device)
    steps = torch.arange(int(lens.max()), device=dl.device)
    valid = steps < lens[:, None]  # [K, T]
    pos = torch.where(valid, starts[:, None] + steps, dl.shape[-1])  # padding reads a zero column
    padded = F.pad(dl, (0, 1))[..., pos]  # [B, D, K, T]
    cum = padded.cumsum(-1)
    first = padded[..., :1]
    half = 0.5 * (cum[..., -1:] - first)
    dc = (cum - first - half).flatten(-2)[..., valid.flatten().nonzero().squeeze(1)]
    return dc, (first + half).squeeze(-1)


def _prepare(u: Tensor, dl: Tensor, A: Tensor, bounds: list[tuple[int, int]]):
    """Everything per chunk that is small: centred cumulative decays, delta*u, h0 factors."""
    dc, e0 = _chunk_geometry(dl, bounds)
    A3 = A.unsqueeze(-1)  # [D, N, 1]
    g0 = torch.exp(e0.unsqueeze(2) * A3)  # [B, D, N, K]: exp(A (delta_1 + total/2)) <= 1
    return dc, dl * u, A3, g0


def _decays(dc: Tensor, A3: Tensor) -> Tensor:
    """P = exp(S), S = A * centred cumulative delta: [B, D, N, T], every entry in e^(+-max/2)."""
    return (dc.unsqueeze(2) * A3).exp_()


class _ChunkedScan(torch.autograd.Function):
    """Selective scan without D; saves only inputs and chunk-start states (see the module doc).

    Inside a chunk ``h_t = P_t (h0 g0 + sum_{s<=t} v_s / P_s)`` with ``v = delta u B``.
    """

    @staticmethod
    def forward(ctx, u, dl, A, Bm, Cm, bounds):
        with _no_autocast(u.device):
            dc, dlu, A3, g0 = _prepare(u, dl, A, bounds)
            states = u.new_zeros(len(bounds), u.shape[0], u.shape[1], A.shape[1])
            y = torch.empty_like(u)
            for k, (s, e) in enumerate(bounds):
                P = _decays(dc[..., s:e], A3)
                W = (dlu[..., s:e].unsqueeze(2) * Bm[:, None, :, s:e]).div_(P)
                W[..., 0].addcmul_(states[k], g0[..., k])
                W.cumsum_(-1).mul_(P)  # the states h_t of the chunk
                if k + 1 < len(bounds):
                    states[k + 1] = W[..., -1]
                y[..., s:e] = W.mul_(Cm[:, None, :, s:e]).sum(2)
        ctx.save_for_backward(u, dl, A, Bm, Cm, states)
        ctx.bounds = bounds
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, dl, A, Bm, Cm, states = ctx.saved_tensors
        with _no_autocast(u.device):
            gy = gy.to(u.dtype)
            dc, dlu, A3, g0 = _prepare(u, dl, A, ctx.bounds)
            g1 = torch.exp(dl[..., [s for s, _ in ctx.bounds]].unsqueeze(2) * A3)  # first-step decays
            A_row = A.unsqueeze(1)  # [D, 1, N]
            g_dlu, ddl, dB, dC = (torch.empty_like(t) for t in (u, dl, Bm, Cm))
            dA = torch.zeros_like(A)
            gh = torch.zeros_like(states[0])  # gradient w.r.t. the state leaving the chunk
            for k in reversed(range(len(ctx.bounds))):
                s, e = ctx.bounds[k]
                P = _decays(dc[..., s:e], A3)
                W0 = (dlu[..., s:e].unsqueeze(2) * Bm[:, None, :, s:e]).div_(P)
                h0 = states[k] * g0[..., k]
                W0[..., 0] += h0
                Wc = W0.cumsum(-1)  # h_t / P_t
                Pg = P * gy[..., s:e].unsqueeze(2)
                dC[..., s:e] = (Pg * Wc).sum(1)
                # adjoint: Lam_t = P_t lambda_t = sum_{t' >= t} P_t' C_t' gy_t' (+ outgoing state)
                R = Pg.mul_(Cm[:, None, :, s:e])
                R[..., -1].addcmul_(P[..., -1], gh)
                Lam = R.flip(-1).cumsum_(-1).flip(-1)
                # dL/d(log decay_t) = lambda_t exp(delta_t A) h_{t-1} = Lam_t (Wc_t - W0_t) (+ h0 at t = 1)
                Z = Wc.sub_(W0).mul_(Lam)
                Z[..., 0].addcmul_(Lam[..., 0], h0)
                lam = Lam.div_(P)
                g_dlu[..., s:e] = (lam * Bm[:, None, :, s:e]).sum(2)
                dB[..., s:e] = (lam * dlu[..., s:e].unsqueeze(2)).sum(1)
                ddl[..., s:e] = (A_row @ Z).squeeze(2)
                dA += (Z @ dl[..., s:e].unsqueeze(-1)).squeeze(-1).sum(0)
                gh = lam[..., 0] * g1[..., k]
            ddl += g_dlu * u
        return g_dlu * dl, ddl, dA, dB, dC, None


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *,
                   chunk_size: int = 64, max_chunk_decay: float = 40.0) -> Tensor:
    """Chunked selective scan (same maths and layout as :func:`selective_scan_ref`, linear memory).

    Computed in fp32 (fp64 when an input is fp64) whatever the autocast state; see the module
    docstring for the chunking, overflow and memory design.

    Args:
        u: inputs ``[B, D, L]``.
        delta: step sizes ``[B, D, L]`` (> 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, N, L]``.
        C: output projections ``[B, N, L]``.
        D: skip weights ``[D]`` (optional).
        chunk_size: largest chunk length.
        max_chunk_decay: largest log-decay accumulated inside a chunk (bounds every exponential
            by ``exp(max_chunk_decay / 2)``; at most 120).

    Returns:
        ``y [B, D, L]`` in the compute dtype.
    """
    b, d, n_len = u.shape if u.dim() == 3 else (None, None, None)
    n = A.shape[-1]
    if b is None or delta.shape != u.shape or A.shape != (d, n) or B.shape != (b, n, n_len) or C.shape != B.shape:
        raise InputError(
            f"selective_scan got u {tuple(u.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}",
            fix="pass u, delta [B, D, L], A [D, N], B, C [B, N, L] (mamba_ssm's layout)")
    if chunk_size < 1 or not 0 < max_chunk_decay <= 120:
        raise ConfigError(f"chunk_size must be >= 1 and max_chunk_decay in (0, 120], got {chunk_size}, "
                          f"{max_chunk_decay}; fix: use the defaults 64 and 40")
    dtype = torch.promote_types(torch.promote_types(u.dtype, delta.dtype), torch.float32)
    with _no_autocast(u.device):
        u_, dl, A_, B_, C_ = (t.to(dtype) for t in (u, delta, A, B, C))
        if n_len == 0 or b == 0:
            y = u_ * 0
        else:
            with torch.no_grad():
                step = (dl * A_.abs().amax(1)[:, None]).amax(dim=(0, 1))
            bounds = plan_chunks(step, chunk_size, max_chunk_decay)
            y = _ChunkedScan.apply(u_, dl, A_, B_, C_, bounds)
        if D is not None:
            y = y + u_ * D.to(dtype)[:, None]
    return y


class Mamba(nn.Module):
    """Mamba v1 block (Gu & Dao 2023), state-dict compatible with ``mamba_ssm.Mamba``.

    ``in_proj -> (x, z)``; ``x = SiLU(causal depthwise conv(x))``; ``(dt, B, C) = x_proj(x)``;
    ``delta = softplus(dt_proj(dt))``; ``y = selective_scan(x, delta, -exp(A_log), B, C, D)``;
    ``out_proj(y * SiLU(z))``. Input and output ``[B, L, d_model]``; causal: output t depends on
    inputs <= t only.

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
        chunk_size: largest chunk of the pure-torch scan.
        max_chunk_decay: largest log-decay inside a chunk (see :func:`selective_scan`).
        use_fast_kernels: use ``mamba_ssm`` / ``causal_conv1d`` kernels on CUDA when importable.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 chunk_size: int = 64, max_chunk_decay: float = 40.0, use_fast_kernels: bool = True):
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
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # [B, 2*d_inner, L]: channel-major like mamba_ssm
        xs, z = xz.chunk(2, dim=1)
        kernels = self._kernels(x)
        if kernels is not None and kernels[1] is not None:
            xs = kernels[1](xs.contiguous(), self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        else:
            xs = F.silu(self.conv1d(xs)[..., :length])
        dt, Bm, Cm = self.x_proj(xs.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        Bm, Cm = Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous()  # [B, N, L]
        A = -torch.exp(self.A_log.float())
        if kernels is not None:  # mamba_ssm: softplus, D and the z gate inside the kernel
            dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
            y = kernels[0](xs.contiguous(), dt.contiguous(), A, Bm, Cm, self.D.float(), z=z.contiguous(),
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        else:
            with _no_autocast(x.device):  # delta in fp32: softplus of a bf16 logit loses the small steps
                w, b_ = self.dt_proj.weight, self.dt_proj.bias
                cdt = torch.promote_types(w.dtype, torch.float32)
                delta = F.softplus(F.linear(dt.to(cdt), w.to(cdt), b_.to(cdt))).transpose(1, 2)
                y = selective_scan(xs, delta, A, Bm, Cm, self.D, chunk_size=self.chunk_size,
                                   max_chunk_decay=self.max_chunk_decay)
                y = y * F.silu(z.to(y.dtype))
        return self.out_proj(y.transpose(1, 2).to(self.out_proj.weight.dtype))
