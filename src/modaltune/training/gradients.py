"""Gradient policies: what happens between backward and the optimiser step.

The engine keeps Lightning's automatic optimisation (so gradient accumulation, bf16 autocast and DDP
work as for every method) and adds one place to change gradients, right before the step
(:meth:`GradientHook.apply`, called from ``LitMethod.on_before_optimizer_step``):

1. the configured policy (``train.gradient_policy``) combines per-term gradients:
   ``sum`` (the default: the plain gradient of the weighted sum, nothing extra is computed) or
   ``pcgrad`` (Yu et al., *Gradient Surgery for Multi-Task Learning*, NeurIPS 2020: each term's
   gradient is projected onto the normal plane of every other term's gradient it conflicts with,
   i.e. when their dot product is negative, then the projected gradients are summed);
2. then the method's own hook, :meth:`~modaltune.methods.base.Method.adjust_gradients`
   (e.g. the disentangled teacher's confidence-guided gradient coordination), with the per-term
   gradients and the batch statistics it asked for.

Correct under accumulation and DDP. Per-term gradients are accumulated over the micro-batches of one
optimiser step exactly as Lightning accumulates ``.grad`` (each micro-batch scaled by
``1 / accumulate``), so a policy sees the gradient of the whole step's batch, not of its last
micro-batch. One term per step (the *residual* term) is not differentiated separately: its gradient
is ``.grad`` minus the others, which saves one backward pass. Under DDP, ``.grad`` is already
averaged over ranks by the time the hook runs; the term buffers are averaged the same way and the
statistics (:attr:`LossOutput.stats`) summed over micro-batches and ranks before anyone reads them.
PCGrad projects in a fixed order (the terms sorted by name) instead of the paper's random order, so
runs repeat exactly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..methods.base import GradientContext, Method

__all__ = ["POLICIES", "pcgrad_combine", "GradientHook", "check_policy"]

POLICIES = ("sum", "pcgrad")


def check_policy(name: str) -> str:
    """Validate ``train.gradient_policy``."""
    if name not in POLICIES:
        raise ConfigError(f"train.gradient_policy must be one of {POLICIES}, not '{name}'")
    return name


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params)])


def pcgrad_combine(term_grads: dict[str, list[torch.Tensor | None]], params: Sequence[nn.Parameter]
                   ) -> list[torch.Tensor]:
    """PCGrad over the terms' gradients (flattened over all parameters); returns the summed result.

    For each term ``i`` (in name order) its gradient ``g_i`` is projected, for every other term
    ``j`` in name order with ``g_i . g_j < 0``, as ``g_i <- g_i - (g_i . g_j) / ||g_j||^2 g_j``
    (``g_j`` un-projected). Agreeing gradients are left alone.
    """
    names = sorted(term_grads)
    flat = {n: _flat(term_grads[n], params) for n in names}
    total = torch.zeros_like(next(iter(flat.values())))
    for i in names:
        g = flat[i].clone()
        for j in names:
            if j == i:
                continue
            dot = torch.dot(g, flat[j])
            norm2 = torch.dot(flat[j], flat[j])
            if dot < 0 and norm2 > 0:
                g = g - dot / norm2 * flat[j]
        total += g
    out, start = [], 0
    for p in params:
        n = p.numel()
        out.append(total[start:start + n].view_as(p).to(p.dtype))
        start += n
    return out


class GradientHook:
    """Accumulates what a policy needs over one optimiser step and applies it before the step.

    Args:
        method: the method being trained.
        policy: ``sum`` or ``pcgrad``.
        named_params: the trainable parameters, by name.
    """

    def __init__(self, method: Method, policy: str, named_params: Sequence[tuple[str, nn.Parameter]]):
        self.method, self.policy = method, check_policy(policy)
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.method_hook = type(method).adjust_gradients is not Method.adjust_gradients
        self._reset()

    @property
    def needs_term_grads(self) -> bool:
        """Whether per-term gradients are computed (pcgrad, or a method that asks for them)."""
        return self.policy == "pcgrad" or bool(getattr(self.method, "needs_term_grads", False))

    @property
    def active(self) -> bool:
        """Whether anything happens before the step."""
        return self.needs_term_grads or self.method_hook

    def _reset(self) -> None:
        self.buffers: dict[str, list[torch.Tensor | None]] = {}
        self.stats: dict[str, torch.Tensor] = {}
        self.residual: str | None = None

    def observe(self, weighted: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], accumulate: int) -> None:
        """Record one micro-batch: its weighted terms (before Lightning's backward) and statistics."""
        for k, v in stats.items():
            v = v.detach().float()
            self.stats[k] = self.stats[k] + v if k in self.stats else v.clone()
        if not self.needs_term_grads:
            return
        present = sorted(k for k, v in weighted.items() if v.requires_grad)
        if not present:
            return
        if self.residual is None:
            self.residual = present[-1]
        for name in present:
            if name == self.residual:
                continue
            grads = torch.autograd.grad(weighted[name], self.params, retain_graph=True, allow_unused=True)
            buf = self.buffers.setdefault(name, [None] * len(self.params))
            for i, g in enumerate(grads):
                if g is not None:
                    g = g.detach() / accumulate
                    buf[i] = g if buf[i] is None else buf[i] + g

    def apply(self, reduce: Callable[[torch.Tensor, str], torch.Tensor], step: int) -> None:
        """Reduce over ranks, run the policy and the method's hook, write ``.grad``; then reset."""
        try:
            stats = {k: reduce(v, "sum") for k, v in self.stats.items()}
            term_grads: dict[str, list[torch.Tensor | None]] = {}
            if self.needs_term_grads and self.residual is not None:
                rest = [p.grad.detach().clone() if p.grad is not None else None for p in self.params]
                for name, buf in self.buffers.items():
                    flat = reduce(_flat(buf, self.params), "mean")
                    grads, start = [], 0
                    for i, p in enumerate(self.params):
                        n = p.numel()
                        g = flat[start:start + n].view_as(p).to(p.dtype)
                        start += n
                        grads.append(g if buf[i] is not None else None)
                        if g is not None and rest[i] is not None:
                            rest[i] = rest[i] - g
                    term_grads[name] = grads
                term_grads[self.residual] = rest
                if self.policy == "pcgrad" and len(term_grads) > 1:
                    for i, (p, g) in enumerate(zip(self.params, pcgrad_combine(term_grads, self.params))):
                        if p.grad is not None or any(t[i] is not None for t in term_grads.values()):
                            p.grad = g.clone()
            if self.method_hook:
                ctx = GradientContext(params=dict(zip(self.names, self.params)), term_grads=term_grads, stats=stats,
                                      step=step)
                self.method.adjust_gradients(ctx)
        finally:
            self._reset()
