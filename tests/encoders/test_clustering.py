"""DPC-KNN clustering and merging against brute-force loops (disentangled.md (b) Student 2, (j) 2)."""

import math

import pytest
import torch

from modaltune.encoders.clustering import TokenAggregation, cluster_dpc_knn, merge_tokens
from modaltune.errors import ConfigError, InputError

DT = torch.float64


def brute_force(tokens, n_clusters, k, variant):
    """One sample [N, C] -> (assignment list, centres list), written from the spec with loops."""
    pts = tokens.tolist()
    n, c = len(pts), len(pts[0])
    scale = math.sqrt(c) if variant == "code" else 1.0
    d = [[math.sqrt(sum((a - b) ** 2 for a, b in zip(pts[i], pts[j]))) / scale for j in range(n)] for i in range(n)]
    rho = [math.exp(-sum(v ** 2 for v in sorted(d[i])[:k]) / k) for i in range(n)]
    delta = []
    for i in range(n):
        denser = [j for j in range(n) if rho[j] > rho[i]]
        if denser:
            delta.append(min(d[i][j] ** 2 if variant == "paper" else d[i][j] for j in denser))
        elif variant == "paper":
            delta.append(max(d[i][j] ** 2 for j in range(n)))
        else:
            delta.append(max(max(row) for row in d))
    score = [rho[i] * delta[i] for i in range(n)]
    centres = sorted(range(n), key=lambda i: -score[i])[:n_clusters]
    assignment = [min(range(n_clusters), key=lambda j: d[i][centres[j]]) for i in range(n)]
    for j, ci in enumerate(centres):
        assignment[ci] = j
    return assignment, centres


def _tokens(b, n, c, seed):
    g = torch.Generator().manual_seed(seed)
    # a few blobs of different spread, so densities are distinct and centres well separated
    blob = torch.randint(0, 3, (b, n), generator=g)
    means = torch.randn(b, 3, c, generator=g, dtype=DT) * 3
    spread = torch.tensor([0.3, 0.7, 1.2], dtype=DT)[blob][..., None]
    return torch.gather(means, 1, blob[..., None].expand(b, n, c)) + spread * torch.randn(b, n, c, generator=g,
                                                                                            dtype=DT)


@pytest.mark.parametrize("variant", ["code", "paper"])
@pytest.mark.parametrize("n,n_clusters,seed", [(20, 2, 0), (31, 3, 1), (40, 2, 2)])
def test_matches_brute_force(variant, n, n_clusters, seed):
    x = _tokens(2, n, 6, seed)
    assignment, centres = cluster_dpc_knn(x, n_clusters, k=5, variant=variant)
    for b in range(2):
        ref_a, ref_c = brute_force(x[b], n_clusters, 5, variant)
        assert centres[b].tolist() == ref_c
        assert assignment[b].tolist() == ref_a
        assert assignment[b, centres[b]].tolist() == list(range(n_clusters))  # centres map to themselves
        dist = torch.cdist(x[b], x[b])
        density = -(torch.topk(dist, 5, largest=False).values ** 2).mean(-1)
        assert centres[b, 0] == density.argmax()  # the densest token is always centre 0


def test_variants_can_disagree():
    # the test above must be able to tell the variants apart: find a case where they differ
    differ = False
    for seed in range(20):
        x = _tokens(1, 30, 6, seed)
        if brute_force(x[0], 3, 5, "code")[1] != brute_force(x[0], 3, 5, "paper")[1]:
            differ = True
            assert cluster_dpc_knn(x, 3, variant="code")[1][0].tolist() == brute_force(x[0], 3, 5, "code")[1]
            assert cluster_dpc_knn(x, 3, variant="paper")[1][0].tolist() == brute_force(x[0], 3, 5, "paper")[1]
            break
    assert differ


def test_paper_variant_does_not_underflow_in_fp32():
    # unscaled squared distances of ~2C = 256 make exp(-D^2) = 0 in fp32; the ranking must survive
    x = torch.nn.functional.layer_norm(_tokens(1, 40, 128, 3), (128,))
    a32, c32 = cluster_dpc_knn(x.float(), 2, variant="paper")
    assert math.exp(-256.0) > 0 and torch.exp(torch.tensor(-256.0)) == 0  # Python floats are fp64
    ref_a, ref_c = brute_force(x[0], 2, 5, "paper")
    assert c32[0].tolist() == ref_c and a32[0].tolist() == ref_a


def test_merge_equals_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 3, dtype=DT, generator=g)
    w = torch.rand(2, 10, dtype=DT, generator=g) + 0.1
    a = torch.randint(0, 3, (2, 10), generator=g)
    merged = merge_tokens(x, w, a, 3)
    for b in range(2):
        for j in range(3):
            num = sum(w[b, i] * x[b, i] for i in range(10) if a[b, i] == j)
            den = sum(w[b, i] for i in range(10) if a[b, i] == j) + 1e-6
            torch.testing.assert_close(merged[b, j], num / den, atol=1e-12, rtol=0)
    torch.testing.assert_close(merge_tokens(x, w[..., None], a, 3), merged, atol=0, rtol=0)


def test_permuting_tokens_permutes_assignment_only():
    x = _tokens(1, 30, 6, 4)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    a, c = cluster_dpc_knn(x, 3)
    ap, cp = cluster_dpc_knn(x[:, perm], 3)
    assert torch.equal(ap, a[:, perm])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(30)
    assert torch.equal(cp, inv[c])  # the same centre tokens, at their new positions


def test_ties_broken_by_lower_index():
    # 1-D tokens -2, -1, 1, 2 with k = 2: all four densities are equal (exp(-1/2))
    x = torch.tensor([[[-2.0], [-1.0], [1.0], [2.0]]], dtype=DT)
    # token 0 counts as densest (delta = 4); then delta = [4, 1, 2, 1]: centres 0 and 2
    a, c = cluster_dpc_knn(x, 2, k=2)
    assert c.tolist() == [[0, 2]] and a.tolist() == [[0, 0, 1, 1]]
    # equal scores (tokens 1 and 3) rank the lower index first
    assert cluster_dpc_knn(x, 3, k=2)[1].tolist() == [[0, 2, 1]]
    # all tokens identical: every distance 0, every score 0 -> centres 0, 1; ties join cluster 0
    same = torch.zeros(1, 5, 2, dtype=DT)
    a, c = cluster_dpc_knn(same, 2, k=2)
    assert c.tolist() == [[0, 1]] and a.tolist() == [[0, 1, 0, 0, 0]]
    for _ in range(3):  # deterministic
        assert torch.equal(cluster_dpc_knn(x, 2, k=2)[0], cluster_dpc_knn(x, 2, k=2)[0])


def test_gradients_through_merge_not_assignment():
    torch.manual_seed(0)
    ita = TokenAggregation(6, n_clusters=2, k=5).to(DT)
    x = _tokens(2, 25, 6, 5).requires_grad_(True)
    merged, assignment = ita(x)
    assert merged.shape == (2, 2, 6) and assignment.shape == (2, 25) and not assignment.requires_grad
    merged.square().sum().backward()
    assert x.grad.abs().sum() > 0 and ita.score.weight.grad.abs().sum() > 0
    # the same gradient as a merge with the assignment held fixed: nothing flows through the clustering
    x2 = x.detach().clone().requires_grad_(True)
    y = ita.norm(x2)
    fixed = merge_tokens(y, torch.exp(ita.score(y)), assignment, 2)
    torch.testing.assert_close(fixed, merged.detach(), atol=0, rtol=0)
    grad_w = ita.score.weight.grad.clone()
    ita.zero_grad()
    fixed.square().sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(ita.score.weight.grad, grad_w, atol=1e-12, rtol=0)


def test_bf16_autocast_runs_in_fp32():
    torch.manual_seed(0)
    ita = TokenAggregation(16)
    x = torch.randn(2, 36, 16)
    merged32, a32 = ita(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        merged16, a16 = ita(x)
    assert merged16.dtype == torch.float32
    assert (merged16 - merged32).abs().max() < 5e-2


def test_errors():
    x = torch.randn(1, 4, 3)
    with pytest.raises(InputError, match="5 clusters from 4 tokens"):
        cluster_dpc_knn(x, 5, k=2)
    with pytest.raises(InputError, match="k = 5"):
        cluster_dpc_knn(x, 2, k=5)
    with pytest.raises(ConfigError):
        cluster_dpc_knn(x, 2, k=2, variant="tcformer")
    with pytest.raises(ConfigError):
        TokenAggregation(3, n_clusters=0)
    with pytest.raises(InputError):
        cluster_dpc_knn(torch.randn(4, 3), 2)
