"""The fused CPU dilated attention: all branches in one autograd function over strided views.

On CPU the whole dilated attention of a layer is one autograd function
(:class:`_FusedDilatedAttention`): ``qkv`` is zero-padded once, every (batch row, branch, head
group) is a flash-kernel call on a *strided view* of it (the head group ``g`` of branch ``r`` is
``x.view(nseg, m, r, 3, H, d)[:, :, g, :, heads_g]``, no gather), outputs are accumulated into
the merged result with their branch weights, and the backward calls the flash backward kernel
per view and adds into one gradient buffer. This removes the per-branch padding copies, head
gathers, dense zero-filled scatters and their zero-filled gradients of the composite path
(:mod:`.dilated_attention`), which took most of the time of a training step (4k patches,
12 layers x 3 tasks: 67 s -> 37 s on 2 cores; see ``benchmarks/README.md``). Both paths compute
the same values and gradients (tested against each other and against a loop reference).

The path is used only when :data:`.kernels.USE_FUSED_LSE_KERNELS` is on, the private CPU flash
kernels (forward and backward) exist, and :func:`_fused_plan` can express every branch inside
one padded copy; otherwise :func:`try_fused_dilated_attention` returns ``None`` and the caller
takes the composite path.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch.nn import functional as F

from . import kernels

__all__ = ["try_fused_dilated_attention"]

log = logging.getLogger(__name__)


def _fused_plan(length: int, heads: int, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]
                ) -> tuple[int, list[tuple[int, int, int, list[tuple[int, int, int]]]]] | None:
    """Layout of every branch inside one zero-padded copy of ``qkv`` (``None`` if not expressible).

    Returns ``(P, branches)``: ``P`` = padded length, each branch ``(nseg, m, r, groups)`` with
    ``groups`` = ``[(g, h0, h1)]`` (offset ``g`` attended by heads ``h0:h1``). Branch ``(w, r)`` reads
    the prefix ``[:nseg * m * r]`` of the padded sequence viewed as ``[nseg, m, r]``; that equals the
    per-segment padding of :func:`.dilated_attention.dilated_branch` whenever there is one segment
    or ``r`` divides ``w`` (always true below 185,363 tokens for GigaPath's lengths).
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

    Same function and gradient as :func:`.dilated_attention.dilated_branch` +
    :func:`.dilated_attention.merge_branches` (merge weights constant), but every (batch row,
    branch, head group) is one kernel call on a strided view of a single zero-padded ``qkv``: no
    per-branch padding, gathers, dense scatters or zero-filled gradient buffers, which dominated
    the memory traffic of the composite version.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, padded: int, branches: list) -> torch.Tensor:  # noqa: D401
        """Merged attention ``[B, L, H, d]`` of ``qkv [B, L, 3, H, d]`` under the plan ``(padded, branches)``."""
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
        """Gradient w.r.t. ``qkv`` through each branch output (merge weights held constant)."""
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
    return (kernels.USE_FUSED_LSE_KERNELS and qkv.device.type == "cpu"
            and kernels._FAST_OK.get(("cpu", qkv.dtype), True)
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"))


def try_fused_dilated_attention(qkv: torch.Tensor, segment_lengths: Sequence[int],
                                dilated_ratios: Sequence[int]) -> torch.Tensor | None:
    """The merged dilated attention through :class:`_FusedDilatedAttention`, or ``None``.

    ``None`` means "take the composite path": not on CPU, kernels switched off or missing, a
    layout :func:`_fused_plan` cannot express, or a kernel that refused the inputs (then the
    fused path is switched off for that dtype, as for :func:`.kernels.attention_with_lse`).

    Args:
        qkv: ``[B, L, 3, H, d]`` projected queries, keys and values.
        segment_lengths: segment length ``w`` of every branch.
        dilated_ratios: dilation ``r`` of every branch.

    Returns:
        ``[B, L, H, d]`` or ``None``.

    Raises:
        RuntimeError: out of memory (the composite path would need more, so it is not tried).
    """
    if not _fused_cpu_ok(qkv):
        return None
    plan = _fused_plan(qkv.shape[1], qkv.shape[3], segment_lengths, dilated_ratios)
    if plan is None:
        return None
    try:
        return _FusedDilatedAttention.apply(qkv, plan[0], plan[1])
    except (RuntimeError, AttributeError, NotImplementedError, TypeError) as exc:
        if "allocate" in str(exc):      # out of memory: the composite path needs more
            raise
        kernels._FAST_OK[("cpu", qkv.dtype)] = False
        log.info("fused CPU dilated attention unavailable for %s (%s); using the composite path",
                 qkv.dtype, exc)
    return None
