"""DPC-KNN token clustering and weighted merging (the student's Informative Token Aggregation, ITA).

Why: the disentangled framework's WSI-only student (spec (b) "Student" item 2; paper Sec. III-D.1,
Eqs. 10-12) condenses the 2,500 deformed patch tokens of a magnification into K = 2
"morphological prototypes" whose concatenation is matched to the teacher's [X_R^T; X_R^E]. The
clusters come from density-peak clustering with k nearest neighbours (DPC-KNN, Du, Ding & Jia
2016) as used by TCFormer: a token is a good centre when it is dense (close to its k nearest
neighbours) *and* far from any denser token. The clustering is a hard, non-differentiable choice
(run under ``no_grad``); the merge is differentiable in the tokens and their learned weights.

Two variants (``variant``):

* ``"code"`` (default, spec (k) Q5; TCFormer / the official ``ClusterMergeNet``):
  ``D_ij = ||x_i - x_j||_2 / sqrt(C)``; ``rho_i = exp(-mean of the k smallest D_ij^2)`` (the token
  itself, at distance 0, is one of the k); ``delta_i = min_{j denser} D_ij`` and, for the densest
  token, the largest entry of the sample's whole distance matrix.
* ``"paper"`` (Eqs. 10-11): unscaled ``D``; the same density; ``delta`` uses ``D^2`` and the
  densest token's ``delta`` is the maximum over its own row. The paper does not say whether the
  token counts among its own neighbours; we keep the code's choice (self included) so the two
  variants differ only where the paper's equations do.

Both: ``score = rho * delta``; the K highest scores are the centres (cluster 0 = highest score);
every token joins its nearest centre (by ``D``) and every centre its own cluster. Since any
token's ``delta`` is at most its distance to the densest token, which is at most the densest
token's row maximum, the densest token is always centre 0, so the two "max" conventions for it
only change its score, never the clustering.

Deviations from the official code (documented, spec (i) D13, (k) Q5):

* Determinism. The official code adds ``U(0, 1e-6)`` noise to the densities so that no two are
  equal; that makes runs irreproducible. We break ties by index instead: of two tokens with equal
  density the one with the lower index counts as denser; equal scores rank the lower index first;
  a token equally near two centres joins the lower cluster index. Without ties the result is the
  official one (the noise only matters at ties).
* Log domain. Density and score are ranked through ``log rho = -mean D^2`` and
  ``log score = log rho + log delta``. The ranking is the same, but with the paper variant's
  unscaled distances (``D^2 ~ 2C`` for layer-normalised C = 128 tokens) ``exp(-D^2)`` underflows to
  0 in fp32 for every token, which would turn the whole ranking into ties.
* Precision. Distances are computed in fp32 (fp64 inputs stay fp64) with autocast off: a bf16
  distance has ~3 significant digits, too few to order densities. The diagonal of ``D`` is set to
  exactly 0 (the matmul form of ``cdist`` leaves ~1e-3 there in fp32, which would enter every
  density through the self-neighbour).
* ``n_clusters`` is an argument (the official ``ceil(0.0008 N)`` is 2 only for N = 2,500 and
  the student reads exactly clusters 0 and 1, spec (i) D13); ``n_clusters > N`` is an error.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputError

__all__ = ["cluster_dpc_knn", "merge_tokens", "TokenAggregation"]

Variant = Literal["code", "paper"]
VARIANTS = ("code", "paper")


def _precise(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_tokens(x: Tensor, n_clusters: int, k: int | None = None) -> None:
    if x.dim() != 3:
        raise InputError(f"tokens must be [B, N, C], got shape {tuple(x.shape)}",
                         fix="pass one sequence of token features per sample")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise ConfigError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    n = x.shape[1]
    if n_clusters > n:
        raise InputError(f"cannot form {n_clusters} clusters from {n} tokens",
                         fix="use bags of at least n_clusters tokens (resample with "
                             "modaltune.data.fixed_bags.fixed_bag) or lower n_clusters")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k (nearest neighbours for the density) must be a positive integer, got {k!r}")
        if k > n:
            raise InputError(f"k = {k} nearest neighbours requested but a sample has only {n} tokens",
                             fix="lower k or use larger bags (fixed_bag)")


@torch.no_grad()
def cluster_dpc_knn(x: Tensor, n_clusters: int, k: int = 5, variant: Variant = "code") -> tuple[Tensor, Tensor]:
    """Cluster the tokens of each sample with DPC-KNN (no gradient).

    Args:
        x: [B, N, C] token features.
        n_clusters: number of clusters K (<= N).
        k: nearest neighbours (the token itself included) for the local density.
        variant: ``"code"`` (TCFormer / official code) or ``"paper"`` (Eqs. 10-11); see the
            module docstring.

    Returns:
        ``(assignment [B, N] long in [0, K), centres [B, K] long)``: ``centres[:, 0]`` is the
        highest-scoring token and ``assignment[b, centres[b, j]] == j``.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
    _check_tokens(x, n_clusters, k)
    b, n, c = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        y = _precise(x.detach())
        dist = torch.cdist(y, y)
        dist.diagonal(dim1=1, dim2=2).zero_()
        if variant == "code":
            dist = dist / math.sqrt(c)
        knn = torch.topk(dist, k=k, dim=-1, largest=False).values
        log_rho = -(knn ** 2).mean(dim=-1)  # [B, N]
        # j is denser than i: higher density, or equal density and lower index (deterministic tie-break)
        idx = torch.arange(n, device=x.device)
        denser = (log_rho[:, None, :] > log_rho[:, :, None]) | (
            (log_rho[:, None, :] == log_rho[:, :, None]) & (idx[None, None, :] < idx[None, :, None]))
        gap = dist ** 2 if variant == "paper" else dist
        far = gap.amax(dim=-1) if variant == "paper" else gap.flatten(1).amax(dim=-1)[:, None].expand(b, n)
        inf = torch.full_like(gap, math.inf)
        delta = torch.where(denser, gap, inf).amin(dim=-1)
        delta = torch.where(denser.any(dim=-1), delta, far)
        log_score = log_rho + torch.log(delta)
        order = torch.sort(log_score, dim=-1, descending=True, stable=True).indices
        centres = order[:, :n_clusters]
        to_centre = torch.gather(dist, 1, centres[:, :, None].expand(b, n_clusters, n))  # [B, K, N]
        assignment = to_centre.argmin(dim=1)  # first minimum = lower cluster index
        assignment.scatter_(1, centres, torch.arange(n_clusters, device=x.device).expand(b, n_clusters))
    return assignment, centres


def merge_tokens(x: Tensor, weights: Tensor, assignment: Tensor, n_clusters: int) -> Tensor:
    """Weighted mean of the tokens of each cluster (Eq. 12, with the code's ``+ 1e-6``).

    ``merged[b, j] = sum_{i: a_i = j} w_i x_i / (sum_{i: a_i = j} w_i + 1e-6)``, differentiable in
    ``x`` and ``weights``. Computed in fp32 for half-precision inputs (the weights are
    exponentials and their sums overflow fp16).

    Args:
        x: [B, N, C] tokens.
        weights: [B, N] or [B, N, 1] non-negative token weights.
        assignment: [B, N] cluster index of each token (from :func:`cluster_dpc_knn`).
        n_clusters: number of clusters K; an empty cluster merges to zeros.

    Returns:
        [B, K, C] merged tokens.
    """
    _check_tokens(x, n_clusters)
    b, n, c = x.shape
    if weights.dim() == 3:
        weights = weights.squeeze(-1)
    if weights.shape != (b, n) or assignment.shape != (b, n):
        raise InputError(f"weights {tuple(weights.shape)} and assignment {tuple(assignment.shape)} must be "
                         f"[B, N] = {(b, n)} for tokens {tuple(x.shape)}",
                         fix="pass one weight and one cluster index per token")
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf, wf = _precise(x), _precise(weights).to(_precise(x).dtype)
        index = assignment.long()
        total = wf.new_zeros(b, n_clusters).scatter_add(1, index, wf)
        summed = xf.new_zeros(b, n_clusters, c).scatter_add(1, index[:, :, None].expand(b, n, c), wf[:, :, None] * xf)
        return summed / (total[:, :, None] + 1e-6)


class TokenAggregation(nn.Module):
    """ITA's clustering-and-merging block: LayerNorm -> weights -> DPC-KNN -> weighted merge.

    ``y = LayerNorm(x)``; ``w = exp(Linear(dim, 1)(y))``; clusters of ``y`` by
    :func:`cluster_dpc_knn` (no gradient); merged prototypes by :func:`merge_tokens` of ``y`` with
    ``w`` (gradient to ``x``, the LayerNorm and the weight layer).

    Args:
        dim: token width.
        n_clusters: number of prototypes K (the paper's student uses 2).
        k: nearest neighbours for the density.
        variant: ``"code"`` or ``"paper"`` DPC-KNN (module docstring).
    """

    def __init__(self, dim: int, n_clusters: int = 2, k: int = 5, variant: Variant = "code"):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"TokenAggregation: variant must be one of {VARIANTS}, got {variant!r}")
        for name, value in [("dim", dim), ("n_clusters", n_clusters), ("k", k)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TokenAggregation: {name} must be a positive integer, got {value!r}")
        self.n_clusters, self.k, self.variant = n_clusters, k, variant
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Merge the tokens of each sample into ``n_clusters`` prototypes.

        Args:
            x: [B, N, dim] tokens.

        Returns:
            ``(merged [B, K, dim], assignment [B, N])``; the assignment (cluster 0 = the
            highest-scoring centre) is returned for analyses such as compartment agreement.
        """
        y = self.norm(x)
        weights = torch.exp(_precise(self.score(y)))  # fp32 under autocast: exp overflows half precision
        assignment, _ = cluster_dpc_knn(y, self.n_clusters, self.k, self.variant)
        return merge_tokens(y, weights, assignment, self.n_clusters), assignment
