"""Softmax attention that also returns the log-sum-exp (LSE) of its scores.

LongNet merges its dilated branches with weights ``softmax_over_branches(LSE)``, so every branch
needs the LSE of its attention scores besides the output. The LSE comes from PyTorch's fused
attention kernels (``_scaled_dot_product_flash_attention_for_cpu`` on CPU; flash /
memory-efficient kernels on CUDA); where those private entry points are missing or refuse the
inputs, the output comes from ``F.scaled_dot_product_attention`` and the LSE from an explicit,
chunked ``logsumexp(QK^T)`` under ``no_grad``.

The switches that choose between the two live here, and only here, because both the composite
path (:mod:`.dilated_attention`) and the fused CPU path (:mod:`.fused_cpu`) read them; keeping
them in either of those would make the two import each other. Read them as module attributes
(``kernels.USE_FUSED_LSE_KERNELS``) so that a test or a user can flip them at run time.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.nn import functional as F

__all__ = ["attention_with_lse", "USE_FUSED_LSE_KERNELS"]

log = logging.getLogger(__name__)

#: ``(device type, dtype) -> False`` once a fused kernel has failed there (then never retried).
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

    Args:
        q: queries ``[B, H, L, d]``.
        k: keys ``[B, H, L, d]``.
        v: values ``[B, H, L, d]``.

    Returns:
        The attention output and the fp32 log-sum-exp of each query's scores.
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
