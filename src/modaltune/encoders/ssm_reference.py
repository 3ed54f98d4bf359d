"""The selective scan of Mamba v1 (Gu & Dao 2023) as a plain sequential loop.

The specification the chunked scan (:mod:`modaltune.encoders.ssm_scan`) is tested against, kept
readable on purpose: ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t``, ``y_t = <C_t, h_t> + D u_t``,
``y <- y * SiLU(z)``. Slow (one step per position); never used for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["selective_scan_ref"]


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, h0: Tensor | None = None, return_last_state: bool = False):
    """Sequential selective scan: the recurrence written as a plain loop (tests, documentation).

    Args:
        u: inputs ``[B, L, D]``.
        delta: step sizes ``[B, L, D]`` (already softplus-ed, > 0).
        A: state matrix ``[D, N]`` (negative).
        B: input projections ``[B, L, N]``.
        C: output projections ``[B, L, N]``.
        D: skip weights ``[D]`` (optional).
        z: gate ``[B, L, D]`` (optional): the output is multiplied by ``SiLU(z)``.
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
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y
