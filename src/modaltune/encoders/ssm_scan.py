"""Chunked selective scan of Mamba v1 in plain PyTorch (CPU, or GPUs without ``mamba_ssm``).

The recurrence (Gu & Dao 2023, Alg. 2), time-major ``[B, L, D]`` like :mod:`modaltune.encoders.ssm`
(mamba_ssm's functions take ``[B, D, L]``), with the two elementwise tails of the Mamba block
folded in as in ``mamba_ssm.selective_scan_fn``::

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,    y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)

**Chunks.** Inside a chunk ``h_t = P_t (g h_0 + sum_{s<=t} v_s / P_s)`` with ``v = delta u B``,
``P_t = exp(A (c_t - m))`` (``c`` the cumulative delta of the chunk, ``m`` the middle of its range)
and ``g = exp(A m)``: one prefix sum over time instead of T dependent steps; chunks run in
sequence, each from the last state of the previous one. On CPU the prefix sums are one GEMM with
a 0/1 triangular matrix (``cumsum`` along time is several times slower), and the centred ``c - m``
of all chunks come from one batched GEMM before the loop; elsewhere, or when fp32 matmuls may use
TF32/bf16, ``cumsum``.

**Cost.** The work is a fixed number of passes over ``[L, N, D]`` elements, so the design counts
passes and per-op overhead: every op runs over one whole chunk ``[T, B, N, D]`` (states stored
n-major, so the contraction over ``n`` is a batched vector-matrix product and the one over ``d`` a
``vecdot``), buffers and their views are built once per chunk length, and the per-chunk views of
the inputs come from one ``split`` each. Forward: 7 passes per chunk (``P`` and ``g`` = mul + exp,
``v / P`` = outer product + div, the prefix GEMM, ``* P``, the contraction with C); backward 17
(the same 5 to recompute, then ``P S`` and its contraction with gy, ``gy C P`` (2), the reverse
GEMM, ``Z = R S``, the A gradient, ``A Z`` summed over n, ``lambda = R / P`` and its two
contractions), where ``S`` is the scaled exclusive prefix and ``R`` the reverse prefix sum of
``gy C P``: the adjoint is ``lambda_t = R_t / P_t`` and ``lambda_t exp(delta_t A) h_{t-1} = R_t S_t``
(``P`` cancels; the gradient entering the previous chunk is ``R_1 g``). By default (``chunk_size``
None) a chunk holds about 2^17 state elements (16 steps at MICE's ``D * N = 512 * 16``): its
buffers stay near L2, and an op's dispatch, a few microseconds, stays small against its ~20-40 us
of work (8 and 32 steps measured slower).

**Threads.** The chunk loop runs with one intra-op thread (the caller's count is restored after;
bulk ops before and after the loop keep it). Its ~25 ops per chunk are small parallel regions:
when another process holds a core, each one waits for its descheduled worker thread (a scheduler
time slice), measured 100-200x slower with 2 threads on 2 busy cores, while on an idle 2-core
machine OpenMP in the loop saved only ~20% of a MambaMIL step.

**Overflow.** ``1/P_s`` grows with the decay accumulated inside the chunk. Rescaling every term in
log space would cost more passes; instead the chunk boundaries come from the inputs: a chunk ends
before its total ``max_{b,d,n} |delta A|`` (first step excluded: it only scales ``h_0``) exceeds
``max_chunk_decay`` (default 40), or at ``chunk_size`` steps, and exponents are centred per
channel on the middle of the chunk's range, so every factor lies in ``[e^-20, e^20]`` (never inf
or denormal; ``g <= 1`` may underflow to 0 exactly when the true factor is negligible). One step
of any size is always allowed. Costs: a relative error ~``eps * max_chunk_decay`` per term (the
size of the fp32 sequential loop's own error at 40), and large decays give short chunks (exact,
only slower).

**Memory.** The scan is a :class:`torch.autograd.Function` that saves its inputs (with ``z``,
also the ungated output ``<C, h> + D u``, ``[B, L, D]``, as mamba_ssm does) and the state at each
chunk start (``N * D`` numbers per chunk: 2 kB per step at MICE's widths and 16-step chunks,
against 32 kB per step for a stored state sequence). Backward recomputes a chunk's states and runs
the adjoint ``lambda_t = C_t gy_t + exp(delta_{t+1} A) lambda_{t+1}`` with the same closed form,
so no ``[L, D, N]`` tensor is ever stored: memory is linear in L, plus four chunk-sized work
buffers. Folding ``D`` and the ``SiLU(z)`` gate removes the full-length temporaries and saved
tensors that autograd would keep for them. Computed in fp32 (fp64 for fp64 inputs) even under
bf16 autocast.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

from modaltune.errors import ConfigError, InputError

__all__ = ["selective_scan", "plan_chunks", "auto_chunk_size"]

_CHUNK_ELEMENTS = 2 ** 17  # state elements per chunk by default: operands of an op stay in L2


def _no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return contextlib.nullcontext()


@contextlib.contextmanager
def _one_thread(device: torch.device):
    """Run the chunk loop with one intra-op CPU thread (see the module docstring), then restore."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


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


def auto_chunk_size(batch: int, d_inner: int, d_state: int) -> int:
    """Default chunk length: about 2^17 state elements per chunk (see the module docstring).

    Args:
        batch: batch size B.
        d_inner: channels D.
        d_state: state size N.

    Returns:
        ``2^17 // (B * D * N)`` clipped to ``[4, 64]``.
    """
    return max(4, min(64, _CHUNK_ELEMENTS // max(1, batch * d_inner * d_state)))


class _Views:
    """Views of the work buffers for one chunk length T (built once per length, reused)."""

    def __init__(self, work: _Work, T: int):
        b, n, d = work.bufs[0].shape[1:]
        Pg, X, H = (buf[:T + 1] for buf in work.bufs[:3])
        self.Pg, self.g, self.P, self.P_last = Pg, Pg[0], Pg[1:], Pg[T]  # buffer 0: [g, P_1..P_T]
        self.X, self.X0, self.X1, self.W, self.W_last = X, X[0], X[1:], X[:T], X[T - 1]  # buffer 1: X, then W
        self.H, self.H3, self.H_last = H[:T], H[:T].view(T * b, n, d), H[T - 1]  # buffer 2: H or S (then Z)
        if len(work.bufs) > 3:  # backward: buffer 3 holds P S, then R, then lambda
            R = work.bufs[3][:T]
            self.R, self.R0, self.R3 = R, R[0], R.view(T * b, n, d)
            self.dA, self.ones = work.dA[:T], work.ones[:T * b]
        if work.gemm:
            self.incl, self.excl, self.rev = work.incl[:T, :T + 1], work.excl[:T, :T + 1], work.rev[:T, :T]


class _Work:
    """Work buffers ``[T_max + 1, B, N, D]`` reused by every chunk, and the sums over time (dim 0).

    On CPU the prefix sums (and the centred cumulative decays) are products with small constant
    matrices (one GEMM over all ``B*N*D`` channels, several times faster than ``cumsum`` along
    time); elsewhere, or when fp32 matmuls may use TF32/bf16 (``torch.set_float32_matmul_precision``),
    ``cumsum``.
    """

    def __init__(self, like: Tensor, At: Tensor, t_max: int, backward: bool):
        b, (n, d) = like.shape[1], At.shape
        self.bufs = [like.new_empty(t_max + 1, b, n, d) for _ in range(4 if backward else 3)]
        self.gemm = like.device.type == "cpu" and (like.dtype == torch.float64
                                                   or torch.get_float32_matmul_precision() == "highest")
        if self.gemm:
            t, j = torch.arange(t_max)[:, None], torch.arange(t_max + 1)[None]
            self.incl, self.excl = (j <= t + 1).to(like.dtype), (j <= t).to(like.dtype)
            self.rev = (j[:, :-1] >= t).to(like.dtype)
        if backward:
            self.dA = like.new_zeros(t_max, b, n, d)  # gradient of A per step position; summed at the end
            self.ones = like.new_ones(t_max * b, 1, n)
        self._views: dict[int, _Views] = {}

    def views(self, T: int) -> _Views:
        """The buffer views for a chunk of ``T`` steps."""
        v = self._views.get(T)
        if v is None:
            v = self._views[T] = _Views(self, T)
        return v

    def chunk(self, v: _Views, E: Tensor, At: Tensor, Bm: Tensor, dlu: Tensor, h0: Tensor) -> None:
        """Decays and scaled inputs of one chunk, into buffers 0 and 1.

        Writes ``g = exp(A m)`` (``<= 1``; may underflow to 0, fine: ``exp(delta_1 A) = P_1 g``),
        ``P_t = exp(A (c_t - m))`` and ``X = [g h0, v_1 / P_1, .., v_T / P_T]`` with ``v = delta u B``.

        Args:
            v: the chunk's views.
            E: ``[m, c_1 - m, .., c_T - m]`` ``[T + 1, B, 1, D]`` (see :func:`_centred`).
            At: ``A`` transposed, ``[N, D]``.
            Bm: input projections ``[T, B, N, 1]``.
            dlu: ``delta * u`` ``[T, B, 1, D]``.
            h0: state entering the chunk ``[B, N, D]``.
        """
        torch.mul(E, At, out=v.Pg).exp_()
        torch.mul(v.g, h0, out=v.X0)
        torch.mul(Bm, dlu, out=v.X1).div_(v.P)

    def prefix(self, v: _Views, inclusive: bool) -> Tensor:
        """``h0-term + sum_{s <= t}`` (or ``s < t``) of ``X``, into buffer 2."""
        T = v.H.shape[0]
        if self.gemm:
            torch.mm(v.incl if inclusive else v.excl, v.X.view(T + 1, -1), out=v.H.view(T, -1))
        elif inclusive:
            torch.cumsum(v.X1, 0, out=v.H).add_(v.X0)
        else:
            v.H[0] = v.X0
            torch.cumsum(v.X1[:-1], 0, out=v.H[1:]).add_(v.X0)
        return v.H

    def reverse(self, v: _Views) -> Tensor:
        """``sum_{t' >= t} W_t'`` over time, into buffer 3."""
        T = v.R.shape[0]
        if self.gemm:
            torch.mm(v.rev, v.W.view(T, -1), out=v.R.view(T, -1))
        else:
            v.R.copy_(v.W.flip(0).cumsum(0).flip(0))
        return v.R


def _centred(dl: Tensor, lengths: list[int], gemm: bool) -> list[Tensor]:
    """Per chunk, ``[m, c_1 - m, .., c_T - m]`` ``[T + 1, B, 1, D]``: the cumulative delta ``c`` of
    the chunk centred on the middle ``m = (c_1 + c_T) / 2`` of its range, and ``m``.

    All chunks at once, zero-padded to the longest (padding changes neither ``c_T`` nor the ``c_t``
    of real steps), with one batched product by a constant matrix (or ``cumsum``); when every chunk
    but the last is full (the usual case), only the last one is copied.
    """
    L, b, d = dl.shape
    K, t_max = len(lengths), max(lengths)
    if gemm:  # m = sum_s dl_s (1/2 + [s = 1]/2),  c_t - m = sum_s dl_s ([s <= t] - 1/2 - [s = 1]/2)
        t, s = torch.arange(t_max)[:, None], torch.arange(t_max)[None]
        first = 0.5 * (s == 0).double()
        M = torch.cat([0.5 + first, (s <= t).double() - 0.5 - first]).to(dl)

    def centre(x: Tensor) -> list[Tensor]:  # x [k * t_max, B, D]: k zero-padded chunks
        x = x.view(-1, t_max, b * d)
        if gemm:
            E = torch.matmul(M, x)
        else:
            cum = x.cumsum(1)
            mid = cum[:, :1].add(cum[:, -1:]).mul_(0.5)
            E = torch.cat([mid, cum.sub_(mid)], 1)
        return list(E.view(-1, t_max + 1, b, 1, d).unbind(0))

    if all(n == t_max for n in lengths[:-1]):
        full = L // t_max
        E = centre(dl[:full * t_max]) if full else []
        if full < K:
            E += centre(torch.cat([dl[full * t_max:], dl.new_zeros(t_max - lengths[-1], b, d)]))
    else:
        lens = torch.tensor(lengths)
        offset = torch.arange(K) * t_max - (lens.cumsum(0) - lens)  # padded row - step, per chunk
        pad = dl.new_zeros(K * t_max, b, d)
        E = centre(pad.index_copy_(0, (torch.arange(L) + offset.repeat_interleave(lens)).to(dl.device), dl))
    return [e if n == t_max else e[:n + 1] for e, n in zip(E, lengths)]


class _ChunkedScan(torch.autograd.Function):
    """Selective scan with the D skip and the SiLU(z) gate folded in (see the module docstring).

    Works time-major and batch-second (``[L, B, ...]``, a free view for B = 1) so that a chunk is a
    contiguous slice of every per-step tensor; the per-chunk views come from one ``split`` each.
    """

    @staticmethod
    def forward(ctx, u, dl, A, Bm, Cm, D, z, bounds):
        with _no_autocast(u.device):
            lengths = [e - s for s, e in bounds]
            L, b, (d, n) = u.shape[1], u.shape[0], A.shape
            u_, dl_, Bm_, Cm_ = (t.transpose(0, 1).contiguous() for t in (u, dl, Bm, Cm))
            At = A.t().contiguous()
            dlu = dl_ * u_
            work = _Work(u_, At, max(lengths), backward=False)
            states = u_.new_empty(len(bounds), b, n, d)
            states[0] = 0
            y = torch.empty_like(u_)
            rows = [t * b for t in lengths]
            chunks = zip(_centred(dl_, lengths, work.gemm), Bm_.unsqueeze(-1).split(lengths),
                         dlu.unsqueeze(2).split(lengths), Cm_.view(L * b, 1, n).split(rows),
                         y.view(L * b, 1, d).split(rows), states.unbind(0), [*states.unbind(0)[1:], None])
            with _one_thread(u.device):
                for T, (E_k, B_k, dlu_k, C_k, y_k, h0, h_end) in zip(lengths, chunks):
                    v = work.views(T)
                    work.chunk(v, E_k, At, B_k, dlu_k, h0)
                    work.prefix(v, inclusive=True).mul_(v.P)  # the states h_t of the chunk
                    if h_end is not None:
                        h_end.copy_(v.H_last)
                    torch.bmm(C_k, v.H3, out=y_k)
            if D is not None:
                y.addcmul_(u_, D)
            out = y if z is None else F.silu(z.transpose(0, 1)).mul_(y)
        ctx.save_for_backward(u, dl, A, Bm, Cm, D, z, states, None if z is None else y)
        ctx.lengths = lengths
        return out.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        u, dl, A, Bm, Cm, D, z, states, y = ctx.saved_tensors
        lengths = ctx.lengths
        with _no_autocast(u.device):
            L, b, (d, n) = u.shape[1], u.shape[0], A.shape
            u_, dl_, Bm_, Cm_ = (t.transpose(0, 1).contiguous() for t in (u, dl, Bm, Cm))
            gy = gout.to(u.dtype).transpose(0, 1)
            dz = None
            if z is not None:  # out = y * SiLU(z)
                z_ = z.transpose(0, 1)
                dz = gy * y
                dz = torch.ops.aten.silu_backward.grad_input(dz, z_, grad_input=dz).transpose(0, 1)
                gy = F.silu(z_).mul_(gy)
            gy = gy.contiguous()
            At = A.t().contiguous()
            dlu = dl_ * u_
            work = _Work(u_, At, max(lengths), backward=True)
            g_dlu, ddl, dB, dC = (torch.empty_like(t) for t in (u_, dl_, Bm_, Cm_))
            dD = None if D is None else torch.mul(gy, u_, out=g_dlu).sum((0, 1))  # g_dlu, ddl: scratch for now
            gy_dlu = torch.mul(gy, dlu, out=ddl).sum(2, keepdim=True)
            gh = torch.zeros_like(states[0])  # gradient w.r.t. the state leaving the chunk
            rows = [t * b for t in lengths]
            chunks = list(zip(
                lengths, _centred(dl_, lengths, work.gemm), states.unbind(0), dl_.unsqueeze(2).split(lengths),
                dlu.unsqueeze(2).split(lengths), Bm_.unsqueeze(-1).split(lengths), Bm_.view(L * b, 1, n).split(rows),
                Cm_.unsqueeze(-1).split(lengths), gy.unsqueeze(2).split(lengths), dC.split(lengths),
                dB.split(lengths), ddl.view(L * b, 1, d).split(rows), g_dlu.view(L * b, 1, d).split(rows)))
            with _one_thread(u.device):
                for T, E_k, h0, dl_k, dlu_k, B_k, B3_k, C_k, gy_k, dC_k, dB_k, ddl_k, g_dlu_k in reversed(chunks):
                    v = work.views(T)
                    work.chunk(v, E_k, At, B_k, dlu_k, h0)
                    S = work.prefix(v, inclusive=False)  # exp(delta_t A) h_{t-1} = P_t S_t
                    torch.linalg.vecdot(torch.mul(v.P, S, out=v.R), gy_k, out=dC_k)  # + the v_t part, below
                    # adjoint lambda_t = dL/dh_t = R_t / P_t, R_t = sum_{t' >= t} P_t' C_t' gy_t' (+ outgoing state)
                    torch.mul(C_k, gy_k, out=v.W).mul_(v.P)
                    v.W_last.addcmul_(v.P_last, gh)
                    R = work.reverse(v)
                    torch.mul(v.R0, v.g, out=gh)  # lambda_1 exp(delta_1 A) = (R_1 / P_1) P_1 g
                    Z = S.mul_(R)  # dL/d(log decay_t) = lambda_t exp(delta_t A) h_{t-1}
                    v.dA.addcmul_(Z, dl_k)
                    torch.bmm(v.ones, Z.mul_(At).view(T * b, n, d), out=ddl_k)  # sum over n of A Z
                    lam = R.div_(v.P)
                    torch.bmm(B3_k, v.R3, out=g_dlu_k)
                    torch.linalg.vecdot(lam, dlu_k, out=dB_k)
            ddl.addcmul_(g_dlu, u_)
            dC.addcmul_(Bm_, gy_dlu)
            du = g_dlu.mul_(dl_)
            if D is not None:
                du.addcmul_(gy, D)
        return (du.transpose(0, 1), ddl.transpose(0, 1), work.dA.sum((0, 1)).t(), dB.transpose(0, 1),
                dC.transpose(0, 1), dD, dz, None)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, *, chunk_size: int | None = None, max_chunk_decay: float = 40.0) -> Tensor:
    """Chunked selective scan (same maths and layout as :func:`~.ssm_reference.selective_scan_ref`, linear memory).

    Computed in fp32 (fp64 when an input is fp64) whatever the autocast state; see the module
    docstring for the chunking, overflow and memory design.

    Args:
        u: inputs ``[B, L, D]``.
        delta: step sizes ``[B, L, D]`` (> 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, L, N]``.
        C: output projections ``[B, L, N]``.
        D: skip weights ``[D]`` (optional).
        z: gate ``[B, L, D]`` (optional): the output is multiplied by ``SiLU(z)``.
        chunk_size: largest chunk length (None: :func:`auto_chunk_size`, cache-sized).
        max_chunk_decay: largest log-decay accumulated inside a chunk (bounds every exponential
            by ``exp(max_chunk_decay / 2)``; at most 120).

    Returns:
        ``y [B, L, D]`` in the compute dtype.
    """
    b, n_len, d = u.shape if u.dim() == 3 else (None, None, None)
    n = A.shape[-1]
    if (b is None or delta.shape != u.shape or A.shape != (d, n) or B.shape != (b, n_len, n) or C.shape != B.shape
            or (z is not None and z.shape != u.shape)):
        raise InputError(
            f"selective_scan got u {tuple(u.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}" + ("" if z is None else f", z {tuple(z.shape)}"),
            fix="pass u, delta (and z) [B, L, D], A [D, N], B, C [B, L, N] (time-major; mamba_ssm uses [B, D, L])")
    if chunk_size is None:
        chunk_size = auto_chunk_size(b, d, n)
    if chunk_size < 1 or not 0 < max_chunk_decay <= 120:
        raise ConfigError(f"chunk_size must be >= 1 and max_chunk_decay in (0, 120], got {chunk_size}, "
                          f"{max_chunk_decay}; fix: use the defaults (None: auto) and 40")
    dtype = torch.promote_types(torch.promote_types(u.dtype, delta.dtype), torch.float32)
    with _no_autocast(u.device):
        u_, dl, A_, B_, C_ = (t.to(dtype).contiguous() for t in (u, delta, A, B, C))
        D_ = None if D is None else D.to(dtype)
        z_ = None if z is None else z.to(dtype)
        if n_len == 0 or b == 0:
            y = u_ * 0 if D_ is None else u_ * D_
            return y if z_ is None else y * F.silu(z_)
        with torch.no_grad():
            step = (dl * A_.abs().amax(1)).amax(dim=(0, 2))
        return _ChunkedScan.apply(u_, dl, A_, B_, C_, D_, z_, plan_chunks(step, chunk_size, max_chunk_decay))
