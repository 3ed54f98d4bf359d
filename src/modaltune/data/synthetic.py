"""A synthetic multi-modal TCGA-like cohort written in the standard on-disk formats.

:func:`make_synthetic` writes what a real user has after running TRIDENT/CLAM on their slides and
downloading GDC/Xena tables, so the synthetic data travels the real ingestion road
(``data.formats`` -> ``data.cohort.prepare_cohort``)::

    out/
      features_20x/<slide_id>.h5   TRIDENT/CLAM h5: `features` float32 [N, dim], `coords` int64 [N, 2]
                                   (level-0 pixels, level 0 = 20x, 256-px grid), attrs patch_size=256,
                                   magnification=20, patch_size_level0=256, ...
      features_10x/<slide_id>.h5   the same slides at 10x: 512-px level-0 grid, features pooled 2x2 from
                                   the 20x tissue + fresh noise (magnification=10, patch_size_level0=512)
      clinical.tsv                 GDC clinical TSV (`'--` = empty): case_submitter_id, project_id,
                                   primary_diagnosis, ajcc_pathologic_stage/_t/_n/_m, vital_status,
                                   days_to_death, days_to_last_follow_up, age_at_index
      expression.tsv               Xena genes x samples, first column `sample`, log2-scale values,
                                   one column per sample barcode TCGA-XX-XXXX-01 (one case also has -11)
      pathways.gmt                 GMT gene sets (name, description, genes...)
      reports.csv                  case_id,text short pathology reports (most patients)
      truth.csv                    per case: true risk, subtype, site, morphology fraction, pathway activity...
      truth_slides.csv             per slide: case, patch counts, realised aggressive fraction
      truth.json                   parameters, oracle C-index and event rate per site, planted structure

Slide ids are TCGA slide barcodes ``TCGA-XX-XXXX-01Z-00-DX1`` (the case id is the first 12
characters); some patients have 2-3 slides (DX2, DX3).

Generative model (per site ``s``, patient ``i``):

* Subtype ``c_i`` ~ Categorical(site class frequencies, imbalanced) or, with a small probability
  (BRCA, NSCLC, COADREAD), a Rare-set diagnosis of ModalTune Table 4. The GDC ``primary_diagnosis``
  string and ``project_id`` follow from the subtype (e.g. NSCLC class 1 -> TCGA-LUSC,
  "Squamous cell carcinoma, NOS"); :data:`DIAGNOSIS_CLASS` lists the mapping.
* Stage ``g_i`` in {1..4} ~ site stage frequencies, with consistent TNM strings; a few patients have
  the stage hidden (``'--``) in the clinical table (stage remains in the true risk).
* Pathway activities ``a_i`` in R^P: ``a_i = mu[s, c_i] + N(0, I)``; ``mu`` shifts six "subtype
  pathways" per class by +-U(0.8, 1.4). Expression (log2 scale)
  ``x_ig = base_g + batch[s, g] + sum_{p: g in p} load_gp a_ip + N(0, 0.5^2)`` with positive loadings.
  Three "prognostic pathways" (disjoint from the subtype pathways) with signs give the pathway score
  ``r_i = sum_p sign_p a_ip / sqrt(3)``.
* Morphology: K prototype vectors ``P_k`` in R^dim (tissue types; prototype 0 = "high-grade tumour",
  the aggressive one). Patient mixture ``w_i = (f_i, (1 - f_i) Dirichlet(12 pi[s, c_i]))`` with
  ``f_i ~ Beta(1.5, 5)`` and subtype-specific profiles ``pi = softmax(site + class logits)`` (each
  subtype has a signature prototype). Each slide is a blob-shaped tissue region
  on the 20x grid; per prototype a smooth Gaussian random field ``z_k`` is drawn on the grid and each
  patch's mixing weights are ``m = softmax((log w_i + 1.5 z) / 0.5)`` (neighbours share prototypes).
  Patch feature ``h = (m @ P + slide_stain + N(0, noise^2)) * (1 + gamma_s) + delta_s`` where
  ``(gamma_s, delta_s)`` is a per-site batch effect (larger for OOD sites). The morphology fraction
  ``phi_i`` is the realised mean weight of prototype 0 over all of the patient's 20x patches.
* Risk ``eta_i = b_stage z(g_i) + b_path z(r_i) + b_morph z(phi_i)`` (z = within-site
  standardisation); stage is seen only in the clinical table, ``r`` only in expression, ``phi`` only in
  the slides, so each modality alone predicts survival worse than all together.
  Event time ``T = lambda_s (E / exp(eta))^(1/k)``, E ~ Exp(1), Weibull shape k = 1.4; independent
  censoring ``C = lambda_s * U(0.05, 1.3)`` (about 40-50 % events). Observed months = min(T, C) (written
  as days = round(months * 30.44)); the oracle C-index is Harrell's C of ``eta`` on the written times.
* Reports name site, diagnosis and stage/TNM (or "not reported") and a histologic grade loosely tied to
  ``phi`` (so text carries a weak morphology proxy).

Everything is drawn from ``numpy.random.default_rng`` streams derived from ``seed``, so the same seed
writes byte-identical files (h5 datasets use ``track_times=False``).
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from ..errors import ConfigError

__all__ = [
    "SITES",
    "DIAGNOSIS_CLASS",
    "PROTOTYPE_NAMES",
    "DEFAULT_PATIENTS",
    "make_synthetic",
    "harrell_c_index",
]

GDC_EMPTY = "'--"
DAYS_PER_MONTH = 30.44
_GENERATOR = "modaltune.data.synthetic.make_synthetic"
PATCH_20X = 256  # level-0 pixels of one 20x patch (level 0 = 20x, 0.5 um/px)

PROTOTYPE_NAMES = (
    "high_grade_tumour",  # index 0: the aggressive prototype
    "tumour_epithelium",
    "glandular",
    "squamous_or_papillary",
    "stroma",
    "lymphocytes",
    "necrosis_debris",
    "adipose_normal",
)


@dataclass(frozen=True)
class _Class:
    name: str  # ModalTune Table 4 class name
    freq: float
    variants: tuple[tuple[str, str, float], ...]  # (project_id, GDC primary_diagnosis, weight)


@dataclass(frozen=True)
class _Site:
    location: str
    classes: tuple[_Class, ...]
    rare_freq: float
    rare: tuple[tuple[str, str], ...]  # (project_id, GDC primary_diagnosis)
    stage_freq: tuple[float, float, float, float] | None  # None: no AJCC staging (GBMLGG)
    substages: tuple[tuple[str, ...], ...]  # per stage 1..4, GDC "Stage ..." strings
    t_codes: tuple[tuple[str, ...], ...]  # per stage 1..4
    scale_months: float  # Weibull scale of the event times
    tss: Mapping[str, tuple[str, ...]]  # project -> tissue source site codes
    organ: str  # specimen words for reports


_T_GENERIC = (("T1",), ("T2",), ("T3", "T4"), ("T2", "T3", "T4"))
_T_SUB = (("T1a", "T1b", "T1c", "T1"), ("T2", "T2a", "T2b", "T1c"), ("T3", "T4", "T4a", "T4b"),
          ("T2", "T3", "T4", "T4b"))

SITES: dict[str, _Site] = {
    "BRCA": _Site(
        location="breast",
        classes=(
            _Class("Infiltrating duct carcinoma", 0.70, (("TCGA-BRCA", "Infiltrating duct carcinoma, NOS", 1.0),)),
            _Class("Lobular carcinoma", 0.19, (("TCGA-BRCA", "Lobular carcinoma, NOS", 1.0),)),
        ),
        rare_freq=0.11,
        rare=(("TCGA-BRCA", "Infiltrating duct and lobular carcinoma"),
              ("TCGA-BRCA", "Infiltrating duct mixed with other types of carcinoma"),
              ("TCGA-BRCA", "Mucinous adenocarcinoma"),
              ("TCGA-BRCA", "Metaplastic carcinoma, NOS"),
              ("TCGA-BRCA", "Medullary carcinoma, NOS")),
        stage_freq=(0.18, 0.56, 0.23, 0.03),
        substages=(("Stage I", "Stage IA", "Stage IB"), ("Stage IIA", "Stage IIB"),
                   ("Stage IIIA", "Stage IIIB", "Stage IIIC"), ("Stage IV",)),
        t_codes=_T_SUB, scale_months=90.0,
        tss={"TCGA-BRCA": ("A2", "AR", "BH", "E2", "D8", "A8")}, organ="breast, mastectomy",
    ),
    "NSCLC": _Site(
        location="lung",
        classes=(
            _Class("Lung adenocarcinoma", 0.46, (("TCGA-LUAD", "Adenocarcinoma, NOS", 0.85),
                                                 ("TCGA-LUAD", "Adenocarcinoma with mixed subtypes", 0.15))),
            _Class("Lung squamous cell carcinoma", 0.46, (
                ("TCGA-LUSC", "Squamous cell carcinoma, NOS", 0.85),
                ("TCGA-LUSC", "Squamous cell carcinoma, keratinizing, NOS", 0.10),
                ("TCGA-LUSC", "Squamous cell carcinoma, large cell, nonkeratinizing, NOS", 0.05))),
        ),
        rare_freq=0.08,
        rare=(("TCGA-LUAD", "Bronchiolo-alveolar carcinoma, non-mucinous"),
              ("TCGA-LUAD", "Papillary adenocarcinoma, NOS"),
              ("TCGA-LUAD", "Acinar cell carcinoma"),
              ("TCGA-LUAD", "Solid carcinoma, NOS"),
              ("TCGA-LUSC", "Basaloid squamous cell carcinoma"),
              ("TCGA-LUSC", "Papillary squamous cell carcinoma")),
        stage_freq=(0.50, 0.29, 0.17, 0.04),
        substages=(("Stage IA", "Stage IB"), ("Stage IIA", "Stage IIB"), ("Stage IIIA", "Stage IIIB"),
                   ("Stage IV",)),
        t_codes=_T_SUB, scale_months=45.0,
        tss={"TCGA-LUAD": ("05", "44", "49", "55", "78"), "TCGA-LUSC": ("18", "22", "33", "43", "56")},
        organ="lung, lobectomy",
    ),
    "RCC": _Site(
        location="kidney",
        classes=(
            _Class("Papillary renal cell carcinoma", 0.28, (("TCGA-KIRP", "Papillary adenocarcinoma, NOS", 1.0),)),
            _Class("Renal clear cell carcinoma", 0.60, (("TCGA-KIRC", "Clear cell adenocarcinoma, NOS", 1.0),)),
            _Class("Chromophobe renal cell carcinoma", 0.12,
                   (("TCGA-KICH", "Renal cell carcinoma, chromophobe type", 1.0),)),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=(0.50, 0.11, 0.22, 0.17),
        substages=(("Stage I",), ("Stage II",), ("Stage III",), ("Stage IV",)),
        t_codes=(("T1", "T1a", "T1b"), ("T2", "T2a"), ("T3", "T3a", "T3b"), ("T2", "T3a", "T4")),
        scale_months=70.0,
        tss={"TCGA-KIRP": ("2Z", "B9", "DW", "G7"), "TCGA-KIRC": ("A3", "B0", "CJ", "CZ"),
             "TCGA-KICH": ("KL", "KM", "KN", "KO")},
        organ="kidney, nephrectomy",
    ),
    "BLCA": _Site(
        location="bladder",
        classes=(
            _Class("Transitional cell carcinoma", 0.80, (("TCGA-BLCA", "Transitional cell carcinoma", 1.0),)),
            _Class("Papillary transitional cell carcinoma", 0.20,
                   (("TCGA-BLCA", "Papillary transitional cell carcinoma", 1.0),)),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=(0.02, 0.32, 0.35, 0.31),
        substages=(("Stage I",), ("Stage II",), ("Stage III",), ("Stage IV",)),
        t_codes=(("T1",), ("T2", "T2a", "T2b"), ("T3", "T3a", "T3b", "T4a"), ("T3", "T4", "T4a", "T4b")),
        scale_months=35.0,
        tss={"TCGA-BLCA": ("BT", "DK", "FD", "ZF", "XF")}, organ="urinary bladder, cystectomy",
    ),
    "COADREAD": _Site(
        location="colorectum",
        classes=(
            _Class("Colon adenocarcinoma", 0.74, (("TCGA-COAD", "Adenocarcinoma, NOS", 1.0),)),
            _Class("Rectal adenocarcinoma", 0.18, (("TCGA-READ", "Adenocarcinoma, NOS", 1.0),)),
        ),
        rare_freq=0.08,
        rare=(("TCGA-COAD", "Mucinous adenocarcinoma"), ("TCGA-COAD", "Papillary adenocarcinoma, NOS"),
              ("TCGA-READ", "Mucinous adenocarcinoma"), ("TCGA-READ", "Adenocarcinoma in tubolovillous adenoma"),
              ("TCGA-READ", "Tubular adenocarcinoma")),
        stage_freq=(0.17, 0.37, 0.29, 0.17),
        substages=(("Stage I",), ("Stage IIA", "Stage IIB"), ("Stage IIIA", "Stage IIIB", "Stage IIIC"),
                   ("Stage IV", "Stage IVA")),
        t_codes=(("T1", "T2"), ("T3", "T4a"), ("T3", "T4a", "T4b"), ("T3", "T4", "T4b")),
        scale_months=60.0,
        tss={"TCGA-COAD": ("A6", "AA", "AZ", "CM"), "TCGA-READ": ("AF", "AG", "DC")},
        organ="colon/rectum, resection",
    ),
    "GBMLGG": _Site(
        location="brain",
        classes=(
            _Class("Glioblastoma", 0.42, (("TCGA-GBM", "Glioblastoma", 1.0),)),
            _Class("Glioma", 0.58, (("TCGA-LGG", "Mixed glioma", 0.25), ("TCGA-LGG", "Oligodendroglioma, NOS", 0.2),
                                    ("TCGA-LGG", "Astrocytoma, NOS", 0.2),
                                    ("TCGA-LGG", "Oligodendroglioma, anaplastic", 0.15),
                                    ("TCGA-LGG", "Astrocytoma, anaplastic", 0.2))),
        ),
        rare_freq=0.0, rare=(),
        stage_freq=None, substages=(), t_codes=(),
        scale_months=30.0,
        tss={"TCGA-GBM": ("02", "06", "12", "19"), "TCGA-LGG": ("CS", "DB", "DU", "HT")},
        organ="brain, resection",
    ),
}

#: GDC ``primary_diagnosis`` -> (site, ModalTune Table 4 class name or "Rare-set") as generated here.
#: Note: COADREAD "Adenocarcinoma, NOS" is colon or rectal by ``project_id`` (TCGA-COAD / TCGA-READ).
DIAGNOSIS_CLASS: dict[tuple[str, str], str] = {}
for _site_name, _spec in SITES.items():
    for _cls in _spec.classes:
        for _proj, _diag, _w in _cls.variants:
            DIAGNOSIS_CLASS[(_site_name, _diag)] = _cls.name
    for _proj, _diag in _spec.rare:
        DIAGNOSIS_CLASS.setdefault((_site_name, _diag), "Rare-set")
del _site_name, _spec, _cls, _proj, _diag, _w

#: Patients per site when ``patients`` is not given (class/size imbalance across sites, as in TCGA).
DEFAULT_PATIENTS = {"BRCA": 100, "NSCLC": 90, "RCC": 90, "BLCA": 60, "COADREAD": 70, "GBMLGG": 80}

# symbol families: (pattern, number range, fills of {s}) -> e.g. SLC12A4, ZNF512, KRT8, HOXB7, SERPINE1
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

_PATHWAY_THEMES = ("HYPOXIA", "EMT", "G2M_CHECKPOINT", "E2F_TARGETS", "MYC_TARGETS", "P53_PATHWAY",
                   "INTERFERON_GAMMA", "TNFA_NFKB", "KRAS_SIGNALING", "ANGIOGENESIS", "GLYCOLYSIS",
                   "OXPHOS", "WNT_BETA_CATENIN", "NOTCH_SIGNALING", "HEDGEHOG", "TGF_BETA",
                   "IL6_JAK_STAT3", "ESTROGEN_RESPONSE", "ANDROGEN_RESPONSE", "APOPTOSIS", "DNA_REPAIR",
                   "MTORC1", "PI3K_AKT", "UV_RESPONSE", "XENOBIOTIC", "FATTY_ACID", "COMPLEMENT",
                   "COAGULATION", "KERATINIZATION", "UNFOLDED_PROTEIN", "CHOLESTEROL", "ALLOGRAFT",
                   "INFLAMMATORY", "SPERMATOGENESIS", "MITOTIC_SPINDLE", "PEROXISOME", "HEME",
                   "ADIPOGENESIS", "MYOGENESIS", "BILE_ACID", "PANCREAS_BETA", "APICAL_JUNCTION",
                   "APICAL_SURFACE", "PROTEIN_SECRETION", "REACTIVE_OXYGEN", "IFN_ALPHA", "KRAS_DN",
                   "UV_DN")


# ---------------------------------------------------------------------------------------------
# small helpers


def harrell_c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of ``risk`` (higher = earlier event) on right-censored ``time``/``event``.

    Comparable pairs: ``time_i < time_j`` with an event at ``i``; ties in risk count one half.
    Returns NaN when no pair is comparable.
    """
    t = np.asarray(time, float)
    e = np.asarray(event, bool)
    r = np.asarray(risk, float)
    comp = (t[:, None] < t[None, :]) & e[:, None]
    n = comp.sum()
    if n == 0:
        return float("nan")
    conc = ((r[:, None] > r[None, :]) & comp).sum() + 0.5 * ((r[:, None] == r[None, :]) & comp).sum()
    return float(conc / n)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    ex = np.exp(x)
    return ex / ex.sum(axis=axis, keepdims=True)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *key])


def _gene_symbols(rng: np.random.Generator, n: int) -> list[str]:
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


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    sd = f.std()
    return (f - f.mean()) / (sd if sd > 0 else 1.0)


def _tissue_mask(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boolean grid with exactly ``n`` True cells forming one blob (smooth radial score, top-n)."""
    side = int(math.ceil(math.sqrt(n * 2.2))) + 4
    h = side + int(rng.integers(0, max(2, side // 3)))
    w = side + int(rng.integers(0, max(2, side // 3)))
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ay, ax = rng.uniform(0.7, 1.3, size=2)
    r2 = ((yy - cy) / (ay * h / 4)) ** 2 + ((xx - cx) / (ax * w / 4)) ** 2
    score = -r2 + 0.6 * _smooth_field(rng, (h, w), sigma=2.0)
    flat = np.argsort(-score.ravel(), kind="stable")[:n]
    mask = np.zeros(h * w, bool)
    mask[flat] = True
    return mask.reshape(h, w)


def _fmt_int(x: float | None) -> str:
    return GDC_EMPTY if x is None or (isinstance(x, float) and math.isnan(x)) else str(int(x))


# ---------------------------------------------------------------------------------------------
# main entry point


def make_synthetic(
    out: str | Path,
    *,
    seed: int = 0,
    sites: Sequence[str] = ("BRCA", "NSCLC", "RCC", "BLCA"),
    ood_sites: Sequence[str] = ("BLCA",),
    patients: int | Mapping[str, int] | None = None,
    dim: int = 64,
    patches: tuple[int, int] = (64, 384),
    n_prototypes: int = 8,
    n_pathways: int = 32,
    pathway_size: tuple[int, int] = (10, 40),
    n_extra_genes: int = 40,
    n_absent_genes: int = 6,
    risk_weights: tuple[float, float, float] = (0.9, 0.9, 0.9),
    feature_noise: float = 0.6,
    site_shift: float = 0.25,
    ood_shift: float = 1.0,
    multi_slide: tuple[float, float] = (0.18, 0.07),
    frac_missing_stage: float = 0.05,
    frac_missing_expression: float = 0.06,
    frac_missing_report: float = 0.10,
    secondary: bool = True,
    slide_uuid_suffix: bool = False,
) -> dict[str, Any]:
    """Write a synthetic multi-modal cohort in standard formats (see the module docstring).

    Args:
        out: output directory (created; existing files of the same names are overwritten).
        seed: random seed; the same seed writes identical files.
        sites: TCGA sites among :data:`SITES` (BRCA, NSCLC, RCC, BLCA, COADREAD, GBMLGG).
        ood_sites: sites meant for out-of-distribution evaluation (they get a larger batch shift).
        patients: patients per site (int for every site, or a mapping site -> count);
            default :data:`DEFAULT_PATIENTS`.
        dim: patch-feature width.
        patches: (min, max) 20x patches per slide.
        n_prototypes: morphology prototypes (>= 4); prototype 0 is the aggressive one.
        n_pathways: gene sets in the GMT (>= 8).
        pathway_size: (min, max) genes per gene set.
        n_extra_genes: expression genes in no gene set.
        n_absent_genes: GMT genes missing from the expression matrix.
        risk_weights: log-hazard weights of (stage, pathway score, morphology fraction), each
            standardised within site.
        feature_noise: patch-level feature noise (standard deviation per dimension).
        site_shift: scale of the per-site additive feature batch effect (in-domain sites).
        ood_shift: the same for ``ood_sites``.
        multi_slide: probabilities of 2 and of 3 slides per patient.
        frac_missing_stage: fraction of patients per site whose stage/TNM are `'--` in clinical.tsv.
        frac_missing_expression: fraction of patients per site without an expression sample.
        frac_missing_report: fraction of patients without a report.
        secondary: also write the 10x features.
        slide_uuid_suffix: name slides like the TCGA files, ``TCGA-..-DX1.<UUID>``.

    Returns:
        dict with the written paths (``out``, ``features``, ``features_secondary``, ``clinical``,
        ``expression``, ``gene_sets``, ``reports``, ``truth``, ``truth_slides``, ``truth_json``), the
        ``sites``/``ood_sites``, ``oracle_c_index`` (site -> float), ``event_rate`` (site -> float)
        and a ``summary`` dict of counts.
    """
    sites = tuple(str(s).upper() for s in sites)
    ood_sites = tuple(str(s).upper() for s in ood_sites)
    _validate(sites, ood_sites, dim, patches, n_prototypes, n_pathways, pathway_size, multi_slide)
    n_per_site = _patients_per_site(patients, sites)

    out = Path(out)
    feat_dir = out / "features_20x"
    feat_dir2 = out / "features_10x"
    _clear_previous(out, (feat_dir, feat_dir2))
    feat_dir.mkdir(parents=True, exist_ok=True)
    if secondary:
        feat_dir2.mkdir(parents=True, exist_ok=True)

    # ---- global structure: genes, pathways, prototypes -------------------------------------
    g_rng = _rng(seed, 0)
    gmt, expr_genes, prognostic, signs = _make_gene_sets(
        g_rng, n_pathways, pathway_size, n_extra_genes, n_absent_genes)
    pw_names = list(gmt)
    gene_index = {g: i for i, g in enumerate(expr_genes)}
    n_genes = len(expr_genes)
    base_expr = g_rng.uniform(3.0, 11.0, size=n_genes)
    loadings = np.zeros((n_genes, n_pathways))
    for p, name in enumerate(pw_names):
        for g in gmt[name]:
            if g in gene_index:
                loadings[gene_index[g], p] = g_rng.uniform(0.4, 0.9)
    non_prog = np.array([p for p in range(n_pathways) if p not in prognostic])
    prototypes = g_rng.standard_normal((n_prototypes, dim)).astype(np.float64)

    used_ids: set[str] = set()
    clinical_rows: list[dict] = []
    truth_rows: list[dict] = []
    slide_rows: list[dict] = []
    expr_cols: dict[str, np.ndarray] = {}
    reports: list[tuple[str, str]] = []
    oracle: dict[str, float] = {}
    event_rate: dict[str, float] = {}
    two_sample_case: str | None = None

    for si, site in enumerate(sites):
        spec = SITES[site]
        rng = _rng(seed, 1, si + 1, sum(map(ord, site)))
        n = n_per_site[site]
        ood = site in ood_sites
        n_cls = len(spec.classes)
        n_lat = n_cls + (1 if spec.rare else 0)  # latent subtype profiles (rare-set shares one)

        # site-level parameters
        delta = rng.normal(0, ood_shift if ood else site_shift, size=dim)
        gamma = rng.normal(0, 0.15 if ood else 0.05, size=dim)
        expr_batch = rng.normal(0, 0.5 if ood else 0.2, size=n_genes)
        site_logits = rng.normal(0, 0.7, size=n_prototypes - 1)
        # subtype morphology profiles: each latent subtype has its own signature prototype (+ random)
        signature = rng.permutation(n_prototypes - 1)[np.arange(n_lat) % (n_prototypes - 1)]
        class_logits = rng.normal(0, 1.0, size=(n_lat, n_prototypes - 1))
        class_logits[np.arange(n_lat), signature] += 1.6
        profiles = _softmax(site_logits[None, :] + class_logits)
        # subtype pathway shifts on (where possible disjoint) blocks of non-prognostic pathways
        per = max(1, min(6, len(non_prog) // n_lat))
        order = rng.permutation(non_prog)
        mu = np.zeros((n_lat, n_pathways))
        for c in range(n_lat):
            chosen = order[(c * per + np.arange(per)) % len(order)]
            mu[c, chosen] = rng.choice([-1.0, 1.0], size=per) * rng.uniform(0.8, 1.4, size=per)

        # patients
        probs = np.array([c.freq for c in spec.classes]) * (1 - spec.rare_freq) / sum(c.freq for c in spec.classes)
        if spec.rare:
            probs = np.append(probs, spec.rare_freq)
        lat = rng.choice(n_lat, size=n, p=probs / probs.sum())
        if spec.rare and n >= 10 and not (lat == n_cls).any():  # at least one rare-set patient
            lat[rng.integers(n)] = n_cls
        stage = (rng.choice(4, size=n, p=np.array(spec.stage_freq)) + 1) if spec.stage_freq else np.zeros(n, int)
        hide_stage = np.zeros(n, bool)
        if spec.stage_freq and frac_missing_stage > 0:
            hide_stage[rng.choice(n, size=max(1, round(frac_missing_stage * n)), replace=False)] = True
        no_expr = np.zeros(n, bool)
        if frac_missing_expression > 0 and n >= 4:
            no_expr[rng.choice(n, size=max(1, round(frac_missing_expression * n)), replace=False)] = True
        no_report = rng.random(n) < frac_missing_report
        n_slides = 1 + (rng.random(n) < multi_slide[0] + multi_slide[1]).astype(int)
        n_slides += (n_slides == 2) & (rng.random(n) < multi_slide[1] / max(1e-9, sum(multi_slide)))
        if n >= 2 and sum(multi_slide) > 0 and not (n_slides > 1).any():
            n_slides[rng.integers(n)] = 2
        f_agg = rng.beta(1.5, 5.0, size=n)
        activity = mu[lat] + rng.standard_normal((n, n_pathways))
        age = np.clip(np.round(rng.normal(61, 12, size=n)), 26, 90).astype(int)

        # identities
        projects, diagnoses, class_names, class_idx = [], [], [], []
        for i in range(n):
            if lat[i] < n_cls:
                cls = spec.classes[lat[i]]
                w = np.array([v[2] for v in cls.variants])
                proj, diag, _ = cls.variants[rng.choice(len(w), p=w / w.sum())]
                class_names.append(cls.name)
                class_idx.append(int(lat[i]))
            else:
                proj, diag = spec.rare[rng.integers(len(spec.rare))]
                class_names.append("Rare-set")
                class_idx.append(-1)
            projects.append(proj)
            diagnoses.append(diag)
        cases = [_new_case_id(rng, spec.tss[projects[i]], used_ids) for i in range(n)]

        # slides (20x + 10x) and realised morphology fraction
        morph = np.zeros(n)
        for i in range(n):
            w_non = rng.dirichlet(12.0 * profiles[lat[i]] + 0.05)
            w = np.concatenate([[f_agg[i]], (1 - f_agg[i]) * w_non])
            agg_sum, agg_n = 0.0, 0
            for k in range(n_slides[i]):
                slide_id = f"{cases[i]}-01Z-00-DX{k + 1}"
                if slide_uuid_suffix:
                    hexs = "".join(f"{b:02X}" for b in rng.integers(0, 256, size=16))
                    slide_id += f".{hexs[:8]}-{hexs[8:12]}-{hexs[12:16]}-{hexs[16:20]}-{hexs[20:]}"
                n_p = int(rng.integers(patches[0], patches[1] + 1))
                res = _make_slide(rng, n_p, w, prototypes, feature_noise, gamma, delta, secondary)
                _write_h5(feat_dir / f"{slide_id}.h5", res["features"], res["coords"], slide_id, cases[i],
                          magnification=20, patch_size_level0=PATCH_20X)
                if secondary:
                    _write_h5(feat_dir2 / f"{slide_id}.h5", res["features_10x"], res["coords_10x"], slide_id,
                              cases[i], magnification=10, patch_size_level0=2 * PATCH_20X)
                agg_sum += float(res["mix"][:, 0].sum())
                agg_n += n_p
                slide_rows.append({"slide_id": slide_id, "case_id": cases[i], "site": site,
                                   "n_patches_20x": n_p,
                                   "n_patches_10x": int(len(res["coords_10x"])) if secondary else 0,
                                   "morph_fraction": round(float(res["mix"][:, 0].mean()), 6)})
            morph[i] = agg_sum / agg_n

        # risk and survival
        path_score = (activity[:, prognostic] * signs).sum(1) / math.sqrt(len(prognostic))
        z_stage = _zscore(stage) if spec.stage_freq else np.zeros(n)
        risk = risk_weights[0] * z_stage + risk_weights[1] * _zscore(path_score) + risk_weights[2] * _zscore(morph)
        k_shape = 1.4
        t_event = spec.scale_months * (rng.exponential(1.0, size=n) / np.exp(risk)) ** (1 / k_shape)
        t_cens = spec.scale_months * rng.uniform(0.05, 1.3, size=n)
        event = t_event <= t_cens
        months = np.minimum(t_event, t_cens)
        days = np.maximum(1, np.round(months * DAYS_PER_MONTH)).astype(int)
        months_written = days / DAYS_PER_MONTH
        oracle[site] = round(harrell_c_index(months_written, event, risk), 4)
        event_rate[site] = round(float(event.mean()), 4)

        # expression
        expr = base_expr[None, :] + expr_batch[None, :] + activity @ loadings.T + rng.normal(0, 0.5, size=(n, n_genes))
        for i in range(n):
            if not no_expr[i]:
                if two_sample_case is None and si == 0:
                    two_sample_case = cases[i]
                    normal = base_expr + expr_batch + rng.normal(0, 0.5, size=n_genes)
                    expr_cols[f"{cases[i]}-11"] = normal  # file order: -11 first, the rule must pick -01
                expr_cols[f"{cases[i]}-01"] = expr[i]

        # tables
        for i in range(n):
            st = _stage_strings(rng, spec, int(stage[i])) if spec.stage_freq and not hide_stage[i] else None
            clinical_rows.append({
                "case_submitter_id": cases[i], "project_id": projects[i], "primary_diagnosis": diagnoses[i],
                "ajcc_pathologic_stage": st[0] if st else GDC_EMPTY,
                "ajcc_pathologic_t": st[1] if st else GDC_EMPTY,
                "ajcc_pathologic_n": st[2] if st else GDC_EMPTY,
                "ajcc_pathologic_m": st[3] if st else GDC_EMPTY,
                "vital_status": "Dead" if event[i] else "Alive",
                "days_to_death": _fmt_int(days[i]) if event[i] else GDC_EMPTY,
                "days_to_last_follow_up": GDC_EMPTY if event[i] else _fmt_int(days[i]),
                "age_at_index": str(age[i]),
            })
            if not no_report[i]:
                reports.append((cases[i], _report_text(rng, spec, diagnoses[i], st, morph[i])))
            truth_rows.append({
                "case_id": cases[i], "site": site, "project_id": projects[i], "ood": ood,
                "primary_diagnosis": diagnoses[i], "true_subtype": class_names[i], "subtype_index": class_idx[i],
                "rare": class_idx[i] == -1, "latent_subtype": int(lat[i]),
                "stage_true": int(stage[i]) if spec.stage_freq else -1,
                "stage_in_clinical": bool(spec.stage_freq) and not bool(hide_stage[i]),
                "morph_fraction": round(float(morph[i]), 6),
                "morph_fraction_target": round(float(f_agg[i]), 6),
                "pathway_activity": round(float(path_score[i]), 6),
                "risk": round(float(risk[i]), 6),
                "event_time_months": round(float(t_event[i]), 4),
                "censor_time_months": round(float(t_cens[i]), 4),
                "survival_months": round(float(months_written[i]), 4), "event": int(event[i]),
                "n_slides": int(n_slides[i]), "has_expression": not bool(no_expr[i]),
                "has_report": not bool(no_report[i]),
            })

    # ---- write tables -------------------------------------------------------------------------
    paths = {
        "out": out, "features": feat_dir, "features_secondary": feat_dir2 if secondary else None,
        "clinical": out / "clinical.tsv", "expression": out / "expression.tsv",
        "gene_sets": out / "pathways.gmt", "reports": out / "reports.csv", "truth": out / "truth.csv",
        "truth_slides": out / "truth_slides.csv", "truth_json": out / "truth.json",
    }
    pd.DataFrame(clinical_rows).to_csv(paths["clinical"], sep="\t", index=False, lineterminator="\n")
    expr_df = pd.DataFrame(expr_cols, index=pd.Index(expr_genes, name="sample"))
    expr_df.to_csv(paths["expression"], sep="\t", float_format="%.4f", lineterminator="\n")
    with open(paths["gene_sets"], "w", newline="\n") as fh:
        for name, genes in gmt.items():
            fh.write("\t".join([name, "synthetic gene set (modaltune)", *genes]) + "\n")
    pd.DataFrame(reports, columns=["case_id", "text"]).to_csv(paths["reports"], index=False, lineterminator="\n")
    truth = pd.DataFrame(truth_rows)
    truth.to_csv(paths["truth"], index=False, lineterminator="\n")
    pd.DataFrame(slide_rows).to_csv(paths["truth_slides"], index=False, lineterminator="\n")

    truth["n_slides"] = truth["n_slides"].astype(int)
    summary = {
        "n_patients": int(len(truth)),
        "n_slides": int(len(slide_rows)),
        "patients_per_site": {s: int((truth.site == s).sum()) for s in sites},
        "classes_per_site": {s: {k: int(v) for k, v in truth[truth.site == s].true_subtype.value_counts()
                                 .sort_index().items()} for s in sites},
        "multi_slide_patients": int((truth.n_slides > 1).sum()),
        "events": int(truth.event.sum()),
        "event_rate": round(float(truth.event.mean()), 4),
        "missing_stage": int((~truth.stage_in_clinical & (truth.stage_true > 0)).sum()),
        "missing_expression": int((~truth.has_expression).sum()),
        "missing_report": int((~truth.has_report).sum()),
        "two_sample_case": two_sample_case,
        "n_genes_expression": n_genes,
        "n_genes_gmt": len({g for gs in gmt.values() for g in gs}),
        "genes_absent_from_expression": sorted({g for gs in gmt.values() for g in gs} - set(expr_genes)),
        "n_pathways": n_pathways,
    }
    meta = {
        "generator": _GENERATOR,
        "seed": seed, "sites": list(sites), "ood_sites": list(ood_sites), "dim": dim,
        "patches": list(patches), "n_prototypes": n_prototypes, "prototype_names": _proto_names(n_prototypes),
        "aggressive_prototype": 0, "risk_weights": list(risk_weights),
        "weibull_shape": 1.4, "scale_months": {s: SITES[s].scale_months for s in sites},
        "prognostic_pathways": [pw_names[p] for p in prognostic], "prognostic_signs": [int(x) for x in signs],
        "oracle_c_index": oracle,
        "oracle_c_index_site_mean": round(float(np.mean(list(oracle.values()))), 4),
        "event_rate": event_rate, "summary": summary,
        "diagnosis_class": {f"{s}|{d}": c for (s, d), c in DIAGNOSIS_CLASS.items() if s in sites},
    }
    paths["truth_json"].write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")

    result: dict[str, Any] = dict(paths)
    result.update(sites=list(sites), ood_sites=list(ood_sites), oracle_c_index=oracle, event_rate=event_rate,
                  summary=summary, prognostic_pathways=meta["prognostic_pathways"])
    return result


# ---------------------------------------------------------------------------------------------
# pieces


def _validate(sites, ood_sites, dim, patches, n_prototypes, n_pathways, pathway_size, multi_slide) -> None:
    if not sites:
        raise ConfigError("make_synthetic: `sites` is empty; give at least one of " + ", ".join(SITES))
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ConfigError(f"make_synthetic: unknown site(s) {unknown}; choose from {list(SITES)}")
    if len(set(sites)) != len(sites):
        raise ConfigError(f"make_synthetic: duplicate sites in {list(sites)}")
    bad = [s for s in ood_sites if s not in sites]
    if bad:
        raise ConfigError(f"make_synthetic: ood_sites {bad} are not among sites {list(sites)}")
    if dim < 2:
        raise ConfigError(f"make_synthetic: dim must be >= 2, got {dim}")
    if len(patches) != 2 or not (1 <= patches[0] <= patches[1]):
        raise ConfigError(f"make_synthetic: patches must be (min, max) with 1 <= min <= max, got {patches}")
    if n_prototypes < 4:
        raise ConfigError(f"make_synthetic: n_prototypes must be >= 4, got {n_prototypes}")
    if n_pathways < 8:
        raise ConfigError(f"make_synthetic: n_pathways must be >= 8, got {n_pathways}")
    if not (2 <= pathway_size[0] <= pathway_size[1]):
        raise ConfigError(f"make_synthetic: pathway_size must be (min, max) with 2 <= min <= max, got {pathway_size}")
    if min(multi_slide) < 0 or sum(multi_slide) > 1:
        raise ConfigError(f"make_synthetic: multi_slide probabilities must be >= 0 and sum <= 1, got {multi_slide}")


def _clear_previous(out: Path, feature_dirs: Sequence[Path]) -> None:
    """Remove the slide files of an earlier synthetic cohort in ``out`` (stale slides would be
    orphans for the new clinical table); refuse to mix with feature files of unknown origin."""
    stale = [p for d in feature_dirs if d.is_dir() for p in d.glob("*.h5")]
    if not stale:
        return
    ours = False
    try:
        ours = json.loads((out / "truth.json").read_text()).get("generator") == _GENERATOR
    except (OSError, ValueError, AttributeError):
        pass
    if not ours:
        raise ConfigError(f"make_synthetic: {out} already holds feature files that are not from an earlier "
                          "synthetic cohort; choose an empty output directory")
    for p in stale:
        p.unlink()


def _patients_per_site(patients, sites) -> dict[str, int]:
    if patients is None:
        out = {s: DEFAULT_PATIENTS[s] for s in sites}
    elif isinstance(patients, Mapping):
        out = {s: int(patients.get(s, DEFAULT_PATIENTS[s])) for s in sites}
    else:
        out = {s: int(patients) for s in sites}
    for s, n in out.items():
        if n < 2:
            raise ConfigError(f"make_synthetic: need at least 2 patients per site, got {n} for {s}")
    return out


def _proto_names(k: int) -> list[str]:
    return [PROTOTYPE_NAMES[i] if i < len(PROTOTYPE_NAMES) else f"prototype_{i}" for i in range(k)]


def _make_gene_sets(rng, n_pathways, size, n_extra, n_absent):
    """GMT over a gene universe; a few GMT genes are left out of the expression matrix."""
    lo, hi = size
    universe_n = max(hi + 5, int(n_pathways * (lo + hi) / 2 * 0.45))
    universe = _gene_symbols(rng, universe_n + n_extra)
    pw_genes_pool, extra = universe[:universe_n], universe[universe_n:]
    themes = list(_PATHWAY_THEMES)
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


def _new_case_id(rng, tss_codes, used: set[str]) -> str:
    alphabet = string.ascii_uppercase + string.digits
    while True:
        tss = tss_codes[rng.integers(len(tss_codes))]
        code = "".join(alphabet[j] for j in rng.integers(0, len(alphabet), size=4))
        cid = f"TCGA-{tss}-{code}"
        if cid not in used:
            used.add(cid)
            return cid


def _make_slide(rng, n_p, w, prototypes, noise, gamma, delta, secondary) -> dict[str, np.ndarray]:
    """One slide: blob of ``n_p`` 20x patches with spatially smooth prototype mixtures."""
    k, dim = prototypes.shape
    mask = _tissue_mask(rng, n_p)
    h, wd = mask.shape
    fields = np.stack([_smooth_field(rng, (h, wd), sigma=1.8) for _ in range(k)], axis=-1)
    logits = (np.log(np.maximum(w, 1e-6))[None, None, :] + 1.5 * fields) / 0.5
    rows, cols = np.nonzero(mask)  # row-major order = raster scan, like a patcher
    mix = _softmax(logits[rows, cols])  # [n_p, k]
    stain = rng.normal(0, 0.1, size=dim)
    clean = mix @ prototypes + stain
    feats = (clean + rng.normal(0, noise, size=(n_p, dim))) * (1 + gamma) + delta
    # level-0 origin on the 512 grid so that 10x cells align with 2x2 blocks of 20x patches
    x0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    y0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    coords = np.stack([x0 + cols * PATCH_20X, y0 + rows * PATCH_20X], axis=1).astype(np.int64)
    out = {"features": feats.astype(np.float32), "coords": coords, "mix": mix}
    if secondary:
        parent = (rows // 2) * ((wd + 1) // 2) + (cols // 2)
        uniq, inv = np.unique(parent, return_inverse=True)
        counts = np.bincount(inv).astype(float)
        pooled = np.zeros((len(uniq), dim))
        np.add.at(pooled, inv, feats)
        pooled /= counts[:, None]
        pooled += rng.normal(0, 0.3 * noise, size=pooled.shape)
        pr, pc = uniq // ((wd + 1) // 2), uniq % ((wd + 1) // 2)
        out["features_10x"] = pooled.astype(np.float32)
        out["coords_10x"] = np.stack([x0 + pc * 2 * PATCH_20X, y0 + pr * 2 * PATCH_20X], axis=1).astype(np.int64)
    return out


def _write_h5(path: Path, feats, coords, slide_id, case_id, *, magnification, patch_size_level0) -> None:
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["slide_id"] = slide_id
        f.attrs["case_id"] = case_id
        f.attrs["encoder"] = "synthetic_prototype_mixture"
        f.attrs["magnification"] = magnification
        f.attrs["patch_size"] = 256
        f.attrs["patch_size_level0"] = patch_size_level0
        f.attrs["level0_magnification"] = 20
        f.attrs["generator"] = "modaltune.data.synthetic"
        d = f.create_dataset("features", data=feats, track_times=False)
        d.attrs["encoder"] = "synthetic_prototype_mixture"
        c = f.create_dataset("coords", data=coords, track_times=False)
        c.attrs["patch_size"] = 256
        c.attrs["patch_size_level0"] = patch_size_level0
        c.attrs["level0_magnification"] = 20
        c.attrs["target_magnification"] = magnification
        c.attrs["overlap"] = 0
        c.attrs["name"] = slide_id


def _stage_strings(rng, spec: _Site, g: int) -> tuple[str, str, str, str]:
    stage = spec.substages[g - 1][rng.integers(len(spec.substages[g - 1]))]
    t = spec.t_codes[g - 1][rng.integers(len(spec.t_codes[g - 1]))]
    if g == 1:
        n = "N0"
    elif g == 2:
        n = ("N0", "N1", "N0 (i-)")[rng.integers(3)] if spec.location == "breast" else ("N0", "N1")[rng.integers(2)]
    else:
        n = ("N1", "N2", "N1a", "N2a", "NX")[rng.integers(5)]
    m = "M1" if g == 4 else ("M0" if rng.random() < 0.85 else "MX")
    return stage, t, n, m


def _report_text(rng, spec: _Site, diagnosis: str, st, morph: float) -> str:
    grade = 3 if morph > 0.35 else (2 if morph > 0.15 else 1)
    if rng.random() < 0.2:  # graders disagree sometimes
        grade = int(np.clip(grade + rng.choice([-1, 1]), 1, 3))
    size = rng.uniform(0.8, 7.5)
    parts = [
        "SURGICAL PATHOLOGY REPORT.",
        f"Specimen: {spec.organ}.",
        f"Final diagnosis: {diagnosis} of the {spec.location}.",
        f"Tumor size: {size:.1f} cm. Histologic grade: {grade} of 3.",
    ]
    if st is not None:
        parts.append(f"Pathologic staging: p{st[1]} p{st[2]} {st[3]} ({st[0]}).")
    else:
        parts.append("Pathologic stage: not reported.")
    parts.append(("Margins free of tumor." if rng.random() < 0.8 else "Tumor present at the inked margin."))
    return " ".join(parts)
