"""Draws of the subspace (tumor / microenvironment) glioma cohort: genes, patients and labels, slides.

Used by :func:`~modaltune.synthetic.make_subspace_cohort`, whose module docstring describes the model.
Three pieces, each from its own stream under the seed so that changing one knob leaves the others'
draws alone:

* :func:`draw_subspace_genes` (stream ``(seed, 3, 0)``): disjoint gene sets ``TUMOR_*`` (driven by z_T),
  the molecular sets ``TUMOR_GCIMP`` (IDH-mutant methylator phenotype) and ``TUMOR_CHR1P19Q`` (genes
  lost with the 1p/19q codeletion), ``TME_*`` (driven by z_E), unrelated ``SYN_*`` sets, genes in no set;
  positive loadings, strong for a core of each set (:data:`CORE_FRACTION`) and weak for the rest; the
  tissue prototypes and the two appearance axes.
* :func:`draw_glioma_patients` (stream ``(seed, 3, 1)``): z_T, z_E, molecular calls, grade, WHO class,
  noisy labels, survival, expression.
* :func:`make_compartment_slide` (the slide stream ``(seed, 3, 2)``): one slide whose patch grid holds
  spatially separate tumor and TME regions, 20x features, the 10x view and the per-patch truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ..data.labels.glioma import GRADE_CLASSES, WHO2021_CLASSES
from .genes import PATHWAY_THEMES, gene_symbols
from .slides import PATCH_20X, pool_2x2, smooth_field, softmax, tissue_mask

__all__ = ["WHO_CLASSES", "GRADES", "TUMOR_THEMES", "TME_THEMES", "who2021_class", "GeneWorld",
           "draw_subspace_genes", "Glioma", "draw_glioma_patients", "make_compartment_slide"]

#: fraction of each gene set's genes that follow its driver strongly (the signature's core)
CORE_FRACTION = 0.4
#: WHO CNS 2021 classes, in label order, as written in clinical.tsv's ``primary_diagnosis``: the names
#: of the shipped glioma grouping (``resources/glioma_who2021.yaml``), which prepares the cohort.
WHO_CLASSES = WHO2021_CLASSES
#: Histologic grades, in label order, as written in clinical_grade.tsv and molecular.tsv.
GRADES = GRADE_CLASSES
#: Themes of the z_T-driven tumor gene sets (``TUMOR_<theme>``; suffixed ``_2``... beyond the list).
TUMOR_THEMES = ("PROLIFERATION", "HYPOXIA_NECROSIS", "STEMNESS", "INVASION", "MITOTIC", "GLYCOLYSIS")
#: Themes of the z_E-driven microenvironment gene sets (``TME_<theme>``).
TME_THEMES = ("T_CELL", "MACROPHAGE_MICROGLIA", "ENDOTHELIAL", "REACTIVE_ASTROCYTE", "INTERFERON", "COMPLEMENT")

#: Abundance slopes of the 4 tumor prototypes on z_T (low-grade glial ... necrosis / palisading).
_TUMOR_SLOPES = np.array([-1.2, -0.4, 0.6, 1.4])
#: Abundance slopes of the 4 TME prototypes on z_E (lymphocytes, microglia, vessels, neuropil).
_TME_SLOPES = np.array([1.2, 0.8, 0.4, -1.0])


def _names(prefix: str, themes: tuple[str, ...], k: int) -> list[str]:
    return [f"{prefix}_{themes[i % len(themes)]}" + ("" if i < len(themes) else f"_{i // len(themes) + 1}")
            for i in range(k)]


def who2021_class(idh_mutant: np.ndarray, codeleted: np.ndarray, cdkn2a: np.ndarray, grade: np.ndarray
                  ) -> np.ndarray:
    """WHO CNS 2021 class index (see :data:`WHO_CLASSES`) from molecular calls and grade (2, 3, 4).

    IDH wildtype -> glioblastoma (0); else 1p/19q codeleted -> oligodendroglioma (3); else CDKN2A
    homozygous deletion (GISTIC -2) or grade 4 -> astrocytoma grade 4 (1); else astrocytoma grade 2-3 (2).
    """
    idh, codel = np.asarray(idh_mutant, bool), np.asarray(codeleted, bool)
    g4 = (np.asarray(cdkn2a) == -2) | (np.asarray(grade) == 4)
    return np.where(~idh, 0, np.where(codel, 3, np.where(g4, 1, 2)))


@dataclass
class GeneWorld:
    """Gene sets, expression structure and tissue prototypes of the subspace cohort.

    Attributes:
        gmt: set name -> genes (TUMOR_*, TME_*, SYN_*), in file order.
        genes: expression genes (every set gene plus genes in no set), in file order.
        driver: set name -> what drives its activity (``z_T``, ``z_E``, ``idh_mutant``, ``codel``, ``none``).
        base: baseline expression per gene; loadings: ``[genes, sets]`` positive loadings.
        tumor_protos, tme_protos: ``[4, dim]`` tissue prototypes of each compartment.
        tumor_axis, tme_axis: unit ``[dim]`` appearance directions shifted by z_T / z_E.
    """

    gmt: dict[str, list[str]]
    genes: list[str]
    driver: dict[str, str]
    base: np.ndarray
    loadings: np.ndarray
    tumor_protos: np.ndarray
    tme_protos: np.ndarray
    tumor_axis: np.ndarray
    tme_axis: np.ndarray


def draw_subspace_genes(rng: np.random.Generator, n_tumor: int, n_tme: int, n_other: int, size: tuple[int, int],
                        n_extra: int, dim: int) -> GeneWorld:
    """Disjoint gene sets (see the module docstring), expression structure and tissue prototypes."""
    names = (_names("TUMOR", TUMOR_THEMES, n_tumor) + ["TUMOR_GCIMP", "TUMOR_CHR1P19Q"]
             + _names("TME", TME_THEMES, n_tme) + _names("SYN", PATHWAY_THEMES, n_other))
    drivers = ["z_T"] * n_tumor + ["idh_mutant", "codel"] + ["z_E"] * n_tme + ["none"] * n_other
    sizes = rng.integers(size[0], size[1] + 1, size=len(names))
    symbols = gene_symbols(rng, int(sizes.sum()) + n_extra)
    gmt, start = {}, 0
    for name, k in zip(names, sizes):
        gmt[name] = symbols[start:start + int(k)]
        start += int(k)
    genes = [symbols[j] for j in rng.permutation(len(symbols))]
    index = {g: i for i, g in enumerate(genes)}
    loadings = np.zeros((len(genes), len(names)))
    for p, name in enumerate(names):
        # a signature has core genes that follow its driver strongly and members that barely do, so in
        # stored (log-scale) expression the informative genes are also the variable ones, as in real
        # transcriptomes (what highly-variable-gene selection relies on)
        core = rng.random(len(gmt[name])) < CORE_FRACTION
        for g, is_core in zip(gmt[name], core):
            loadings[index[g], p] = rng.uniform(0.8, 1.4) if is_core else rng.uniform(0.05, 0.35)
    base = rng.uniform(3.0, 11.0, size=len(genes))
    tumor_protos, tme_protos = rng.standard_normal((4, dim)), rng.standard_normal((4, dim))
    axes = np.linalg.qr(rng.standard_normal((dim, 2)))[0].T  # two orthonormal appearance directions
    return GeneWorld(gmt, genes, dict(zip(names, drivers)), base, loadings, tumor_protos, tme_protos, axes[0], axes[1])


@dataclass
class Glioma:
    """The patients of the subspace cohort (arrays of length n; grade as 2, 3, 4)."""

    z_t: np.ndarray
    z_e: np.ndarray
    idh_mutant: np.ndarray
    codel: np.ndarray
    cdkn2a: np.ndarray
    grade: np.ndarray
    who: np.ndarray
    who_written: np.ndarray
    grade_written: np.ndarray
    z_t_slide: np.ndarray
    z_e_slide: np.ndarray
    risk: np.ndarray
    t_event: np.ndarray
    t_cens: np.ndarray
    age: np.ndarray
    expression: np.ndarray  # [n, genes]


def _flip(rng: np.random.Generator, labels: np.ndarray, k: int, p: float) -> np.ndarray:
    """``labels`` (0..k-1) with each replaced, with probability ``p``, by a uniformly drawn other class."""
    other = (labels + rng.integers(1, k, size=len(labels))) % k
    return np.where(rng.random(len(labels)) < p, other, labels)


def draw_glioma_patients(rng: np.random.Generator, n: int, world: GeneWorld, *, factor_correlation: float,
                         morphology_noise: float, label_noise: float, expression_noise: float,
                         risk_weights: tuple[float, float, float], scale_months: float, weibull_shape: float
                         ) -> Glioma:
    """Latent factors, molecular calls, grade, WHO class, noisy labels, survival and expression."""
    z_t = rng.standard_normal(n)
    z_e = factor_correlation * z_t + np.sqrt(1 - factor_correlation ** 2) * rng.standard_normal(n)
    idh = rng.random(n) < expit(-2.2 * z_t + 0.4)
    codel = idh & (rng.random(n) < expit(-1.2 * z_t - 0.9))
    u = rng.random(n)
    p_homdel = expit(1.8 * z_t - 2.3)
    cdkn2a = np.where(u < p_homdel, -2, np.where(u < p_homdel + 0.15, -1, 0))
    score = 0.9 * z_t + 0.6 * z_e + rng.normal(0, 0.5, size=n)
    # cut at the 30 % and 60 % quantiles of the score's distribution (sd^2 = 0.81 + 0.36 + 1.08 rho + 0.25)
    grade = 2 + np.searchsorted(np.array([-0.52, 0.25]) * np.sqrt(1.42 + 1.08 * factor_correlation), score)
    grade = np.where(codel, np.minimum(grade, 3), grade)
    who = who2021_class(idh, codel, cdkn2a, grade)
    who_written = _flip(rng, who, len(WHO_CLASSES), label_noise)
    grade_written = 2 + _flip(rng, grade - 2, len(GRADES), label_noise)
    z_t_slide = z_t + rng.normal(0, morphology_noise, size=n)
    z_e_slide = z_e + rng.normal(0, morphology_noise, size=n)
    w_t, w_e, w_mol = risk_weights
    risk = w_t * z_t + w_e * z_e + w_mol * ((~idh).astype(float) - 0.5 * codel)
    t_event = scale_months * (rng.exponential(1.0, size=n) / np.exp(risk)) ** (1 / weibull_shape)
    t_cens = scale_months * rng.uniform(0.05, 1.3, size=n)
    age = np.clip(np.round(np.where(idh, rng.normal(40, 12, size=n), rng.normal(60, 11, size=n))), 18, 89).astype(int)
    drive = {"z_T": z_t, "z_E": z_e, "idh_mutant": 2.0 * idh - 1.0, "codel": -2.0 * codel, "none": np.zeros(n)}
    noise_sd = {"z_T": 0.5, "z_E": 0.5, "idh_mutant": 0.3, "codel": 0.3, "none": 1.0}
    activity = np.stack([drive[d] + rng.normal(0, noise_sd[d], size=n) for d in world.driver.values()], axis=1)
    expression = world.base[None, :] + activity @ world.loadings.T + rng.normal(0, expression_noise,
                                                                                 size=(n, len(world.genes)))
    return Glioma(z_t, z_e, idh, codel, cdkn2a, grade, who, who_written, grade_written, z_t_slide, z_e_slide, risk,
                  t_event, t_cens, age, expression)


def make_compartment_slide(rng: np.random.Generator, n_p: int, world: GeneWorld, z_t: float, z_e: float,
                           idh_mutant: bool, codel: bool, *, molecular_morphology: float, appearance: float,
                           noise: float, molecular_fraction: float = 1.0) -> dict[str, np.ndarray]:
    """One slide: a tissue blob split into contiguous tumor and TME regions, at 20x and 10x.

    Tumor patches mix the tumor prototypes with abundances ``softmax(slopes * z_t (+ molecular terms))``
    varying smoothly in space and shift along ``tumor_axis`` by ``appearance * z_t``; TME patches do the
    same with the TME prototypes, z_e and ``tme_axis``. ``z_t`` / ``z_e`` are the slide's noisy views.

    The molecular terms (``molecular_morphology`` x the oligodendroglial prototype when codeleted and
    the necrosis prototype when IDH-wildtype) act on every tumor patch with ``molecular_fraction`` 1
    (diffuse hints: they move the slide's mean feature). Below 1 they act only on a contiguous focus of
    that share of the tumor patches (the top of a smooth random field over the tumor region), as focal
    hallmarks such as necrosis or a regional oligodendroglial pattern do: a mean over all patches then
    barely shows them, while a model that finds the focus can. The extra field is drawn only below 1,
    so the default draws are unchanged.

    Returns:
        dict with ``features`` / ``coords`` (20x), ``features_10x`` / ``coords_10x``, ``tumor`` (bool per 20x
        patch), ``molecular`` (bool per 20x patch: the molecular terms act on it and are non-zero) and
        ``tumor_fraction_10x`` (share of tumor patches in each 10x patch).
    """
    mask = tissue_mask(rng, n_p)
    h, wd = mask.shape
    rows, cols = np.nonzero(mask)
    region = smooth_field(rng, (h, wd), sigma=max(2.0, np.sqrt(n_p) / 5))[rows, cols]
    frac = rng.uniform(0.35, 0.65)
    tumor = region > np.quantile(region, 1 - frac) if n_p > 1 else np.ones(n_p, bool)
    hint = molecular_morphology * np.array([0.0, 1.2 * codel, 0.0, 0.8 * (not idh_mutant)])
    logit_e = _TME_SLOPES * z_e
    fields = np.stack([smooth_field(rng, (h, wd), sigma=1.8)[rows, cols] for _ in range(8)], axis=1)
    if molecular_fraction >= 1.0:
        affected = tumor.copy()
    else:
        focus = smooth_field(rng, (h, wd), sigma=max(1.5, np.sqrt(n_p) / 8))[rows, cols]
        n_focus = int(round(molecular_fraction * tumor.sum()))
        affected = np.zeros(n_p, bool)
        if n_focus > 0:
            idx = np.flatnonzero(tumor)
            affected[idx[np.argsort(-focus[idx], kind="stable")[:n_focus]]] = True
    logit_t = (_TUMOR_SLOPES * z_t)[None, :] + affected[:, None] * hint[None, :]
    mix_t = softmax((logit_t + 1.5 * fields[:, :4]) / 0.7)
    mix_e = softmax((logit_e[None, :] + 1.5 * fields[:, 4:]) / 0.7)
    clean = np.where(tumor[:, None], mix_t @ world.tumor_protos + appearance * z_t * world.tumor_axis,
                     mix_e @ world.tme_protos + appearance * z_e * world.tme_axis)
    stain = rng.normal(0, 0.1, size=clean.shape[1])
    feats = clean + stain + rng.normal(0, noise, size=clean.shape)
    x0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    y0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    coords = np.stack([x0 + cols * PATCH_20X, y0 + rows * PATCH_20X], axis=1).astype(np.int64)
    f10, c10, parent = pool_2x2(rng, rows, cols, wd, feats, 0.3 * noise, x0, y0)
    share = np.bincount(parent, weights=tumor.astype(float)) / np.bincount(parent)
    return {"features": feats.astype(np.float32), "coords": coords, "features_10x": f10, "coords_10x": c10,
            "tumor": tumor, "molecular": affected & bool(np.any(hint != 0)),
            "tumor_fraction_10x": share.astype(np.float32)}
