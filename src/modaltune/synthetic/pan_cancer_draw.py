"""One site (TCGA project) of the pan-cancer cohort: patients drawn, slides written, rows returned.

:func:`draw_pan_site` draws one project for :func:`~modaltune.synthetic.make_pan_cancer` from the stream
``(seed, 2, site position + 1, sum of the project name's character codes)``, given the shared world
(:func:`~modaltune.synthetic.world.draw_world`: gene sets, loadings, shared tissue prototypes), in steps:

1. site parameters: the site's own aggressive prototype, tissue profile, batch effects, expression
   signature and the base abundance of the aggressive prototype;
2. patients: class, the three latent risk factors (shared program activity ``a``, site morphology factor
   ``u``, report factor ``v`` -> stage and grade), what each patient lacks, slide count;
3. identities (project, diagnosis, barcode; :func:`~modaltune.synthetic.site_draw._identities`);
4. slides (20x, optional 10x) with :func:`~modaltune.synthetic.slides.make_slide`;
5. survival (OS and PFS), 6. expression samples, 7. clinical, report and truth rows.

The module docstring of :mod:`modaltune.synthetic.pan_cancer` describes the generative model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit, ndtri

from ..data.formats.clinical import DAYS_PER_MONTH
from .clinical_text import GDC_EMPTY, fmt_int, stage_strings
from .report_words import pan_report_text
from .site_draw import WEIBULL_SHAPE, _identities, _zscore
from .sites import SITES, ClassSpec, SiteSpec
from .slides import PATCH_20X, make_slide, softmax, write_h5
from .world import World, rng_for

__all__ = ["PROJECT_SPECS", "GRADE_FREQ", "PanSettings", "PanSiteDraw", "draw_pan_site"]


def _project_of(site: str, project: str, scale: float) -> SiteSpec:
    """The one-project view of a multi-project site of :data:`SITES` (its classes and Rare-set of ``project``)."""
    spec = SITES[site]
    classes = tuple(c for c in spec.classes if all(v[0] == project for v in c.variants))
    return dataclasses.replace(spec, classes=classes, rare=tuple(r for r in spec.rare if r[0] == project),
                               rare_freq=spec.rare_freq if any(r[0] == project for r in spec.rare) else 0.0,
                               tss={project: spec.tss[project]}, scale_months=scale)


#: Site (= TCGA project without ``TCGA-``) -> spec; BRCA, LUAD, LUSC, KIRC, KIRP, COAD reuse the
#: strings of :data:`SITES`, STAD and HNSC are added here. Survival scales differ by project.
PROJECT_SPECS: dict[str, SiteSpec] = {
    "BRCA": dataclasses.replace(SITES["BRCA"], scale_months=110.0),
    "LUAD": _project_of("NSCLC", "TCGA-LUAD", 50.0),
    "LUSC": _project_of("NSCLC", "TCGA-LUSC", 45.0),
    "KIRC": _project_of("RCC", "TCGA-KIRC", 80.0),
    "KIRP": _project_of("RCC", "TCGA-KIRP", 90.0),
    "COAD": _project_of("COADREAD", "TCGA-COAD", 65.0),
    "STAD": SiteSpec(
        location="stomach",
        classes=(ClassSpec("Stomach adenocarcinoma", 1.0, (
            ("TCGA-STAD", "Adenocarcinoma, NOS", 0.45), ("TCGA-STAD", "Adenocarcinoma, intestinal type", 0.3),
            ("TCGA-STAD", "Carcinoma, diffuse type", 0.15), ("TCGA-STAD", "Tubular adenocarcinoma", 0.1))),),
        rare_freq=0.05, rare=(("TCGA-STAD", "Signet ring cell carcinoma"), ("TCGA-STAD", "Mucinous adenocarcinoma")),
        stage_freq=(0.14, 0.32, 0.44, 0.10),
        substages=(("Stage IA", "Stage IB"), ("Stage IIA", "Stage IIB"), ("Stage IIIA", "Stage IIIB", "Stage IIIC"),
                   ("Stage IV",)),
        t_codes=(("T1a", "T1b", "T2"), ("T2", "T3"), ("T3", "T4a", "T4b"), ("T3", "T4a", "T4b")),
        scale_months=40.0, tss={"TCGA-STAD": ("BR", "CD", "VQ", "HU", "D7")}, organ="stomach, gastrectomy"),
    "HNSC": SiteSpec(
        location="head and neck",
        classes=(ClassSpec("Head and neck squamous cell carcinoma", 1.0, (
            ("TCGA-HNSC", "Squamous cell carcinoma, NOS", 0.85),
            ("TCGA-HNSC", "Squamous cell carcinoma, keratinizing, NOS", 0.15))),),
        rare_freq=0.04, rare=(("TCGA-HNSC", "Basaloid squamous cell carcinoma"),),
        stage_freq=(0.05, 0.18, 0.20, 0.57),
        substages=(("Stage I",), ("Stage II",), ("Stage III",), ("Stage IVA", "Stage IVB", "Stage IVC")),
        t_codes=(("T1",), ("T2",), ("T3", "T2"), ("T4a", "T4b", "T3")),
        scale_months=45.0, tss={"TCGA-HNSC": ("CV", "CN", "BA", "CR", "P3")},
        organ="oral cavity, composite resection"),
}

#: Frequencies of histologic grade 1, 2, 3 (thresholds on the report factor).
GRADE_FREQ = (0.25, 0.45, 0.30)

#: GDC stage/TNM columns of the clinical table.
_STAGE_COLUMNS = ("ajcc_pathologic_stage", "ajcc_pathologic_t", "ajcc_pathologic_n", "ajcc_pathologic_m")

#: Length of the PFS (progression) time scale relative to the site's OS scale.
PROGRESSION_SCALE = 0.6


@dataclass(frozen=True)
class PanSettings:
    """The knobs of :func:`~modaltune.synthetic.make_pan_cancer` that the per-site draws use."""

    seed: int
    dim: int
    patches: tuple[int, int]
    risk_weights: tuple[float, float, float]
    expression_noise: float
    feature_noise: float
    morphology_noise: float
    report_noise: float
    site_shift: float
    multi_slide: float
    frac_missing_expression: float
    frac_missing_report: float
    frac_missing_slides: float
    frac_missing_stage: float
    stage_in_clinical: bool
    secondary: bool
    shared_factor: float = 0.0


@dataclass
class PanSiteDraw:
    """What one site contributes: clinical / truth / slide rows, expression columns and reports."""

    clinical_rows: list[dict]
    truth_rows: list[dict]
    slide_rows: list[dict]
    expr_cols: dict[str, np.ndarray]
    reports: list[tuple[str, str]]


def _pick(rng: np.random.Generator, n: int, k: int, among: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of ``k`` patients drawn without replacement (from ``among`` when given)."""
    pool = np.arange(n) if among is None else np.flatnonzero(among)
    mask = np.zeros(n, bool)
    k = int(min(max(k, 0), len(pool)))
    if k:
        mask[rng.choice(pool, size=k, replace=False)] = True
    return mask


def _ordinal(rng: np.random.Generator, latent: np.ndarray, noise: float, freqs) -> np.ndarray:
    """Levels 1..len(freqs) of ``latent + N(0, noise^2)`` cut at the normal quantiles of ``freqs``."""
    cuts = ndtri(np.clip(np.cumsum(freqs)[:-1] / np.sum(freqs), 1e-9, 1 - 1e-9)) * np.sqrt(1 + noise ** 2)
    return 1 + np.searchsorted(cuts, latent + rng.normal(0, noise, size=latent.shape))


def draw_pan_site(index: int, site: str, n: int, world: World, cfg: PanSettings, used_ids: set[str],
                  feature_dirs: tuple[Path, Path]) -> PanSiteDraw:
    """Draw the ``n`` patients of ``site`` and write their feature files (see the module docstring).

    Args:
        index: position of the site in ``make_pan_cancer``'s ``sites`` (seeds its stream).
        site: a key of :data:`PROJECT_SPECS`.
        n: patients of the site.
        world: the shared gene sets, loadings and tissue prototypes; ``world.prognostic[0]`` is the
            shared risk program.
        cfg: the settings.
        used_ids: case ids taken so far (new ones are added).
        feature_dirs: the 20x and 10x feature directories.

    Returns:
        The site's rows, expression samples and reports.
    """
    spec = PROJECT_SPECS[site]
    rng = rng_for(cfg.seed, 2, index + 1, sum(map(ord, site)))
    program = int(world.prognostic[0])
    # 1. site parameters
    agg_proto = rng.standard_normal(cfg.dim)
    profile = softmax(rng.normal(0, 1.0, size=len(world.prototypes)))
    delta = rng.normal(0, cfg.site_shift, size=cfg.dim)
    gamma = rng.normal(0, 0.05, size=cfg.dim)
    expr_batch = rng.normal(0, 0.2, size=world.n_genes)
    mu = np.zeros(world.n_pathways)
    others = np.array([p for p in range(world.n_pathways) if p != program])
    sig = rng.choice(others, size=min(4, len(others)), replace=False)
    mu[sig] = rng.choice([-1.0, 1.0], size=len(sig)) * rng.uniform(0.8, 1.4, size=len(sig))
    base_logit = float(logit(rng.uniform(0.10, 0.20)))
    # 2. patients
    probs = np.array([c.freq for c in spec.classes]) * (1 - spec.rare_freq) / sum(c.freq for c in spec.classes)
    if spec.rare:
        probs = np.append(probs, spec.rare_freq)
    latent = rng.choice(len(probs), size=n, p=probs / probs.sum())
    a, u, v = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    c = np.zeros(n)
    if cfg.shared_factor > 0:   # one patient factor in all three modalities (own stream: the rest is unchanged)
        c = rng_for(cfg.seed, 3, index + 1, sum(map(ord, site))).standard_normal(n)
        keep = np.sqrt(1.0 - cfg.shared_factor ** 2)
        a, u, v = (keep * x + cfg.shared_factor * c for x in (a, u, v))
    stage = _ordinal(rng, v, 0.6, spec.stage_freq)
    grade = _ordinal(rng, v, 0.8, GRADE_FREQ)
    written_grade = np.where(rng.random(n) < cfg.report_noise,
                             np.clip(grade + rng.choice([-1, 1], size=n), 1, 3), grade)
    no_expr = _pick(rng, n, round(cfg.frac_missing_expression * n))
    n_both = max(1, round(cfg.frac_missing_expression * cfg.frac_missing_report * n)) if cfg.frac_missing_report > 0 \
        and no_expr.any() else 0
    no_report = _pick(rng, n, n_both, no_expr)
    no_report |= _pick(rng, n, round(cfg.frac_missing_report * n) - int(no_report.sum()), ~no_expr)
    no_wsi = _pick(rng, n, round(cfg.frac_missing_slides * n), ~no_expr & ~no_report)
    hide_stage = _pick(rng, n, round(cfg.frac_missing_stage * n))
    n_slides = np.where(no_wsi, 0, 1 + (rng.random(n) < cfg.multi_slide))
    f_target = expit(base_logit + u + rng.normal(0, cfg.morphology_noise, size=n))
    activity = mu[None, :] + rng.standard_normal((n, world.n_pathways))
    activity[:, program] = a
    age = np.clip(np.round(rng.normal(62, 12, size=n)), 24, 90).astype(int)
    # 3. identities
    ids = _identities(rng, spec, latent, used_ids)
    cases = ids.cases
    # 4. slides
    prototypes = np.vstack([agg_proto[None, :], world.prototypes])
    morph = np.full(n, np.nan)
    slide_rows = []
    for i, case in enumerate(cases):
        if not n_slides[i]:
            continue
        w = np.concatenate([[f_target[i]], (1 - f_target[i]) * rng.dirichlet(12.0 * profile + 0.05)])
        total = int(rng.integers(cfg.patches[0], cfg.patches[1] + 1))
        sizes = [total] if n_slides[i] == 1 else [total - total // 2, total // 2]
        agg_sum = 0.0
        for k, n_p in enumerate(sizes):
            slide_id = f"{case}-01Z-00-DX{k + 1}"
            res = make_slide(rng, max(1, n_p), w, prototypes, cfg.feature_noise, gamma, delta, cfg.secondary)
            write_h5(feature_dirs[0] / f"{slide_id}.h5", res["features"], res["coords"], slide_id, case,
                     magnification=20, patch_size_level0=PATCH_20X)
            if cfg.secondary:
                write_h5(feature_dirs[1] / f"{slide_id}.h5", res["features_10x"], res["coords_10x"], slide_id, case,
                         magnification=10, patch_size_level0=2 * PATCH_20X)
            agg_sum += float(res["mix"][:, 0].sum())
            slide_rows.append({"slide_id": slide_id, "case_id": case, "site": site, "n_patches_20x": len(res["mix"]),
                               "morph_fraction": round(float(res["mix"][:, 0].mean()), 6)})
        morph[i] = agg_sum / sum(max(1, s) for s in sizes)
    # 5. survival: OS and PFS share the risk; PFS = min(progression, death, censoring)
    w_shared, w_site, w_report = cfg.risk_weights
    comp = {"risk_shared": w_shared * a, "risk_site": w_site * u,
            "risk_report": w_report * _zscore(_zscore(stage) + _zscore(grade))}
    risk = comp["risk_shared"] + comp["risk_site"] + comp["risk_report"]
    k = WEIBULL_SHAPE
    t_death = spec.scale_months * (rng.exponential(1.0, size=n) / np.exp(risk)) ** (1 / k)
    t_prog = PROGRESSION_SCALE * spec.scale_months * (rng.exponential(1.0, size=n) / np.exp(risk)) ** (1 / k)
    t_cens = spec.scale_months * rng.uniform(0.05, 1.3, size=n)
    os_days = np.maximum(1, np.round(np.minimum(t_death, t_cens) * DAYS_PER_MONTH)).astype(int)
    pfs_days = np.maximum(1, np.round(np.minimum.reduce([t_prog, t_death, t_cens]) * DAYS_PER_MONTH)).astype(int)
    os_event = t_death <= t_cens
    pfs_event = np.minimum(t_prog, t_death) <= t_cens
    # 6. expression
    expr = world.base_expr[None, :] + expr_batch[None, :] + activity @ world.loadings.T \
        + rng.normal(0, cfg.expression_noise, size=(n, world.n_genes))
    expr_cols = {f"{case}-01": expr[i] for i, case in enumerate(cases) if not no_expr[i]}
    # 7. rows
    clinical, reports, truth = [], [], []
    for i, case in enumerate(cases):
        st = None if hide_stage[i] else stage_strings(rng, spec, int(stage[i]))
        show = st if cfg.stage_in_clinical else None
        dead = bool(os_event[i])
        project, diagnosis = ids.projects[i], ids.diagnoses[i]
        clinical.append({
            "case_submitter_id": case, "project_id": project, "primary_diagnosis": diagnosis,
            **{col: show[j] if show else GDC_EMPTY for j, col in enumerate(_STAGE_COLUMNS)},
            "vital_status": "Dead" if dead else "Alive",
            "days_to_death": fmt_int(os_days[i]) if dead else GDC_EMPTY,
            "days_to_last_follow_up": GDC_EMPTY if dead else fmt_int(os_days[i]),
            "age_at_index": str(age[i]),
            "progression": str(int(pfs_event[i])), "days_to_progression": fmt_int(pfs_days[i]),
        })
        if not no_report[i]:
            reports.append((case, pan_report_text(rng, spec, diagnosis, st, int(written_grade[i]))))
        truth.append({
            "case_id": case, "site": site, "project_id": project, "primary_diagnosis": diagnosis,
            "subtype": ids.class_names[i],
            **{key: round(float(val[i]), 6) for key, val in comp.items()},
            "risk": round(float(risk[i]), 6),
            "log_hazard": round(float(risk[i] - k * np.log(spec.scale_months)), 6),
            "program_activity": round(float(a[i]), 6), "site_factor": round(float(u[i]), 6),
            "report_factor": round(float(v[i]), 6), **({"shared_factor": round(float(c[i]), 6)}
                                                        if cfg.shared_factor > 0 else {}),
            "stage": int(stage[i]), "grade": int(grade[i]),
            "grade_written": int(written_grade[i]) if not no_report[i] else -1,
            "stage_written": not bool(hide_stage[i]),
            "morph_fraction_target": round(float(f_target[i]), 6),
            "morph_fraction": round(float(morph[i]), 6) if n_slides[i] else float("nan"),
            "os_months": round(os_days[i] / DAYS_PER_MONTH, 4), "os_event": int(os_event[i]),
            "pfs_months": round(pfs_days[i] / DAYS_PER_MONTH, 4), "pfs_event": int(pfs_event[i]),
            "death_time_months": round(float(t_death[i]), 4), "progression_time_months": round(float(t_prog[i]), 4),
            "censor_time_months": round(float(t_cens[i]), 4),
            "n_slides": int(n_slides[i]), "has_wsi": bool(n_slides[i]), "has_expression": not bool(no_expr[i]),
            "has_report": not bool(no_report[i]),
        })
    return PanSiteDraw(clinical, truth, slide_rows, expr_cols, reports)
