"""``make_pan_cancer``: a synthetic pan-cancer cohort with shared, site-specific and report risk (MICE).

MICE (spec ``mice.md``) pre-trains on many cancer types and fine-tunes per type; its claims are that
pooling sites helps a small site, that per-cancer experts capture site-specific signal, and that
fusing WSI, expression and report beats every single modality. This cohort plants exactly that
structure, one TCGA project per site (default BRCA, LUAD, LUSC, KIRC, KIRP, COAD, STAD, HNSC;
150 patients each, 40 for the small KIRP and STAD), written in the standard formats::

    out/
      features_20x/<slide_id>.h5  TRIDENT-style h5 (features [N, dim], coords level-0 px, 256-px grid)
      features_10x/<slide_id>.h5  only with secondary=True (2x2-pooled 20x tissue + fresh noise)
      clinical.tsv     GDC columns (case_submitter_id, project_id = TCGA-<SITE>, primary_diagnosis,
                       ajcc_pathologic_stage/_t/_n/_m, vital_status, days_to_death,
                       days_to_last_follow_up, age_at_index) plus the PFS columns below
      expression.tsv   Xena genes x samples (TCGA-XX-XXXX-01 columns; patients without expression absent)
      pathways.gmt     gene sets; the shared risk program is one of them (named in truth.json)
      reports.csv      case_id,text pathology reports (patients without a report absent)
      truth.csv        per case: site, risk components, total risk, log-hazard, factors, stage, grade,
                       OS and PFS as written, what the patient has
      truth_slides.csv per slide: case, patches, realised aggressive fraction
      truth.json       settings, shared program, oracle C-index per site / pooled for OS and PFS,
                       per-component ceilings, event rates, missingness

**Endpoints.** OS: ``vital_status`` / ``days_to_death`` / ``days_to_last_follow_up`` (GDC).
PFS: ``progression`` (1 = progression or death observed, 0 = censored; TCGA-CDR ``PFI``) and
``days_to_progression`` (days to that event or to censoring; TCGA-CDR ``PFI.time``), written for
every patient. Progression time ``T_p = 0.6 lambda_s (E'/exp(eta))^(1/k)``; PFS = min(T_p, T_death, C),
so PFS <= OS and both follow the same risk.

**Generative model** (site s, patient i; Weibull shape k = 1.4, scale lambda_s per project):

* Shared program (expression): activity ``a_i ~ N(0, 1)`` of one gene set (``truth.json:
  shared_program``) in every site; its genes load positively on it (``x = base + batch_s + loadings @
  activity + N(0, expression_noise^2)``). Other pathways carry a site signature (4 shifted pathways).
  Component ``risk_shared = w_shared a_i``; the same genes and sign everywhere, so pooling all sites
  estimates it far better than a 40-patient site alone.
* Site morphology (slides): each site has its own aggressive prototype next to shared tissue
  prototypes; its abundance ``f_i = sigmoid(logit(b_s) + u_i + N(0, morphology_noise^2))`` follows a
  site factor ``u_i ~ N(0, 1)``, with ``b_s ~ U(0.1, 0.2)``, and ``risk_site = w_site u_i``. Slides are
  drawn by :func:`~modaltune.synthetic.slides.make_slide` (smooth spatial mixtures, patch noise
  ``feature_noise``, site batch effect ``site_shift``). The prototype differs per site, so a pooled model
  must learn it per site (site-specific experts).
* Report: a report factor ``v_i ~ N(0, 1)`` sets the AJCC stage (site stage frequencies) and the
  histologic grade 1-3 (25/45/30 %); ``risk_report = w_report z(z(stage) + z(grade))``. Reports state
  grade in words ("poorly differentiated", "high grade", ...) and stage as TNM + stage group among
  neutral filler (:mod:`.report_words`); with probability ``report_noise`` the written grade is off by
  one. Stage also appears in clinical.tsv (as in GDC) unless ``stage_in_clinical=False``.
* Cross-modal factor (``shared_factor`` r, default 0): with r > 0 a patient factor ``c ~ N(0, 1)``
  enters ``a``, ``u`` and ``v`` alike (each becomes ``sqrt(1 - r^2) x + r c``), so the three modalities
  share patient-level content beyond the site (``truth.csv: shared_factor``); at 0 they share none.
* Total risk ``eta = risk_shared + risk_site + risk_report``; death time ``lambda_s (E/exp(eta))^(1/k)``,
  censoring ``lambda_s U(0.05, 1.3)``.
* Missingness (per site, exact counts, patients never dropped): ``frac_missing_expression`` without an
  expression sample, ``frac_missing_report`` without a report (at least one of them also without
  expression), ``frac_missing_slides`` without slides (only among patients with both other modalities,
  so everyone has a modality), ``frac_missing_stage`` with stage '--.

**Expected ordering.** Each modality sees one component, and only through noise (expression noise,
morphology noise and patch noise, grade misreporting and missing reports), so on ~150 patients per
site (defaults, seed 0): oracle (C of eta, 0.75-0.86 per site, 0.80 pooled) > ceiling of two components
(0.65-0.81) > ceiling of any single component (0.59-0.75; ``truth.json: ceiling_c_index``) >= what a
single-modality model reaches; a fused model clearly beats chance (0.5) but not the oracle. Raising a ``risk_weights`` entry strengthens that
modality; raising a noise knob weakens what the model can read of it without changing the oracle.
The oracle on a test fold: :func:`~modaltune.synthetic.oracle.oracle_c_index`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError
from .oracle import oracle_c_index
from .pan_cancer_draw import GRADE_FREQ, PROGRESSION_SCALE, PROJECT_SPECS, PanSettings, draw_pan_site
from .site_draw import WEIBULL_SHAPE
from .world import draw_world
from .writers import (
    SYNTHETIC_GENERATORS,
    clear_previous,
    write_clinical,
    write_expression,
    write_gmt,
    write_reports,
    write_rows,
)

__all__ = ["PAN_CANCER_SITES", "PAN_CANCER_PATIENTS", "PAN_CANCER_GROUPING", "make_pan_cancer"]

#: ``generator`` of truth.json for this cohort.
GENERATOR = SYNTHETIC_GENERATORS[1]

#: Default sites (TCGA projects without ``TCGA-``).
PAN_CANCER_SITES = ("BRCA", "LUAD", "LUSC", "KIRC", "KIRP", "COAD", "STAD", "HNSC")
#: Default patients per site (two small sites).
PAN_CANCER_PATIENTS = {"BRCA": 150, "LUAD": 150, "LUSC": 150, "KIRC": 150, "KIRP": 40, "COAD": 150, "STAD": 40,
                       "HNSC": 150}
_DEFAULT_N = 150

#: Grouping for ``prepare_cohort(grouping=...)``: ModalTune Table 4 plus the sites it lacks (STAD, HNSC),
#: so every patient gets a subtype.
PAN_CANCER_GROUPING: dict = {"extends": "default", **{
    site: {"classes": [c.name for c in PROJECT_SPECS[site].classes],
           "members": {c.name: [v[1] for v in c.variants] for c in PROJECT_SPECS[site].classes},
           "rare": [r[1] for r in PROJECT_SPECS[site].rare], "location": PROJECT_SPECS[site].location}
    for site in ("STAD", "HNSC")}}


def make_pan_cancer(
    out: str | Path,
    *,
    seed: int = 0,
    sites: Sequence[str] = PAN_CANCER_SITES,
    patients: int | Mapping[str, int] | None = None,
    dim: int = 64,
    patches: tuple[int, int] = (32, 128),
    n_prototypes: int = 6,
    n_pathways: int = 24,
    pathway_size: tuple[int, int] = (10, 30),
    n_extra_genes: int = 40,
    n_absent_genes: int = 4,
    risk_weights: tuple[float, float, float] = (0.8, 0.7, 0.7),
    expression_noise: float = 0.8,
    feature_noise: float = 0.8,
    morphology_noise: float = 0.5,
    report_noise: float = 0.2,
    site_shift: float = 0.25,
    multi_slide: float = 0.1,
    frac_missing_expression: float = 0.15,
    frac_missing_report: float = 0.12,
    frac_missing_slides: float = 0.02,
    frac_missing_stage: float = 0.05,
    stage_in_clinical: bool = True,
    secondary: bool = False,
    shared_factor: float = 0.0,
) -> dict[str, Any]:
    """Write a synthetic pan-cancer cohort (see the module docstring for files and model).

    Args:
        out: output directory (created; files of the same names are overwritten).
        seed: random seed; the same seed writes identical files.
        sites: sites among :data:`~modaltune.synthetic.pan_cancer_draw.PROJECT_SPECS` (BRCA, LUAD, LUSC,
            KIRC, KIRP, COAD, STAD, HNSC), one TCGA project each.
        patients: patients per site (int for all, or site -> count); default :data:`PAN_CANCER_PATIENTS`
            (150, with 40 for KIRP and STAD; 150 for a site it does not name). At least 4 per site.
        dim: patch-feature width.
        patches: (min, max) 20x patches per patient (split between the slides of multi-slide patients).
        n_prototypes: shared tissue prototypes (>= 2); each site adds its aggressive one.
        n_pathways: gene sets in the GMT (>= 4); one is the shared risk program.
        pathway_size: (min, max) genes per gene set.
        n_extra_genes: expression genes in no gene set.
        n_absent_genes: GMT genes missing from the expression matrix.
        risk_weights: log-hazard weights of (shared program, site morphology factor, report factor).
        expression_noise: gene-level noise (sd, log2 scale).
        feature_noise: patch-feature noise (sd per dimension).
        morphology_noise: noise (logit scale) between the site factor and the aggressive abundance.
        report_noise: probability that a report states a grade off by one.
        site_shift: sd of the per-site additive feature batch effect.
        multi_slide: probability that a patient has two slides.
        frac_missing_expression: fraction of patients per site without expression.
        frac_missing_report: fraction of patients per site without a report.
        frac_missing_slides: fraction of patients per site without slides (they have both other modalities).
        frac_missing_stage: fraction of patients per site with stage not recorded (clinical and report).
        stage_in_clinical: write stage/TNM in clinical.tsv (else '-- for everyone; stage only in reports).
        secondary: also write 10x features (features_10x).
        shared_factor: ``r`` in [0, 1): with ``r > 0`` one more patient factor ``c ~ N(0, 1)`` enters all three
            modalities, each factor becoming ``sqrt(1 - r^2) x + r c`` (still N(0, 1); any two correlate at
            ``r^2``), as grade shows in a real slide, report and expression at once; default 0: the
            modalities share nothing per patient but the site (the files are those of earlier versions).

    Returns:
        dict with the written paths (``out``, ``features``, ``features_secondary``, ``clinical``,
        ``expression``, ``gene_sets``, ``reports``, ``truth``, ``truth_slides``, ``truth_json``), ``sites``,
        ``oracle_c_index`` (endpoint -> :func:`~modaltune.synthetic.oracle.oracle_c_index` result on all
        patients), ``shared_program``, ``grouping`` (:data:`PAN_CANCER_GROUPING`) and ``summary``.

    Raises:
        ConfigError: unknown or duplicate sites, or a setting out of range.
    """
    sites = tuple(str(s).upper() for s in sites)
    n_per_site = _validate(sites, patients, dim, patches, n_prototypes, n_pathways, pathway_size, risk_weights, dict(
        expression_noise=expression_noise, feature_noise=feature_noise, morphology_noise=morphology_noise,
        site_shift=site_shift, n_extra_genes=n_extra_genes, n_absent_genes=n_absent_genes), dict(report_noise=report_noise, multi_slide=multi_slide,
                                     frac_missing_expression=frac_missing_expression,
                                     frac_missing_report=frac_missing_report, frac_missing_slides=frac_missing_slides,
                                     frac_missing_stage=frac_missing_stage, shared_factor=shared_factor))
    out = Path(out)
    feature_dirs = (out / "features_20x", out / "features_10x")
    clear_previous(out, feature_dirs, SYNTHETIC_GENERATORS, "make_pan_cancer")
    feature_dirs[0].mkdir(parents=True, exist_ok=True)
    if secondary:
        feature_dirs[1].mkdir(parents=True, exist_ok=True)
    cfg = PanSettings(seed=seed, dim=dim, patches=tuple(patches), risk_weights=tuple(map(float, risk_weights)),
                      expression_noise=expression_noise, feature_noise=feature_noise,
                      morphology_noise=morphology_noise, report_noise=report_noise, site_shift=site_shift,
                      multi_slide=multi_slide, frac_missing_expression=frac_missing_expression,
                      frac_missing_report=frac_missing_report, frac_missing_slides=frac_missing_slides,
                      frac_missing_stage=frac_missing_stage, stage_in_clinical=stage_in_clinical, secondary=secondary,
                      shared_factor=float(shared_factor))
    world = draw_world(seed, dim, n_prototypes, n_pathways, pathway_size, n_extra_genes, n_absent_genes)
    used: set[str] = set()
    draws = [draw_pan_site(i, s, n_per_site[s], world, cfg, used, feature_dirs) for i, s in enumerate(sites)]

    paths = {"out": out, "features": feature_dirs[0], "features_secondary": feature_dirs[1] if secondary else None,
             "clinical": out / "clinical.tsv", "expression": out / "expression.tsv", "gene_sets": out / "pathways.gmt",
             "reports": out / "reports.csv", "truth": out / "truth.csv", "truth_slides": out / "truth_slides.csv",
             "truth_json": out / "truth.json"}
    write_clinical(paths["clinical"], [r for d in draws for r in d.clinical_rows])
    write_expression(paths["expression"], world.expr_genes, {k: v for d in draws for k, v in d.expr_cols.items()})
    write_gmt(paths["gene_sets"], world.gmt)
    write_reports(paths["reports"], [r for d in draws for r in d.reports])
    write_rows(paths["truth"], [r for d in draws for r in d.truth_rows])
    write_rows(paths["truth_slides"], [r for d in draws for r in d.slide_rows])

    program = list(world.gmt)[int(world.prognostic[0])]
    truth = pd.read_csv(paths["truth"], dtype={"case_id": str})  # score what was written
    oracle = {ep: oracle_c_index(truth, endpoint=ep) for ep in ("os", "pfs")}
    summary = _summary(truth, sites)
    meta = {
        "generator": GENERATOR, "seed": seed, "sites": list(sites),
        "projects": {s: next(iter(PROJECT_SPECS[s].tss)) for s in sites}, "patients": n_per_site,
        "dim": dim, "patches": list(patches), "n_prototypes": n_prototypes, "secondary": secondary,
        "risk_weights": dict(zip(("shared", "site", "report"), cfg.risk_weights)),
        "noise": {"expression": expression_noise, "feature": feature_noise, "morphology": morphology_noise,
                  "report": report_noise, "site_shift": site_shift},
        "missing": {"expression": frac_missing_expression, "report": frac_missing_report,
                    "slides": frac_missing_slides, "stage": frac_missing_stage},
        "stage_in_clinical": stage_in_clinical, "shared_factor": float(shared_factor),
        "shared_program": program, "shared_program_genes": world.gmt[program],
        "aggressive_prototype": "per site, index 0 of its prototypes (own vector), abundance follows site_factor",
        "grade_freq": list(GRADE_FREQ), "weibull_shape": WEIBULL_SHAPE,
        "scale_months": {s: PROJECT_SPECS[s].scale_months for s in sites}, "progression_scale": PROGRESSION_SCALE,
        "endpoints": {"os": ["vital_status", "days_to_death", "days_to_last_follow_up"],
                      "pfs": ["progression", "days_to_progression"]},
        "oracle_c_index": oracle,
        "ceiling_c_index": _ceilings(truth),
        "expected_ordering": "oracle > two-component ceilings > single-component ceilings >= single-modality "
                             "models; fused models beat chance (0.5) but stay below the oracle",
        "summary": summary,
    }
    paths["truth_json"].write_text(json.dumps(meta, indent=2) + "\n")
    return {**paths, "sites": list(sites), "oracle_c_index": oracle, "shared_program": program,
            "grouping": PAN_CANCER_GROUPING, "summary": summary}


def _ceilings(truth: pd.DataFrame) -> dict:
    """OS C-index per site of each risk component and each pair: the best a model seeing only those can do."""
    df = truth.copy()
    parts = {"shared": "risk_shared", "site": "risk_site", "report": "risk_report"}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            df[f"{a}+{b}"] = df[parts[a]] + df[parts[b]]
    cols = {**parts, **{c: c for c in df.columns if "+" in c}}
    return {name: oracle_c_index(df, risk=col)["sites"] for name, col in cols.items()}


def _summary(truth: pd.DataFrame, sites: Sequence[str]) -> dict:
    """Counts of what was written, per site and in total."""
    def counts(t: pd.DataFrame) -> dict:
        return {"patients": int(len(t)), "os_events": int(t.os_event.sum()), "pfs_events": int(t.pfs_event.sum()),
                "os_event_rate": round(float(t.os_event.mean()), 4),
                "without_expression": int((~t.has_expression).sum()), "without_report": int((~t.has_report).sum()),
                "without_slides": int((~t.has_wsi).sum()),
                "without_expression_and_report": int((~t.has_expression & ~t.has_report).sum()),
                "slides": int(t.n_slides.sum())}
    return {"total": counts(truth), "sites": {s: counts(truth[truth.site == s]) for s in sites}}


def _validate(sites, patients, dim, patches, n_prototypes, n_pathways, pathway_size, risk_weights, noises: dict,
              probs: dict) -> dict[str, int]:
    """Check the settings; return patients per site."""
    who = "make_pan_cancer"
    if not sites:
        raise ConfigError(f"{who}: `sites` is empty; give sites among {list(PROJECT_SPECS)}")
    unknown = [s for s in sites if s not in PROJECT_SPECS]
    if unknown:
        raise ConfigError(f"{who}: unknown site(s) {unknown}; choose from {list(PROJECT_SPECS)}")
    if len(set(sites)) != len(sites):
        raise ConfigError(f"{who}: duplicate sites in {list(sites)}")
    if dim < 2:
        raise ConfigError(f"{who}: dim must be >= 2, got {dim}")
    if len(patches) != 2 or not (1 <= patches[0] <= patches[1]):
        raise ConfigError(f"{who}: patches must be (min, max) with 1 <= min <= max, got {patches}")
    if n_prototypes < 2 or n_pathways < 4:
        raise ConfigError(f"{who}: need n_prototypes >= 2 and n_pathways >= 4, got {n_prototypes}, {n_pathways}")
    if len(pathway_size) != 2 or not (2 <= pathway_size[0] <= pathway_size[1]):
        raise ConfigError(f"{who}: pathway_size must be (min, max) with 2 <= min <= max, got {pathway_size}")
    if len(risk_weights) != 3 or min(risk_weights) < 0:
        raise ConfigError(f"{who}: risk_weights must be 3 non-negative numbers (shared, site, report), "
                          f"got {risk_weights}")
    bad = {k: v for k, v in noises.items() if not v >= 0}
    bad.update({k: v for k, v in probs.items() if not 0 <= v < 1})
    if bad:
        raise ConfigError(f"{who}: noises and gene counts must be >= 0, fractions/probabilities in [0, 1); "
                          f"got {bad}")
    if patients is None:
        n = {s: PAN_CANCER_PATIENTS.get(s, _DEFAULT_N) for s in sites}
    elif isinstance(patients, Mapping):
        n = {s: int(patients.get(s, PAN_CANCER_PATIENTS.get(s, _DEFAULT_N))) for s in sites}
    else:
        n = {s: int(patients) for s in sites}
    small = {s: v for s, v in n.items() if v < 4}
    if small:
        raise ConfigError(f"{who}: need at least 4 patients per site, got {small}")
    return n
