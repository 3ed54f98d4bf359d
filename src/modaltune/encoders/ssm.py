"""Pure-PyTorch Mamba v1 block and selective scan (no CUDA extension needed).

MICE's slide aggregator (:mod:`modaltune.encoders.mambamil`) runs one ``mamba_ssm.Mamba`` block
over the patch sequence, but ``mamba-ssm``/``causal-conv1d`` are CUDA-only wheels. This module
writes the block from the maths of Gu & Dao, "Mamba: linear-time sequence modeling with selective
state spaces" (2023, Alg. 2, Sec. 3) with the parameter names, shapes and initialisation of
``mamba_ssm.Mamba`` v1, so state dicts load both ways. On CUDA with ``mamba_ssm`` (and optionally
``causal_conv1d``) importable, :class:`Mamba` calls their kernels (``use_fast_kernels``); CPU and
GPUs without the package use the chunked scan below (time-major ``[B, L, D]``; mamba_ssm's
functions take ``[B, D, L]``).

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,        y_t = <C_t, h_t> + D u_t

**Chunks.** Inside a chunk ``h_t = P_t (g h_0 + sum_{s<=t} v_s / P_s)`` with ``v = delta u B``
and ``P_t = exp(A sum_{s<=t} delta_s)`` (cumulative log-decays): one prefix sum over time instead
of T dependent steps, about ten vectorised passes over the chunk's ``[T, D, N]`` elements forward
and twenty backward; chunks run in sequence, each from the last state of the previous one. On CPU
the prefix sums are one GEMM with a 0/1 triangular matrix (``cumsum`` along time is several times
slower), and the work tensors are reused buffers.

**Overflow.** ``1/P_s`` grows with the decay accumulated inside the chunk. Rescaling every term
in log space would cost more passes; instead the chunk boundaries come from the inputs: a chunk
ends before its total ``max_{b,d,n} |delta A|`` (first step excluded: it only scales ``h_0``)
exceeds ``max_chunk_decay`` (default 40), or at ``chunk_size`` steps, and exponents are centred
per channel on the middle of the chunk's range, so every factor lies in ``[e^-20, e^20]`` (never
inf or denormal; ``g <= 1`` may underflow to 0 exactly when the true factor is negligible). One
step of any size is always allowed. Costs: a relative error ~``eps * max_chunk_decay`` per term
(measured: the size of the fp32 sequential loop's own error at 40, 2.5x it at 80), and large
decays give short chunks (exact, only slower; at MICE's initialisation chunks hold ~25 steps).

**Memory.** The scan is a :class:`torch.autograd.Function` that saves its inputs and the state at
each chunk start (``D*N`` numbers per chunk). Backward recomputes a chunk's states and runs the
adjoint ``lambda_t = C_t gy_t + exp(delta_{t+1} A) lambda_{t+1}`` with the same closed form
(reverse prefix sum), so no ``[L, D, N]`` (let alone ``[L, T, D, N]``) tensor is ever stored:
memory is linear in L with a small constant, plus a few ``[T, D, N]`` work buffers. Computed in
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
        u: inputs ``[B, L, D]``.
        delta: step sizes ``[B, L, D]`` (already softplus-ed, > 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, L, N]``.
        C: output projections ``[B, L, N]``.
        D: skip weights ``[D]`` (optional).
        h0: initial state ``[B, D, N]`` (zeros when None).
        return_last_state: also return the final state.

    Returns:
        ``y [B, L, D]``, or ``(y, h_L)`` when ``return_last_state``.
    """
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) if ys else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D
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


class _Work:
    """Work buffers ``[B, T_max + 1, D, N]`` reused by every chunk (no allocation, and warm memory,
    per op) and the prefix sums over time (dim 1).

    On CPU the prefix sums are products with 0/1 triangular matrices (one GEMM over all ``D*N``
    channels, several times faster than ``cumsum`` along a middle axis); elsewhere, or when fp32
    matmuls may use TF32/bf16 (``torch.set_float32_matmul_precision``), ``cumsum``.
    """

    def __init__(self, like: Tensor, A: Tensor, t_max: int, n_buffers: int):
        b, (d, n) = like.shape[0], A.shape
        self.bufs = [like.new_empty(b, t_max + 1, d, n) for _ in range(n_buffers)]
        self.gemm = like.device.type == "cpu" and (like.dtype == torch.float64
                                                   or torch.get_float32_matmul_precision() == "highest")
        if self.gemm:
            t, j = torch.arange(t_max)[:, None], torch.arange(t_max + 1)[None]
            self.incl, self.excl = (j <= t + 1).to(like.dtype), (j <= t).to(like.dtype)
            self.rev = (j[:, :-1] >= t).to(like.dtype)

    def chunk(self, dl: Tensor, dlu: Tensor, A: Tensor, Bm: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        """Decays ``P_t = exp(A (c_t - m))`` (``c`` = cumulative delta of the chunk, ``m`` the middle
        of its range, so every entry lies in ``e^(+-max_chunk_decay / 2)``) and
        ``X = [exp(A m) h0, v_1 / P_1, .., v_T / P_T]`` with ``v = delta u B``; buffers 0 and 1."""
        T = dl.shape[1]
        cum = dl.cumsum(1)
        mid = 0.5 * (cum[:, :1] + cum[:, -1:])
        P = torch.mul((cum - mid).unsqueeze(-1), A, out=self.bufs[0][:, :T]).exp_()
        X = self.bufs[1][:, :T + 1]
        torch.mul(h0, torch.exp(mid[:, 0, :, None] * A), out=X[:, 0])  # exp(A m) <= 1: may underflow, fine
        torch.mul(dlu.unsqueeze(-1), Bm.unsqueeze(2), out=X[:, 1:])
        X[:, 1:].div_(P)
        return P, X

    def states(self, X: Tensor, inclusive: bool, buf: int) -> Tensor:
        """``X = [h0-term, w_1..w_T]`` -> ``h0-term + sum_{s <= t}`` (or ``s < t``) of w, into a buffer."""
        b, n, d, m = X.shape
        out = self.bufs[buf][:, :n - 1]
        if self.gemm:
            M = (self.incl if inclusive else self.excl)[:n - 1, :n]
            torch.matmul(M, X.view(b, n, d * m), out=out.view(b, n - 1, d * m))
            return out
        torch.cumsum(X[:, 1:], 1, out=out).add_(X[:, :1])
        return out if inclusive else torch.cat([X[:, :1], out[:, :-1]], 1)

    def reverse(self, R: Tensor, buf: int) -> Tensor:
        """``sum_{t' >= t} R_t'`` over dim 1 of ``R [B, T, D, N]``, into a buffer."""
        b, n, d, m = R.shape
        if not self.gemm:
            return R.flip(1).cumsum_(1).flip(1)
        out = self.bufs[buf][:, :n]
        torch.matmul(self.rev[:n, :n], R.view(b, n, d * m), out=out.view(b, n, d * m))
        return out


class _ChunkedScan(torch.autograd.Function):
    """Selective scan without D; saves only inputs and chunk-start states (see the module doc).

    Inside a chunk ``h_t = P_t (g h0 + sum_{s<=t} v_s / P_s)`` with ``v = delta u B``.
    """

    @staticmethod
    def forward(ctx, u, dl, A, Bm, Cm, bounds):
        with _no_autocast(u.device):
            dlu = dl * u
            work = _Work(u, A, max(e - s for s, e in bounds), 3)
            states = u.new_zeros(len(bounds), u.shape[0], *A.shape)
            y = torch.empty_like(u)
            for k, (s, e) in enumerate(bounds):
                P, X = work.chunk(dl[:, s:e], dlu[:, s:e], A, Bm[:, s:e], states[k])
                H = work.states(X, inclusive=True, buf=2).mul_(P)  # the states h_t of the chunk
                if k + 1 < len(bounds):
                    states[k + 1] = H[:, -1]
                y[:, s:e] = (H @ Cm[:, s:e, :, None]).squeeze(-1)
        ctx.save_for_backward(u, dl, A, Bm, Cm, states)
        ctx.bounds = bounds
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, dl, A, Bm, Cm, states = ctx.saved_tensors
        with _no_autocast(u.device):
            gy, dlu = gy.to(u.dtype).contiguous(), dl * u
            work = _Work(u, A, max(e - s for s, e in ctx.bounds), 5)
            g_dlu, ddl, dB, dC = (torch.empty_like(t) for t in (u, dl, Bm, Cm))
            dA = torch.zeros_like(A)
            gh = torch.zeros_like(states[0])  # gradient w.r.t. the state leaving the chunk
            for k in reversed(range(len(ctx.bounds))):
                s, e = ctx.bounds[k]
                P, X = work.chunk(dl[:, s:e], dlu[:, s:e], A, Bm[:, s:e], states[k])
                Y = work.states(X, inclusive=False, buf=2).mul_(P)  # exp(delta_t A) h_{t-1} = h_t - v_t
                dC[:, s:e] = (gy[:, s:e, None, :] @ Y).squeeze(-2)  # + the v_t part, after the loop
                # adjoint lambda_t = dL/dh_t = sum_{t' >= t} (P_t' / P_t) C_t' gy_t' (+ outgoing state)
                R = torch.mul(gy[:, s:e, :, None], Cm[:, s:e, None, :], out=work.bufs[3][:, :e - s]).mul_(P)
                R[:, -1].addcmul_(P[:, -1], gh)
                lam = work.reverse(R, buf=4).div_(P)
                Z = Y.mul_(lam)  # dL/d(log decay_t) = lambda_t exp(delta_t A) h_{t-1}
                g_dlu[:, s:e] = (lam @ Bm[:, s:e, :, None]).squeeze(-1)
                dB[:, s:e] = (dlu[:, s:e, None, :] @ lam).squeeze(-2)
                dA += torch.mul(Z, dl[:, s:e, :, None], out=work.bufs[3][:, :e - s]).sum((0, 1))
                ddl[:, s:e] = Z.mul_(A).sum(-1)
                gh = lam[:, 0] * torch.exp(dl[:, s, :, None] * A)
            ddl += g_dlu * u
            dC += Bm * (gy * dlu).sum(2, keepdim=True)
        return g_dlu * dl, ddl, dA, dB, dC, None


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *,
                   chunk_size: int = 64, max_chunk_decay: float = 40.0) -> Tensor:
    """Chunked selective scan (same maths and layout as :func:`selective_scan_ref`, linear memory).

    Computed in fp32 (fp64 when an input is fp64) whatever the autocast state; see the module
    docstring for the chunking, overflow and memory design.

    Args:
        u: inputs ``[B, L, D]``.
        delta: step sizes ``[B, L, D]`` (> 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, L, N]``.
        C: output projections ``[B, L, N]``.
        D: skip weights ``[D]`` (optional).
        chunk_size: largest chunk length.
        max_chunk_decay: largest log-decay accumulated inside a chunk (bounds every exponential
            by ``exp(max_chunk_decay / 2)``; at most 120).

    Returns:
        ``y [B, L, D]`` in the compute dtype.
    """
    b, n_len, d = u.shape if u.dim() == 3 else (None, None, None)
    n = A.shape[-1]
    if b is None or delta.shape != u.shape or A.shape != (d, n) or B.shape != (b, n_len, n) or C.shape != B.shape:
        raise InputError(
            f"selective_scan got u {tuple(u.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}",
            fix="pass u, delta [B, L, D], A [D, N], B, C [B, L, N] (time-major; mamba_ssm uses [B, D, L])")
    if chunk_size < 1 or not 0 < max_chunk_decay <= 120:
        raise ConfigError(f"chunk_size must be >= 1 and max_chunk_decay in (0, 120], got {chunk_size}, "
                          f"{max_chunk_decay}; fix: use the defaults 64 and 40")
    dtype = torch.promote_types(torch.promote_types(u.dtype, delta.dtype), torch.float32)
    with _no_autocast(u.device):
        u_, dl, A_, B_, C_ = (t.to(dtype).contiguous() for t in (u, delta, A, B, C))
        if n_len == 0 or b == 0:
            y = u_ * 0
        else:
            with torch.no_grad():
                step = (dl * A_.abs().amax(1)).amax(dim=(0, 2))
            y = _ChunkedScan.apply(u_, dl, A_, B_, C_, plan_chunks(step, chunk_size, max_chunk_decay))
        if D is not None:
            y = y + u_ * D.to(dtype)
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
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, d_inner] each
        kernels = self._kernels(x)
        w = self.conv1d.weight[:, 0]  # [d_inner, d_conv]: tap k sees x_{t - d_conv + 1 + k}
        if kernels is not None and kernels[1] is not None:
            xs = kernels[1](xs.transpose(1, 2).contiguous(), w, self.conv1d.bias, activation="silu").transpose(1, 2)
        else:  # causal depthwise convolution as d_conv shifted products: time-major, no transposes
            xp = F.pad(xs, (0, 0, self.d_conv - 1, 0))
            conv = xp[:, :length] * w[:, 0]
            for j in range(1, self.d_conv):
                conv = conv.addcmul(xp[:, j:j + length], w[:, j])
            xs = F.silu(conv if self.conv1d.bias is None else conv + self.conv1d.bias)
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
                y = selective_scan(xs, delta, A, Bm, Cm, self.D, chunk_size=self.chunk_size,
                                   max_chunk_decay=self.max_chunk_decay)
                y = y * F.silu(z.to(y.dtype))
        return self.out_proj(y.to(self.out_proj.weight.dtype))
