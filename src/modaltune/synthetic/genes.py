"""Gene symbols and gene sets of the synthetic cohort.

Symbols are drawn from HGNC-like families (``SLC12A4``, ``ZNF512``, ``KRT8``...) so they look and sort
like real ones, and pathway names follow MSigDB Hallmark themes. A few GMT genes are deliberately
left out of the expression matrix, because real GMT files always name genes a matrix lacks and
``prepare`` must report them. Three pathways are prognostic (two raise risk, one lowers it) and are
recorded in truth.json.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PATHWAY_THEMES", "gene_symbols", "make_gene_sets"]

#: symbol families: (pattern, number range, fills of {s}) -> e.g. SLC12A4, ZNF512, KRT8, HOXB7, SERPINE1
_GENE_FAMILIES = (
    ("ZNF{n}", (100, 850), ("",)), ("SLC{n}A{s}", (1, 45), ("1", "2", "3", "4", "5", "6", "8", "11")),
    ("KRT{n}{s}", (1, 86), ("", "", "A")), ("CD{n}{s}", (1, 300), ("", "", "A", "B")),
    ("TMEM{n}{s}", (1, 270), ("", "", "A", "B")), ("ABC{s}{n}", (1, 13), ("A", "B", "C", "G")),
    ("COL{n}A{s}", (1, 28), ("1", "2")), ("MAP3K{n}", (1, 21), ("",)), ("RPL{n}{s}", (3, 41), ("", "", "A")),
    ("FAM{n}{s}", (13, 230), ("A", "B", "C")), ("CCDC{n}{s}", (6, 190), ("", "", "A")),
    ("ADAMTS{n}{s}", (1, 20), ("", "L")), ("CXCL{n}", (1, 17), ("",)), ("IL{n}{s}", (1, 37), ("", "R", "RA")),
    ("WNT{n}{s}", (1, 16), ("", "A", "B")), ("FGF{n}", (1, 23), ("",)), ("SOX{n}", (1, 30), ("",)),
    ("KLF{n}", (1, 17), ("",)), ("PPP1R{n}{s}", (1, 37), ("", "A", "B")), ("ATP{n}{s}", (1, 13), ("A1", "B2", "C1")),
    ("CYP{n}{s}", (1, 27), ("A1", "B1", "C2")), ("HOX{s}{n}", (1, 13), ("A", "B", "C", "D")),
    ("SERPIN{s}{n}", (1, 12), ("A", "B", "E")), ("TNFRSF{n}{s}", (1, 25), ("", "B")), ("GPR{n}", (1, 180), ("",)),
    ("LRRC{n}{s}", (1, 75), ("", "B")), ("ANKRD{n}", (1, 66), ("",)), ("RAB{n}{s}", (1, 44), ("", "A", "B")),
    ("ARHGAP{n}", (1, 45), ("",)), ("DUSP{n}", (1, 28), ("",)), ("MMP{n}", (1, 28), ("",)),
    ("CDK{n}{s}", (1, 20), ("", "", "L1")),
)

#: Pathway themes (MSigDB Hallmark-like) that name the synthetic gene sets.
PATHWAY_THEMES = ("HYPOXIA", "EMT", "G2M_CHECKPOINT", "E2F_TARGETS", "MYC_TARGETS", "P53_PATHWAY",
                  "INTERFERON_GAMMA", "TNFA_NFKB", "KRAS_SIGNALING", "ANGIOGENESIS", "GLYCOLYSIS",
                  "OXPHOS", "WNT_BETA_CATENIN", "NOTCH_SIGNALING", "HEDGEHOG", "TGF_BETA",
                  "IL6_JAK_STAT3", "ESTROGEN_RESPONSE", "ANDROGEN_RESPONSE", "APOPTOSIS", "DNA_REPAIR",
                  "MTORC1", "PI3K_AKT", "UV_RESPONSE", "XENOBIOTIC", "FATTY_ACID", "COMPLEMENT",
                  "COAGULATION", "KERATINIZATION", "UNFOLDED_PROTEIN", "CHOLESTEROL", "ALLOGRAFT",
                  "INFLAMMATORY", "SPERMATOGENESIS", "MITOTIC_SPINDLE", "PEROXISOME", "HEME",
                  "ADIPOGENESIS", "MYOGENESIS", "BILE_ACID", "PANCREAS_BETA", "APICAL_JUNCTION",
                  "APICAL_SURFACE", "PROTEIN_SECRETION", "REACTIVE_OXYGEN", "IFN_ALPHA", "KRAS_DN",
                  "UV_DN")


def gene_symbols(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct gene-symbol-like names (HGNC-style families with numbers and suffixes)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        pattern, (lo, hi), fills = _GENE_FAMILIES[rng.integers(len(_GENE_FAMILIES))]
        sym = pattern.format(n=int(rng.integers(lo, hi + 1)), s=fills[rng.integers(len(fills))])
        if sym not in seen:
            seen.add(sym)
            out.append(sym)
    return out


def make_gene_sets(rng, n_pathways, size, n_extra, n_absent):
    """Gene sets over a universe of symbols, the expression genes, and the prognostic pathways.

    Args:
        rng: the generator of the global structure.
        n_pathways: number of gene sets.
        size: (min, max) genes per set.
        n_extra: expression genes in no set.
        n_absent: set genes left out of the expression matrix.

    Returns:
        ``(gmt, expr_genes, prognostic, signs)``: name -> genes, the expression genes (shuffled), the
        indices of the 3 prognostic pathways and their signs (+1, +1, -1).
    """
    lo, hi = size
    universe_n = max(hi + 5, int(n_pathways * (lo + hi) / 2 * 0.45))
    universe = gene_symbols(rng, universe_n + n_extra)
    pw_genes_pool, extra = universe[:universe_n], universe[universe_n:]
    themes = list(PATHWAY_THEMES)
    gmt: dict[str, list[str]] = {}
    for p in range(n_pathways):
        theme = themes[p % len(themes)] + ("" if p < len(themes) else f"_{p // len(themes) + 1}")
        k = int(rng.integers(lo, hi + 1))
        idx = np.sort(rng.choice(universe_n, size=min(k, universe_n), replace=False))
        gmt[f"SYN_{theme}"] = [pw_genes_pool[j] for j in idx]
    in_gmt = sorted({g for gs in gmt.values() for g in gs}, key=pw_genes_pool.index)
    absent = set(rng.choice(in_gmt, size=min(n_absent, max(0, len(in_gmt) - 1)), replace=False).tolist()) \
        if n_absent > 0 else set()
    expr_genes = [g for g in in_gmt if g not in absent] + extra
    order = rng.permutation(len(expr_genes))
    expr_genes = [expr_genes[j] for j in order]
    prognostic = np.sort(rng.choice(n_pathways, size=3, replace=False))
    signs = np.array([1.0, 1.0, -1.0])
    return gmt, expr_genes, prognostic, signs
