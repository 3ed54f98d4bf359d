"""Gene subspaces (tumor, TME) from the user's gene sets, and highly variable gene selection.

Why: the teacher decomposes the transcriptome into a tumor subspace and a tumor-microenvironment
(TME) subspace, each with its own SNN and its own deformable cross-attention (paper Sec. III-A,
spec (b) "Genes"). The official gene list (an unshipped spreadsheet of "Tumor" and "Immune"
signatures) does not exist publicly (spec (k) Q10), so the user names the gene sets of each
subspace: ``model.subspaces: {tumor: [globs over gene-set names], tme: [globs]}``. The defaults,
``TUMOR_*`` and ``TME_*``, match the synthetic generator's subspace gene sets. A subspace is the
union of the genes of its matched sets, in the expression vector's order. A gene in both
subspaces is kept in both (the official lists were disjoint; overlap is the user's choice).

Highly variable genes (paper Sec. IV-B, Table IV; spec (k) Q11): the top ``hvg_fraction`` (0.3)
of each subspace's genes by ``info.gene_variance``, the variance of the stored (log-scale,
unstandardised) expression over the **training** patients only, so validation and test patients
never influence which genes the model sees. ``hvg_random: true`` draws the same number of genes
uniformly instead (Table IV's "30 % random" control), seeded by ``seed`` so it repeats. The count
is ``max(1, round(fraction * n))``; equal variances rank the lower gene index first. The selected
indices are returned sorted, so the SNN input keeps the expression vector's gene order.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import ConfigError
from ..base import CohortInfo

__all__ = ["SUBSPACES", "DEFAULT_SUBSPACES", "match_gene_sets", "subspace_genes", "select_hvg", "teacher_genes"]

#: the two subspaces, in the order of the teacher's concatenated feature [X_T; X_E]
SUBSPACES = ("tumor", "tme")
DEFAULT_SUBSPACES: dict[str, list[str]] = {"tumor": ["TUMOR_*"], "tme": ["TME_*"]}


def match_gene_sets(names: Sequence[str], patterns: Sequence[str]) -> list[int]:
    """Indices of the gene sets whose name matches any of ``patterns`` (``fnmatch`` globs, case-sensitive)."""
    return [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(str(n), str(p)) for p in patterns)]


def subspace_genes(info: CohortInfo, subspaces: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Gene indices (sorted) of each subspace: the union of its matched gene sets.

    Raises:
        ConfigError: the subspaces are not exactly ``tumor`` and ``tme``, a pattern list is not a
            list of strings, or a subspace matches no gene set (or only empty ones).
    """
    if not isinstance(subspaces, Mapping) or set(subspaces) != set(SUBSPACES):
        raise ConfigError(f"model.subspaces must map exactly {list(SUBSPACES)} to lists of gene-set name globs, got "
                          f"{subspaces!r}")
    out: dict[str, np.ndarray] = {}
    names = list(info.pathway_names)
    for name in SUBSPACES:
        patterns = subspaces[name]
        if isinstance(patterns, str) or not all(isinstance(p, str) for p in (patterns or [])):
            raise ConfigError(f"model.subspaces.{name} must be a list of gene-set name globs, got {patterns!r}")
        hits = match_gene_sets(names, patterns or [])
        genes = np.unique(np.concatenate([np.asarray(info.pathways[i], dtype=np.int64) for i in hits])) \
            if hits else np.zeros(0, np.int64)
        if not len(genes):
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            raise ConfigError(f"model.subspaces.{name} = {list(patterns or [])} matches no gene set with genes; the "
                              f"cohort's gene sets are: {shown or 'none (prepare the cohort with --gene-sets)'}")
        out[name] = genes
    return out


def select_hvg(genes: np.ndarray, variance: Sequence[float], fraction: float, random: bool = False,
               seed: int = 0) -> np.ndarray:
    """The top ``fraction`` of ``genes`` by ``variance`` (or as many drawn at random), sorted.

    Args:
        genes: candidate gene indices.
        variance: variance of every gene of the expression vector (training patients only).
        fraction: share of the candidates kept, in (0, 1].
        random: draw the genes uniformly instead (seeded).
        seed: seed of the random draw.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"model.hvg_fraction must be in (0, 1], got {fraction!r}")
    genes = np.asarray(genes, dtype=np.int64)
    k = max(1, int(round(float(fraction) * len(genes))))
    if random:
        pick = np.random.default_rng(int(seed)).choice(len(genes), size=k, replace=False)
        return np.sort(genes[pick])
    var = np.asarray(variance, dtype=np.float64)[genes]
    order = np.lexsort((genes, -var))          # largest variance first, lower index on ties
    return np.sort(genes[order[:k]])


def teacher_genes(info: CohortInfo, model: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """The genes each subspace's SNN reads, from ``model.subspaces``, ``hvg_fraction``, ``hvg_random``.

    Raises:
        ConfigError: see :func:`subspace_genes`; or the cohort has no training-patient gene
            variances (no expression, or no training patient with expression).
    """
    spaces = subspace_genes(info, model.get("subspaces") or DEFAULT_SUBSPACES)
    variance = list(info.gene_variance or [])
    if len(variance) != int(info.n_genes) or not variance:
        raise ConfigError(f"the teacher needs the training patients' gene variances for HVG selection, but the run "
                          f"has {len(variance)} for {info.n_genes} genes; prepare the cohort with --expression and "
                          "make sure training patients have expression")
    fraction = float(model.get("hvg_fraction", 0.3))
    random = bool(model.get("hvg_random", False))
    return {name: select_hvg(g, variance, fraction, random, seed + 7919 * i) for i, (name, g) in enumerate(spaces.items())}
