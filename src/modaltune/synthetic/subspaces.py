"""``make_subspace_cohort``: a synthetic glioma cohort with tumor / microenvironment subspaces (DMSF, SML).

The disentangled framework (spec ``disentangled.md``) splits genes into a tumor (T) and a
microenvironment (E) subspace, lets each subspace find its tissue in two magnifications, and distils a
gene-informed teacher into a slide-only student. This cohort plants that structure in one site,
GBMLGG (projects TCGA-GBM for grade 4, TCGA-LGG otherwise), in the standard formats::

    out/
      features_20x/<slide_id>.h5   TRIDENT-style h5: features [N, dim], coords (level-0 px, 256-px grid)
      features_10x/<slide_id>.h5   the same tissue at 10x: 2x2-pooled 20x features + fresh noise,
                                   coords on the 512-px grid (magnification=10, patch_size_level0=512)
      truth_patches/<slide_id>.h5  compartment truth: tumor_20x (uint8 per 20x patch, 1 = tumor) with
                                   coords_20x, molecular_20x (1 = the molecular hints act on the patch),
                                   tumor_fraction_10x (share of tumor 20x patches per 10x patch) with
                                   coords_10x, in the row order of the feature files
      clinical.tsv        GDC columns; primary_diagnosis = WHO 2021 class (:data:`WHO_CLASSES`, noisy)
      clinical_grade.tsv  the same with primary_diagnosis = "G2" | "G3" | "G4" (noisy)
      molecular.tsv       case_id, idh_status (mutant|wildtype), codel_1p19q (codeleted|intact),
                          cdkn2a_gistic (-2|-1|0), grade (G2|G3|G4): the true calls
      expression.tsv      Xena genes x samples (TCGA-XX-XXXX-01)
      pathways.gmt        TUMOR_* and TME_* gene sets, unrelated SYN_* sets (other genes are in no set)
      truth.csv, truth_slides.csv, truth.json   factors, calls, true and written labels, risk, survival,
                          per-slide tumor fraction, settings, oracle C-index, appearance axes, groupings

**Generative model** (patient i):

* Factors ``z_T, z_E ~ N(0, 1)`` with correlation ``factor_correlation``.
* Molecular calls from z_T: IDH mutant with probability ``sigmoid(-2.2 z_T + 0.4)``; 1p/19q codeleted
  (IDH-mutant only) ``sigmoid(-1.2 z_T - 0.9)``; CDKN2A GISTIC -2 with ``sigmoid(1.8 z_T - 2.3)``, -1
  with 0.15, else 0. Grade from ``0.9 z_T + 0.6 z_E + N(0, 0.5^2)`` cut at its 30 / 60 % quantiles
  (oligodendrogliomas capped at G3). WHO class by the WHO 2021 rule (:func:`who2021_class`): IDH
  wildtype -> glioblastoma; else codeleted -> oligodendroglioma; else CDKN2A -2 or G4 -> astrocytoma
  grade 4; else astrocytoma grade 2-3 (roughly 45 / 12 / 18 / 25 %).
* Written labels: each WHO class and grade is replaced by a random other class with probability
  ``label_noise`` (molecular.tsv and truth.csv keep the true ones).
* Expression: activity of each TUMOR_<theme> set = z_T + N(0, 0.5^2); TUMOR_GCIMP = +-1 by IDH status,
  TUMOR_CHR1P19Q = -2 when codeleted (+ N(0, 0.3^2)); TME_* = z_E + N(0, 0.5^2); SYN_* = N(0, 1);
  ``x = base + loadings @ activity + N(0, expression_noise^2)`` with disjoint sets and positive
  loadings: strong (0.8-1.4) for a core of 40 % of each set's genes, weak (0.05-0.35) for the rest, so
  the variable genes are the informative ones, as highly-variable-gene selection assumes of real data.
* Slides: a tissue blob on the 20x grid; a smooth random field splits it into contiguous tumor and TME
  regions (tumor share U(0.35, 0.65) per slide). Tumor patches mix 4 tumor prototypes with abundances
  ``softmax(slopes * z_T')`` (plus ``molecular_morphology`` x an oligodendroglial prototype when
  codeleted and a necrosis prototype when IDH-wildtype) and shift by ``appearance z_T'`` along
  ``tumor_axis``; TME patches likewise with 4 TME prototypes, z_E' and ``tme_axis``. The slide sees
  ``z' = z + N(0, morphology_noise^2)``, so slides are a noisier view of the factors than genes, and
  patch noise ``feature_noise`` is added. The 10x file is the same tissue pooled 2x2 (fresh noise
  0.3 feature_noise) by :func:`~modaltune.synthetic.slides.pool_2x2`.
* Survival: ``eta = w_T z_T + w_E z_E + w_mol (1[IDH wildtype] - 0.5 1[codeleted])``, Weibull (k = 1.4,
  scale 30 months), censoring ``30 U(0.05, 1.3)`` months.

**Intended orderings.** Genes read z_T, z_E and the calls almost noise-free while slides see them
through ``morphology_noise`` and patch noise, so a gene-informed teacher beats a slide-only model on
diagnosis (the IDH / 1p/19q calls are largely invisible in slides: only ``molecular_morphology`` hints),
grade (needs both compartments) and survival. With ``molecular_fraction`` below 1 the molecular hints
sit in a contiguous focus of that share of the tumor patches instead of every tumor patch (focal
hallmarks): a mean over the slide then barely shows them, but a model that finds the focus can
(``benchmarks/slide_ceiling.py`` measures both), which leaves room between a label-trained slide model
and what the slides carry. Label noise hurts a student trained on labels more than
one that also matches a teacher's soft outputs, so distillation can help. Raise ``morphology_noise`` or
``label_noise`` to widen those gaps; set them to 0 to close them. The compartment truth lets a
clustering of patches (ITA) be scored against tumor / TME regions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..data.formats.clinical import DAYS_PER_MONTH
from ..data.labels.grouping import shipped_grouping
from ..errors import ConfigError
from .clinical_text import GDC_EMPTY, fmt_int, new_case_id
from .oracle import oracle_c_index
from .site_draw import WEIBULL_SHAPE
from .sites import SITES
from .slides import PATCH_20X, write_h5
from .subspace_draw import GRADES, WHO_CLASSES, draw_glioma_patients, draw_subspace_genes, make_compartment_slide
from .world import rng_for
from .writers import SYNTHETIC_GENERATORS, clear_previous, write_clinical, write_expression, write_gmt, write_rows

__all__ = ["WHO_CLASSES", "GRADES", "SUBSPACE_GROUPINGS", "make_subspace_cohort"]

#: ``generator`` of truth.json for this cohort.
GENERATOR = SYNTHETIC_GENERATORS[2]
_SCALE_MONTHS = 30.0

#: Groupings for ``prepare_cohort(grouping=...)``: ``who2021`` for clinical.tsv, ``grade`` for
#: clinical_grade.tsv (site GBMLGG; class order = label order).
SUBSPACE_GROUPINGS: dict[str, str] = {"who2021": str(shipped_grouping("glioma_who2021")),
                                      "grade": str(shipped_grouping("glioma_grade"))}


def make_subspace_cohort(
    out: str | Path,
    *,
    seed: int = 0,
    patients: int = 240,
    grid_patches: tuple[int, int] = (100, 400),
    dim: int = 32,
    n_tumor_sets: int = 4,
    n_tme_sets: int = 4,
    n_other_sets: int = 6,
    gene_set_size: tuple[int, int] = (8, 20),
    n_extra_genes: int = 60,
    morphology_noise: float = 0.5,
    label_noise: float = 0.1,
    feature_noise: float = 0.6,
    expression_noise: float = 0.5,
    appearance: float = 0.8,
    molecular_morphology: float = 1.2,
    molecular_fraction: float = 1.0,
    factor_correlation: float = 0.2,
    risk_weights: tuple[float, float, float] = (0.8, 0.6, 0.4),
    multi_slide: float = 0.1,
    frac_missing_expression: float = 0.0,
) -> dict[str, Any]:
    """Write the tumor / microenvironment glioma cohort (see the module docstring for files and model).

    Args:
        out: output directory (created; files of the same names are overwritten).
        seed: random seed; the same seed writes identical files.
        patients: number of patients (>= 8).
        grid_patches: (min, max) 20x patches per slide (the bag before any resampling to a grid).
        dim: patch-feature width.
        n_tumor_sets, n_tme_sets: z_T- and z_E-driven gene sets (>= 1 each; TUMOR_GCIMP and
            TUMOR_CHR1P19Q come on top).
        n_other_sets: unrelated SYN_* gene sets.
        gene_set_size: (min, max) genes per set.
        n_extra_genes: expression genes in no set.
        morphology_noise: sd of the slide's view of z_T / z_E around the truth.
        label_noise: probability that a written WHO class (and, independently, grade) is another class.
        feature_noise: patch-feature noise (sd per dimension).
        expression_noise: gene-level noise (sd, log2 scale).
        appearance: shift of tumor / TME patches along their axis per unit of z_T / z_E.
        molecular_morphology: strength of the morphological hints of codeletion and IDH-wildtype status.
        molecular_fraction: share of a slide's tumor patches that show those hints, in (0, 1]: 1 (default)
            every tumor patch (diffuse: the mean feature shows them); below 1 a contiguous focus (focal
            hallmarks: only a model that finds the focus reads them; raise ``molecular_morphology`` with it).
        factor_correlation: correlation of z_T and z_E (in (-1, 1)).
        risk_weights: log-hazard weights of (z_T, z_E, molecular term).
        multi_slide: probability that a patient has two slides.
        frac_missing_expression: fraction of patients without an expression sample (kept).

    Returns:
        dict with the written paths (``out``, ``features``, ``features_secondary``, ``truth_patches``,
        ``clinical``, ``clinical_grade``, ``molecular``, ``expression``, ``gene_sets``, ``truth``,
        ``truth_slides``, ``truth_json``), ``groupings`` (:data:`SUBSPACE_GROUPINGS`), ``oracle_c_index``
        (:func:`~modaltune.synthetic.oracle.oracle_c_index` on all patients) and ``summary``.

    Raises:
        ConfigError: a setting out of range.
    """
    _validate(patients, grid_patches, dim, n_tumor_sets, n_tme_sets, n_other_sets, gene_set_size, dict(
        morphology_noise=morphology_noise, feature_noise=feature_noise, expression_noise=expression_noise,
        appearance=appearance, molecular_morphology=molecular_morphology, n_extra_genes=n_extra_genes),
        dict(label_noise=label_noise, multi_slide=multi_slide, frac_missing_expression=frac_missing_expression),
        factor_correlation, risk_weights)
    if not 0.0 < float(molecular_fraction) <= 1.0:
        raise ConfigError(f"make_subspace_cohort: molecular_fraction must be in (0, 1], got {molecular_fraction}")
    out = Path(out)
    dirs = {"features": out / "features_20x", "features_secondary": out / "features_10x",
            "truth_patches": out / "truth_patches"}
    clear_previous(out, list(dirs.values()), SYNTHETIC_GENERATORS, "make_subspace_cohort")
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    world = draw_subspace_genes(rng_for(seed, 3, 0), n_tumor_sets, n_tme_sets, n_other_sets, tuple(gene_set_size),
                                n_extra_genes, dim)
    pat_rng = rng_for(seed, 3, 1)
    pat = draw_glioma_patients(pat_rng, patients, world, factor_correlation=factor_correlation,
                               morphology_noise=morphology_noise, label_noise=label_noise,
                               expression_noise=expression_noise, risk_weights=tuple(risk_weights),
                               scale_months=_SCALE_MONTHS, weibull_shape=WEIBULL_SHAPE)
    no_expr = np.zeros(patients, bool)
    no_expr[pat_rng.choice(patients, size=round(frac_missing_expression * patients), replace=False)] = True
    n_slides = 1 + (pat_rng.random(patients) < multi_slide)
    id_rng = rng_for(seed, 3, 3)
    used: set[str] = set()
    projects = np.where(pat.grade == 4, "TCGA-GBM", "TCGA-LGG")
    cases = [new_case_id(id_rng, SITES["GBMLGG"].tss[p], used) for p in projects]

    slide_rng = rng_for(seed, 3, 2)
    slide_rows, tumor_share = [], np.zeros(patients)
    for i, case in enumerate(cases):
        tumor_n = total_n = 0
        for k in range(n_slides[i]):
            sid = f"{case}-01Z-00-DX{k + 1}"
            n_p = int(slide_rng.integers(grid_patches[0], grid_patches[1] + 1))
            s = make_compartment_slide(slide_rng, n_p, world, pat.z_t_slide[i], pat.z_e_slide[i],
                                       bool(pat.idh_mutant[i]), bool(pat.codel[i]),
                                       molecular_morphology=molecular_morphology, appearance=appearance,
                                       noise=feature_noise, molecular_fraction=float(molecular_fraction))
            write_h5(dirs["features"] / f"{sid}.h5", s["features"], s["coords"], sid, case, magnification=20,
                     patch_size_level0=PATCH_20X)
            write_h5(dirs["features_secondary"] / f"{sid}.h5", s["features_10x"], s["coords_10x"], sid, case,
                     magnification=10, patch_size_level0=2 * PATCH_20X)
            _write_patch_truth(dirs["truth_patches"] / f"{sid}.h5", s, sid, case)
            tumor_n, total_n = tumor_n + int(s["tumor"].sum()), total_n + n_p
            slide_rows.append({"slide_id": sid, "case_id": case, "n_patches_20x": n_p,
                               "n_patches_10x": len(s["coords_10x"]),
                               "tumor_fraction": round(float(s["tumor"].mean()), 6)})
        tumor_share[i] = tumor_n / total_n

    paths: dict[str, Any] = {"out": out, **dirs, "clinical": out / "clinical.tsv",
                             "clinical_grade": out / "clinical_grade.tsv", "molecular": out / "molecular.tsv",
                             "expression": out / "expression.tsv", "gene_sets": out / "pathways.gmt",
                             "truth": out / "truth.csv", "truth_slides": out / "truth_slides.csv",
                             "truth_json": out / "truth.json"}
    days = np.maximum(1, np.round(np.minimum(pat.t_event, pat.t_cens) * DAYS_PER_MONTH)).astype(int)
    event = pat.t_event <= pat.t_cens
    def clinical_row(i: int, diagnosis: str) -> dict:  # GDC columns; no AJCC staging for gliomas
        return {"case_submitter_id": cases[i], "project_id": projects[i], "primary_diagnosis": diagnosis,
                **dict.fromkeys(("ajcc_pathologic_stage", "ajcc_pathologic_t", "ajcc_pathologic_n",
                                 "ajcc_pathologic_m"), GDC_EMPTY),
                "vital_status": "Dead" if event[i] else "Alive",
                "days_to_death": fmt_int(days[i]) if event[i] else GDC_EMPTY,
                "days_to_last_follow_up": GDC_EMPTY if event[i] else fmt_int(days[i]),
                "age_at_index": str(pat.age[i])}
    write_clinical(paths["clinical"], [clinical_row(i, WHO_CLASSES[pat.who_written[i]]) for i in range(patients)])
    write_clinical(paths["clinical_grade"], [clinical_row(i, GRADES[pat.grade_written[i] - 2])
                                             for i in range(patients)])
    write_rows(paths["molecular"], [{
        "case_id": c, "idh_status": "mutant" if pat.idh_mutant[i] else "wildtype",
        "codel_1p19q": "codeleted" if pat.codel[i] else "intact", "cdkn2a_gistic": int(pat.cdkn2a[i]),
        "grade": GRADES[pat.grade[i] - 2]} for i, c in enumerate(cases)], sep="\t")
    write_expression(paths["expression"], world.genes,
                     {f"{c}-01": pat.expression[i] for i, c in enumerate(cases) if not no_expr[i]})
    write_gmt(paths["gene_sets"], world.gmt)
    log_base = -WEIBULL_SHAPE * np.log(_SCALE_MONTHS)
    truth = write_rows(paths["truth"], [{
        "case_id": c, "site": "GBMLGG", "project_id": projects[i], "z_tumor": round(float(pat.z_t[i]), 6),
        "z_tme": round(float(pat.z_e[i]), 6), "z_tumor_slide": round(float(pat.z_t_slide[i]), 6),
        "z_tme_slide": round(float(pat.z_e_slide[i]), 6), "idh_mutant": bool(pat.idh_mutant[i]),
        "codel": bool(pat.codel[i]), "cdkn2a": int(pat.cdkn2a[i]), "grade": int(pat.grade[i]),
        "who_class": int(pat.who[i]), "who_written": int(pat.who_written[i]),
        "grade_written": int(pat.grade_written[i]), "risk": round(float(pat.risk[i]), 6),
        "log_hazard": round(float(pat.risk[i] + log_base), 6), "os_months": round(days[i] / DAYS_PER_MONTH, 4),
        "os_event": int(event[i]), "event_time_months": round(float(pat.t_event[i]), 4),
        "censor_time_months": round(float(pat.t_cens[i]), 4), "n_slides": int(n_slides[i]),
        "tumor_fraction": round(float(tumor_share[i]), 6), "has_expression": not bool(no_expr[i]),
    } for i, c in enumerate(cases)])
    write_rows(paths["truth_slides"], slide_rows)

    oracle = oracle_c_index(truth)
    summary = {
        "patients": patients, "slides": int(n_slides.sum()), "os_events": int(event.sum()),
        "who_true": {WHO_CLASSES[k]: int((pat.who == k).sum()) for k in range(len(WHO_CLASSES))},
        "who_written": {WHO_CLASSES[k]: int((pat.who_written == k).sum()) for k in range(len(WHO_CLASSES))},
        "grade_true": {g: int((pat.grade == k + 2).sum()) for k, g in enumerate(GRADES)},
        "who_label_flips": int((pat.who != pat.who_written).sum()),
        "grade_label_flips": int((pat.grade != pat.grade_written).sum()),
        "without_expression": int(no_expr.sum()),
    }
    meta = {
        "generator": GENERATOR, "seed": seed, "site": "GBMLGG", "patients": patients,
        "grid_patches": list(grid_patches), "dim": dim,
        "noise": {"morphology": morphology_noise, "label": label_noise, "feature": feature_noise,
                  "expression": expression_noise},
        "appearance": appearance, "molecular_morphology": molecular_morphology,
        "molecular_fraction": float(molecular_fraction),
        "factor_correlation": factor_correlation, "risk_weights": dict(zip(("z_tumor", "z_tme", "molecular"),
                                                                          map(float, risk_weights))),
        "weibull_shape": WEIBULL_SHAPE, "scale_months": _SCALE_MONTHS,
        "gene_set_driver": world.driver,
        "tumor_sets": [k for k in world.gmt if k.startswith("TUMOR_")],
        "tme_sets": [k for k in world.gmt if k.startswith("TME_")],
        "tumor_axis": [round(float(x), 6) for x in world.tumor_axis],
        "tme_axis": [round(float(x), 6) for x in world.tme_axis],
        "who_classes": list(WHO_CLASSES), "grades": list(GRADES),
        "molecular_columns": ["case_id", "idh_status", "codel_1p19q", "cdkn2a_gistic", "grade"],
        "groupings": SUBSPACE_GROUPINGS, "oracle_c_index": oracle, "summary": summary,
    }
    paths["truth_json"].write_text(json.dumps(meta, indent=2) + "\n")
    return {**paths, "groupings": SUBSPACE_GROUPINGS, "oracle_c_index": oracle, "summary": summary}


def _write_patch_truth(path: Path, s: dict, slide_id: str, case_id: str) -> None:
    """Per-patch compartment truth of one slide (row order of its feature files; no timestamps)."""
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["slide_id"], f.attrs["case_id"] = slide_id, case_id
        f.attrs["tumor_fraction"] = float(s["tumor"].mean())
        f.create_dataset("tumor_20x", data=s["tumor"].astype(np.uint8), track_times=False)
        f.create_dataset("molecular_20x", data=s["molecular"].astype(np.uint8), track_times=False)
        f.create_dataset("coords_20x", data=s["coords"], track_times=False)
        f.create_dataset("tumor_fraction_10x", data=s["tumor_fraction_10x"], track_times=False)
        f.create_dataset("coords_10x", data=s["coords_10x"], track_times=False)


def _validate(patients, grid_patches, dim, n_tumor, n_tme, n_other, size, nonneg: dict, probs: dict, rho,
              risk_weights) -> None:
    who = "make_subspace_cohort"
    if int(patients) < 8:
        raise ConfigError(f"{who}: need at least 8 patients, got {patients}")
    if len(grid_patches) != 2 or not (4 <= grid_patches[0] <= grid_patches[1]):
        raise ConfigError(f"{who}: grid_patches must be (min, max) with 4 <= min <= max, got {grid_patches}")
    if dim < 2:
        raise ConfigError(f"{who}: dim must be >= 2, got {dim}")
    if n_tumor < 1 or n_tme < 1 or n_other < 0:
        raise ConfigError(f"{who}: need n_tumor_sets >= 1, n_tme_sets >= 1, n_other_sets >= 0; "
                          f"got {n_tumor}, {n_tme}, {n_other}")
    if len(size) != 2 or not (2 <= size[0] <= size[1]):
        raise ConfigError(f"{who}: gene_set_size must be (min, max) with 2 <= min <= max, got {size}")
    bad = {k: v for k, v in nonneg.items() if not v >= 0}
    bad.update({k: v for k, v in probs.items() if not 0 <= v < 1})
    if bad:
        raise ConfigError(f"{who}: noises and counts must be >= 0, probabilities in [0, 1); got {bad}")
    if not -1 < rho < 1:
        raise ConfigError(f"{who}: factor_correlation must be in (-1, 1), got {rho}")
    if len(risk_weights) != 3:
        raise ConfigError(f"{who}: risk_weights must be 3 numbers (z_tumor, z_tme, molecular), got {risk_weights}")
