"""One site of the synthetic cohort: its patients drawn, their slides written, their rows returned.

:func:`draw_site` draws one site, given the shared world (:mod:`.world`), from the site's own stream
``(seed, 1, site position + 1, sum of the site name's character codes)``, in named steps:

1. :func:`_site_parameters`: batch effects, subtype morphology profiles and subtype pathway shifts;
2. :func:`_draw_patients`: subtype, stage, what each patient lacks, slide count, morphology target,
   pathway activity, age;
3. :func:`_identities`: project, GDC diagnosis, class and case barcode;
4. :func:`_write_slides`: the 20x and 10x feature files and the realised morphology fraction;
5. :func:`_survival`: true risk, event and censoring times, the written day counts;
6. :func:`_expression`: expression samples (one case of the first site also gets a normal sample);
7. :func:`_table_rows`: clinical, report and truth rows.

The steps consume the site's stream in this order; changing the order (or adding a draw) changes
every file written for the same seed, which the byte-identity test of the synthetic cohort catches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.formats.clinical import DAYS_PER_MONTH
from ..evaluation.metrics import c_index
from .clinical_text import GDC_EMPTY, fmt_int, new_case_id, report_text, stage_strings
from .sites import SITES, SiteSpec
from .slides import PATCH_20X, make_slide, softmax, write_h5
from .world import Settings, World, rng_for

__all__ = ["WEIBULL_SHAPE", "SiteDraw", "draw_site"]

#: Shape k of the Weibull event times (k > 1: hazard rises with time).
WEIBULL_SHAPE = 1.4


@dataclass
class SiteDraw:
    """Everything one site contributes to the written files.

    Attributes:
        clinical_rows: rows of clinical.tsv.
        truth_rows: rows of truth.csv.
        slide_rows: rows of truth_slides.csv (the feature files are already written).
        expr_cols: expression sample barcode -> values, in file order.
        reports: ``(case_id, text)`` rows of reports.csv.
        oracle_c_index: C-index of the true risk on the written times (rounded to 4 digits).
        event_rate: fraction of patients with the event (rounded to 4 digits).
        two_sample_case: the case given both a tumour and a normal sample, or None.
    """

    clinical_rows: list[dict]
    truth_rows: list[dict]
    slide_rows: list[dict]
    expr_cols: dict[str, np.ndarray]
    reports: list[tuple[str, str]]
    oracle_c_index: float
    event_rate: float
    two_sample_case: str | None


def draw_site(index: int, site: str, n: int, ood: bool, world: World, cfg: Settings, used_ids: set[str],
              feature_dirs: tuple[Path, Path]) -> SiteDraw:
    """Draw the ``n`` patients of ``site`` (the ``index``-th site) and write their feature files.

    Args:
        index: position of the site in ``make_synthetic``'s ``sites`` (seeds its stream; the first
            site holds the two-sample case).
        site: a key of :data:`~modaltune.synthetic.sites.SITES`.
        n: patients of the site.
        ood: the site is out-of-distribution (larger batch effects).
        world: the shared structure (:func:`draw_world`).
        cfg: the settings.
        used_ids: case ids taken so far (new ones are added).
        feature_dirs: the 20x and 10x feature directories.

    Returns:
        The site's rows, samples and oracle values.
    """
    spec = SITES[site]
    rng = rng_for(cfg.seed, 1, index + 1, sum(map(ord, site)))
    params = _site_parameters(rng, spec, ood, world, cfg)
    pat = _draw_patients(rng, spec, n, params, world, cfg)
    ids = _identities(rng, spec, pat.latent, used_ids)
    morph, slide_rows = _write_slides(rng, site, ids.cases, pat, params, world, cfg, feature_dirs)
    surv = _survival(rng, spec, pat, morph, world, cfg)
    expr_cols, two_sample_case = _expression(rng, ids.cases, pat, params, world, first_site=index == 0)
    clinical_rows, reports, truth_rows = _table_rows(rng, site, spec, ood, ids, pat, morph, surv)
    return SiteDraw(clinical_rows=clinical_rows, truth_rows=truth_rows, slide_rows=slide_rows, expr_cols=expr_cols,
                    reports=reports, oracle_c_index=round(c_index(surv.months_written, surv.event, surv.risk), 4),
                    event_rate=round(float(surv.event.mean()), 4), two_sample_case=two_sample_case)


@dataclass
class _SiteParams:
    n_classes: int
    n_latent: int          # latent subtype profiles: the classes, plus one shared by the Rare-set
    delta: np.ndarray      # additive feature batch effect [dim]
    gamma: np.ndarray      # multiplicative feature batch effect [dim]
    expr_batch: np.ndarray  # expression batch effect [genes]
    profiles: np.ndarray   # [latent, prototypes - 1] morphology profile of each latent subtype
    mu: np.ndarray         # [latent, pathways] pathway shift of each latent subtype


@dataclass
class _Patients:
    latent: np.ndarray
    stage: np.ndarray
    hide_stage: np.ndarray
    no_expr: np.ndarray
    no_report: np.ndarray
    n_slides: np.ndarray
    f_agg: np.ndarray
    activity: np.ndarray
    age: np.ndarray


@dataclass
class _Identities:
    projects: list[str]
    diagnoses: list[str]
    class_names: list[str]
    class_idx: list[int]
    cases: list[str]


@dataclass
class _Survival:
    path_score: np.ndarray
    risk: np.ndarray
    t_event: np.ndarray
    t_cens: np.ndarray
    event: np.ndarray
    days: np.ndarray
    months_written: np.ndarray


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _site_parameters(rng, spec: SiteSpec, ood: bool, world: World, cfg: Settings) -> _SiteParams:
    """Batch effects; each latent subtype gets a signature prototype and shifts on its own pathways."""
    n_cls = len(spec.classes)
    n_lat = n_cls + (1 if spec.rare else 0)
    k = cfg.n_prototypes - 1
    delta = rng.normal(0, cfg.ood_shift if ood else cfg.site_shift, size=cfg.dim)
    gamma = rng.normal(0, 0.15 if ood else 0.05, size=cfg.dim)
    expr_batch = rng.normal(0, 0.5 if ood else 0.2, size=world.n_genes)
    site_logits = rng.normal(0, 0.7, size=k)
    signature = rng.permutation(k)[np.arange(n_lat) % k]
    class_logits = rng.normal(0, 1.0, size=(n_lat, k))
    class_logits[np.arange(n_lat), signature] += 1.6
    profiles = softmax(site_logits[None, :] + class_logits)
    # subtype pathway shifts on (where possible disjoint) blocks of non-prognostic pathways
    non_prog = world.non_prognostic
    per = max(1, min(6, len(non_prog) // n_lat))
    order = rng.permutation(non_prog)
    mu = np.zeros((n_lat, world.n_pathways))
    for c in range(n_lat):
        chosen = order[(c * per + np.arange(per)) % len(order)]
        mu[c, chosen] = rng.choice([-1.0, 1.0], size=per) * rng.uniform(0.8, 1.4, size=per)
    return _SiteParams(n_cls, n_lat, delta, gamma, expr_batch, profiles, mu)


def _draw_patients(rng, spec: SiteSpec, n: int, params: _SiteParams, world: World, cfg: Settings) -> _Patients:
    """Latent subtype (at least one Rare-set patient when the site has one and n >= 10), stage and the rest."""
    n_cls = params.n_classes
    probs = np.array([c.freq for c in spec.classes]) * (1 - spec.rare_freq) / sum(c.freq for c in spec.classes)
    if spec.rare:
        probs = np.append(probs, spec.rare_freq)
    lat = rng.choice(params.n_latent, size=n, p=probs / probs.sum())
    if spec.rare and n >= 10 and not (lat == n_cls).any():
        lat[rng.integers(n)] = n_cls
    stage = (rng.choice(4, size=n, p=np.array(spec.stage_freq)) + 1) if spec.stage_freq else np.zeros(n, int)
    hide_stage = np.zeros(n, bool)
    if spec.stage_freq and cfg.frac_missing_stage > 0:
        hide_stage[rng.choice(n, size=max(1, round(cfg.frac_missing_stage * n)), replace=False)] = True
    no_expr = np.zeros(n, bool)
    if cfg.frac_missing_expression > 0 and n >= 4:
        no_expr[rng.choice(n, size=max(1, round(cfg.frac_missing_expression * n)), replace=False)] = True
    no_report = rng.random(n) < cfg.frac_missing_report
    p_two, p_three = cfg.multi_slide  # probabilities of 2 and of 3 slides
    n_slides = 1 + (rng.random(n) < p_two + p_three).astype(int)
    n_slides += (n_slides == 2) & (rng.random(n) < p_three / max(1e-9, p_two + p_three))
    if n >= 2 and p_two + p_three > 0 and not (n_slides > 1).any():
        n_slides[rng.integers(n)] = 2
    f_agg = rng.beta(1.5, 5.0, size=n)
    activity = params.mu[lat] + rng.standard_normal((n, world.n_pathways))
    age = np.clip(np.round(rng.normal(61, 12, size=n)), 26, 90).astype(int)
    return _Patients(lat, stage, hide_stage, no_expr, no_report, n_slides, f_agg, activity, age)


def _identities(rng, spec: SiteSpec, latent: np.ndarray, used_ids: set[str]) -> _Identities:
    """Project and GDC diagnosis (a weighted variant of the class, or a Rare-set diagnosis), then barcodes."""
    n_cls = len(spec.classes)
    ids = _Identities([], [], [], [], [])
    for lat in latent:
        if lat < n_cls:
            cls = spec.classes[lat]
            w = np.array([v[2] for v in cls.variants])
            proj, diag, _ = cls.variants[rng.choice(len(w), p=w / w.sum())]
            ids.class_names.append(cls.name)
            ids.class_idx.append(int(lat))
        else:
            proj, diag = spec.rare[rng.integers(len(spec.rare))]
            ids.class_names.append("Rare-set")
            ids.class_idx.append(-1)
        ids.projects.append(proj)
        ids.diagnoses.append(diag)
    ids.cases = [new_case_id(rng, spec.tss[p], used_ids) for p in ids.projects]
    return ids


def _write_slides(rng, site: str, cases: list[str], pat: _Patients, params: _SiteParams, world: World,
                  cfg: Settings, feature_dirs: tuple[Path, Path]) -> tuple[np.ndarray, list[dict]]:
    """Write each patient's slides (20x, and 10x when ``secondary``); the realised morphology fraction
    (mean weight of the aggressive prototype over all the patient's 20x patches) and the slide rows."""
    feat_dir, feat_dir2 = feature_dirs
    morph = np.zeros(len(cases))
    rows = []
    for i, case in enumerate(cases):
        w_non = rng.dirichlet(12.0 * params.profiles[pat.latent[i]] + 0.05)
        w = np.concatenate([[pat.f_agg[i]], (1 - pat.f_agg[i]) * w_non])
        agg_sum, agg_n = 0.0, 0
        for k in range(pat.n_slides[i]):
            slide_id = f"{case}-01Z-00-DX{k + 1}"
            if cfg.slide_uuid_suffix:
                hexs = "".join(f"{b:02X}" for b in rng.integers(0, 256, size=16))
                slide_id += f".{hexs[:8]}-{hexs[8:12]}-{hexs[12:16]}-{hexs[16:20]}-{hexs[20:]}"
            n_p = int(rng.integers(cfg.patches[0], cfg.patches[1] + 1))
            res = make_slide(rng, n_p, w, world.prototypes, cfg.feature_noise, params.gamma, params.delta,
                             cfg.secondary)
            write_h5(feat_dir / f"{slide_id}.h5", res["features"], res["coords"], slide_id, case,
                     magnification=20, patch_size_level0=PATCH_20X)
            if cfg.secondary:
                write_h5(feat_dir2 / f"{slide_id}.h5", res["features_10x"], res["coords_10x"], slide_id, case,
                         magnification=10, patch_size_level0=2 * PATCH_20X)
            agg_sum += float(res["mix"][:, 0].sum())
            agg_n += n_p
            rows.append({"slide_id": slide_id, "case_id": case, "site": site, "n_patches_20x": n_p,
                         "n_patches_10x": int(len(res["coords_10x"])) if cfg.secondary else 0,
                         "morph_fraction": round(float(res["mix"][:, 0].mean()), 6)})
        morph[i] = agg_sum / agg_n
    return morph, rows


def _survival(rng, spec: SiteSpec, pat: _Patients, morph: np.ndarray, world: World, cfg: Settings) -> _Survival:
    """Risk from stage, pathway score and morphology (each z-scored within site); Weibull event times,
    uniform censoring; observed months rounded to whole days as GDC writes them."""
    n = len(morph)
    path_score = (pat.activity[:, world.prognostic] * world.signs).sum(1) / math.sqrt(len(world.prognostic))
    z_stage = _zscore(pat.stage) if spec.stage_freq else np.zeros(n)
    w_stage, w_path, w_morph = cfg.risk_weights
    risk = w_stage * z_stage + w_path * _zscore(path_score) + w_morph * _zscore(morph)
    t_event = spec.scale_months * (rng.exponential(1.0, size=n) / np.exp(risk)) ** (1 / WEIBULL_SHAPE)
    t_cens = spec.scale_months * rng.uniform(0.05, 1.3, size=n)
    event = t_event <= t_cens
    months = np.minimum(t_event, t_cens)
    days = np.maximum(1, np.round(months * DAYS_PER_MONTH)).astype(int)
    return _Survival(path_score, risk, t_event, t_cens, event, days, days / DAYS_PER_MONTH)


def _expression(rng, cases: list[str], pat: _Patients, params: _SiteParams, world: World,
                first_site: bool) -> tuple[dict[str, np.ndarray], str | None]:
    """Tumour samples ``<case>-01`` of patients with expression; in the first site, the first such patient
    also gets a normal sample ``-11``, written before its tumour sample (the reader's rule must pick -01)."""
    n = len(cases)
    expr = world.base_expr[None, :] + params.expr_batch[None, :] + pat.activity @ world.loadings.T \
        + rng.normal(0, 0.5, size=(n, world.n_genes))
    cols: dict[str, np.ndarray] = {}
    two_sample_case = None
    for i, case in enumerate(cases):
        if pat.no_expr[i]:
            continue
        if two_sample_case is None and first_site:
            two_sample_case = case
            cols[f"{case}-11"] = world.base_expr + params.expr_batch + rng.normal(0, 0.5, size=world.n_genes)
        cols[f"{case}-01"] = expr[i]
    return cols, two_sample_case


def _table_rows(rng, site: str, spec: SiteSpec, ood: bool, ids: _Identities, pat: _Patients, morph: np.ndarray,
                surv: _Survival) -> tuple[list[dict], list[tuple[str, str]], list[dict]]:
    """Clinical rows (GDC columns, `'--` for empty), reports and truth rows, patient by patient."""
    clinical, reports, truth = [], [], []
    for i, case in enumerate(ids.cases):
        st = stage_strings(rng, spec, int(pat.stage[i])) if spec.stage_freq and not pat.hide_stage[i] else None
        event = bool(surv.event[i])
        clinical.append({
            "case_submitter_id": case, "project_id": ids.projects[i], "primary_diagnosis": ids.diagnoses[i],
            "ajcc_pathologic_stage": st[0] if st else GDC_EMPTY,
            "ajcc_pathologic_t": st[1] if st else GDC_EMPTY,
            "ajcc_pathologic_n": st[2] if st else GDC_EMPTY,
            "ajcc_pathologic_m": st[3] if st else GDC_EMPTY,
            "vital_status": "Dead" if event else "Alive",
            "days_to_death": fmt_int(surv.days[i]) if event else GDC_EMPTY,
            "days_to_last_follow_up": GDC_EMPTY if event else fmt_int(surv.days[i]),
            "age_at_index": str(pat.age[i]),
        })
        if not pat.no_report[i]:
            reports.append((case, report_text(rng, spec, ids.diagnoses[i], st, morph[i])))
        truth.append({
            "case_id": case, "site": site, "project_id": ids.projects[i], "ood": ood,
            "primary_diagnosis": ids.diagnoses[i], "true_subtype": ids.class_names[i],
            "subtype_index": ids.class_idx[i], "rare": ids.class_idx[i] == -1, "latent_subtype": int(pat.latent[i]),
            "stage_true": int(pat.stage[i]) if spec.stage_freq else -1,
            "stage_in_clinical": bool(spec.stage_freq) and not bool(pat.hide_stage[i]),
            "morph_fraction": round(float(morph[i]), 6),
            "morph_fraction_target": round(float(pat.f_agg[i]), 6),
            "pathway_activity": round(float(surv.path_score[i]), 6),
            "risk": round(float(surv.risk[i]), 6),
            "event_time_months": round(float(surv.t_event[i]), 4),
            "censor_time_months": round(float(surv.t_cens[i]), 4),
            "survival_months": round(float(surv.months_written[i]), 4), "event": int(surv.event[i]),
            "n_slides": int(pat.n_slides[i]), "has_expression": not bool(pat.no_expr[i]),
            "has_report": not bool(pat.no_report[i]),
        })
    return clinical, reports, truth
