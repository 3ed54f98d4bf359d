"""What every site of the synthetic cohort shares, and the settings of the draws.

:func:`draw_world` draws the gene sets, the expression baseline and gene-pathway loadings, and the
morphology prototypes once, from the stream ``(seed, 0)``; the sites differ from each other only by
their own parameters (:mod:`.site_draw`), so the same pathway or prototype means the same thing in
every site, as a real disease signal would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .genes import make_gene_sets

__all__ = ["Settings", "World", "rng_for", "draw_world"]


@dataclass(frozen=True)
class Settings:
    """The knobs of ``make_synthetic`` that the draws use (see its docstring)."""

    seed: int
    dim: int
    patches: tuple[int, int]
    n_prototypes: int
    risk_weights: tuple[float, float, float]
    feature_noise: float
    site_shift: float
    ood_shift: float
    multi_slide: tuple[float, float]
    frac_missing_stage: float
    frac_missing_expression: float
    frac_missing_report: float
    secondary: bool
    slide_uuid_suffix: bool


@dataclass
class World:
    """What all sites share.

    Attributes:
        gmt: pathway name -> genes (some absent from the expression matrix).
        expr_genes: genes of the expression matrix, in file order.
        prognostic: indices of the 3 prognostic pathways; ``signs`` their signs.
        signs: +1 (raises risk) or -1 per prognostic pathway.
        base_expr: baseline expression per gene.
        loadings: ``[genes, pathways]`` positive loadings of genes on their pathways.
        non_prognostic: indices of the other pathways (where subtypes differ).
        prototypes: ``[n_prototypes, dim]`` morphology prototypes; prototype 0 is the aggressive one.
    """

    gmt: dict[str, list[str]]
    expr_genes: list[str]
    prognostic: np.ndarray
    signs: np.ndarray
    base_expr: np.ndarray
    loadings: np.ndarray
    non_prognostic: np.ndarray
    prototypes: np.ndarray

    @property
    def n_genes(self) -> int:
        """Genes of the expression matrix."""
        return len(self.expr_genes)

    @property
    def n_pathways(self) -> int:
        """Pathways of the GMT."""
        return int(self.loadings.shape[1])


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """The random stream of ``key`` under ``seed`` (independent streams, reproducible by key)."""
    return np.random.default_rng([int(seed), *key])


def draw_world(seed: int, dim: int, n_prototypes: int, n_pathways: int, pathway_size: tuple[int, int],
               n_extra_genes: int, n_absent_genes: int) -> World:
    """Gene sets, expression baseline and loadings, and morphology prototypes, from the stream ``(seed, 0)``."""
    g_rng = rng_for(seed, 0)
    gmt, expr_genes, prognostic, signs = make_gene_sets(g_rng, n_pathways, pathway_size, n_extra_genes,
                                                        n_absent_genes)
    gene_index = {g: i for i, g in enumerate(expr_genes)}
    base_expr = g_rng.uniform(3.0, 11.0, size=len(expr_genes))
    loadings = np.zeros((len(expr_genes), n_pathways))
    for p, name in enumerate(gmt):
        for g in gmt[name]:
            if g in gene_index:
                loadings[gene_index[g], p] = g_rng.uniform(0.4, 0.9)
    non_prognostic = np.array([p for p in range(n_pathways) if p not in prognostic])
    prototypes = g_rng.standard_normal((n_prototypes, dim)).astype(np.float64)
    return World(gmt, expr_genes, prognostic, signs, base_expr, loadings, non_prognostic, prototypes)
