"""LongNet dilated attention: the branches, their merge, and the dispatcher.

Semantics are torchscale's ``DilatedAttention``, checked line by line:

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
batched attention call over all its segments (no Python loop over segments, no ``L x L`` matrix);
the LSE comes from :func:`.kernels.attention_with_lse`.

:func:`dilated_attention` is the entry point: on CPU it first tries the fused path of
:mod:`.fused_cpu` (same values and gradients, far less memory traffic) and falls back to the
composite per-branch path written here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from .fused_cpu import try_fused_dilated_attention
from .kernels import attention_with_lse

__all__ = ["dilated_attention", "dilated_branch", "merge_branches"]


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

    Args:
        outs: branch outputs ``[B, L, H, d]``.
        lses: their log-sum-exps ``[B, L, H]`` (``-inf`` where a branch does not cover).

    Returns:
        The merged output ``[B, L, H, d]``.
    """
    with torch.no_grad():
        weights = torch.softmax(torch.stack(list(lses), dim=0), dim=0).nan_to_num_(0.0)
    out = None
    for o, wgt in zip(outs, weights):
        term = o * wgt.unsqueeze(-1).to(o.dtype)
        out = term if out is None else out + term
    return out


def dilated_attention(qkv: torch.Tensor, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]
                      ) -> torch.Tensor:
    """LongNet dilated attention ``[B, L, 3, H, d] -> [B, L, H, d]`` (all branches, merged).

    On CPU this runs :class:`.fused_cpu._FusedDilatedAttention` (one padded copy, strided kernel
    calls); elsewhere, or when the fused kernels are unavailable, the composite per-branch path.

    Args:
        qkv: ``[B, L, 3, H, d]`` projected queries, keys and values.
        segment_lengths: segment length ``w`` of every branch.
        dilated_ratios: dilation ``r`` of every branch.

    Returns:
        The merged attention output ``[B, L, H, d]``.
    """
    fused = try_fused_dilated_attention(qkv, segment_lengths, dilated_ratios)
    if fused is not None:
        return fused
    outs, lses = [], []
    for w, r in zip(segment_lengths, dilated_ratios):
        o, lse = dilated_branch(qkv, w, r)
        outs.append(o)
        lses.append(lse)
    if len(outs) == 1:
        # a single branch: weight 1 wherever it covers, 0 elsewhere
        return outs[0] * torch.isfinite(lses[0]).unsqueeze(-1).to(outs[0].dtype)
    return merge_branches(outs, lses)
