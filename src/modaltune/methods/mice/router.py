"""MICE's router: one per cancer type, noisy top-k over the overlapping experts, plus the gain gamma.

From the official code (spec ``mice.md`` (b) 6; the paper only says "noisy top-k gating"), for the
router-input token ``u`` (the pre-expert transformer's first row):

    s = [Linear(h, h)(GELU(LN(Linear(d, h)(u)))) ; Linear(d, h)(GELU(LN(Linear(d, d)(u))))]   (2h)
    [mu (E), sigma (E), gamma (1)] = Linear(2h, 2E + 1)(s)
    train: l = mu + eps * sigma, eps ~ N(0, I);  eval: l = mu
    w = softmax(l), then the E - keep_k smallest entries set to 0 (keep 9 of 15)

with ``d = 256``, ``h = 64``, ``E = 15`` (107,487 parameters). The official quirks are the defaults
and are kept on purpose (spec (i) 15): the noise scale ``sigma`` is the raw linear output (it may be
negative, which only flips the noise's sign), the kept weights are **not** renormalised (they sum to
less than 1), ``gamma`` (the specialized expert's gain) is unbounded, and there is no load-balancing
loss. ``softplus_noise=True`` uses ``softplus(sigma)`` as the scale and ``renormalise=True`` divides
the kept weights by their sum (switches of ours, off by default); ``noise=False`` routes on ``mu``
in training too (deterministic top-k; an ablation of ours, on by default as in the code). Every
expert's softmax entry keeps its gradient, as in the code: the routing mask itself is not
differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...errors import ConfigError

__all__ = ["Router", "top_k_weights"]


def top_k_weights(logits: Tensor, keep_k: int, renormalise: bool = False) -> Tensor:
    """``softmax(logits)`` with all but the ``keep_k`` largest entries of each row set to 0.

    Args:
        logits: ``[B, E]`` routing logits.
        keep_k: entries kept per row (``1 <= keep_k <= E``).
        renormalise: divide the kept weights by their sum (the official code does not).

    Returns:
        ``[B, E]`` weights in fp32: exactly ``keep_k`` non-zero entries per row, each equal to its
        softmax entry (times ``1 / sum`` with ``renormalise``).
    """
    n = logits.shape[-1]
    if not 1 <= int(keep_k) <= n:
        raise ConfigError(f"router keep_k must lie in 1..{n} (the number of overlapping experts), got {keep_k}")
    w = torch.softmax(logits.float(), dim=-1)
    keep = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, w.topk(int(keep_k), dim=-1).indices, True)
    w = w * keep.to(w.dtype)
    if renormalise:
        w = w / w.sum(-1, keepdim=True)
    return w


class Router(nn.Module):
    """The router of one cancer type (see the module docstring).

    Args:
        dim: width of the router input ``u`` (MICE: 256).
        n_experts: number of overlapping experts ``E`` (MICE: 15).
        keep_k: experts kept per patient (MICE: 9).
        hidden: width ``h`` of each of the two branches (MICE: 64).
        renormalise: renormalise the kept weights to sum 1 (default off, as the code).
        softplus_noise: use ``softplus(sigma)`` as the noise scale (default off: raw sigma, as the code).
        noise: add the noise in training mode (default on, as the code); off, training routes on
            ``mu`` as evaluation does (``sigma`` is then computed but unused).
    """

    def __init__(self, dim: int = 256, n_experts: int = 15, keep_k: int = 9, hidden: int = 64,
                 renormalise: bool = False, softplus_noise: bool = False, noise: bool = True):
        super().__init__()
        if not 1 <= int(keep_k) <= int(n_experts):
            raise ConfigError(f"model.keep_k must lie in 1..{n_experts} (the number of overlapping experts), "
                              f"got {keep_k}")
        self.n_experts, self.keep_k = int(n_experts), int(keep_k)
        self.renormalise, self.softplus_noise = bool(renormalise), bool(softplus_noise)
        self.noise = bool(noise)
        self.branch_a = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.branch_b = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, hidden))
        self.gate = nn.Linear(2 * hidden, 2 * self.n_experts + 1)

    def gate_outputs(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu [B, E], sigma [B, E], gamma [B])`` of router inputs ``u`` ``[B, dim]``, in fp32
        (``sigma`` raw, or after softplus with ``softplus_noise``)."""
        out = self.gate(torch.cat([self.branch_a(u), self.branch_b(u)], dim=-1)).float()
        e = self.n_experts
        mu, sigma, gamma = out[:, :e], out[:, e:2 * e], out[:, 2 * e]
        return mu, (F.softplus(sigma) if self.softplus_noise else sigma), gamma

    def forward(self, u: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Routing weights and gamma.

        Args:
            u: ``[B, dim]`` router inputs.
            noise: optional ``[B, E]`` standard-normal draws used in training mode (default: drawn
                here from the global generator); ignored in eval mode, which is noise-free, and by
                a router built with ``noise=False``.

        Returns:
            ``(w [B, E], gamma [B])`` in fp32; ``w`` has exactly ``keep_k`` non-zero entries per row.
        """
        mu, sigma, gamma = self.gate_outputs(u)
        logits = mu
        if self.training and self.noise:
            eps = torch.randn_like(mu) if noise is None else noise.to(mu)
            logits = mu + eps * sigma
        return top_k_weights(logits, self.keep_k, self.renormalise), gamma
