"""``make_synthetic``: write a synthetic cohort (see :mod:`modaltune.synthetic`) in the standard formats.

The function validates its settings, draws the shared world and then each site
(:mod:`.world`, :mod:`.site_draw`), and writes the tables and ``truth.json``. The oracle C-index in ``truth.json``
is :func:`modaltune.evaluation.metrics.c_index` of the true risk on the written times, the same
function every evaluation (and ``modaltune demo``) uses, so the oracle is directly comparable with
model C-indices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .site_draw import WEIBULL_SHAPE, SiteDraw, draw_site
from .sites import DEFAULT_PATIENTS, DIAGNOSIS_CLASS, SITES, prototype_names
from .world import Settings, World, draw_world
from .writers import clear_previous, write_clinical, write_expression, write_gmt, write_reports, write_rows

__all__ = ["make_synthetic", "DEFAULT_OOD_SITES"]

#: sites held out for out-of-distribution evaluation by default (`modaltune synth` holds out those
#: of them that are among the chosen sites)
DEFAULT_OOD_SITES: tuple[str, ...] = ("BLCA",)

#: ``generator`` of truth.json: recognises an earlier synthetic cohort in the output directory. It names
#: the function's first home and is kept so files stay byte-identical and older cohorts are recognised.
_GENERATOR = "modaltune.data.synthetic.make_synthetic"


def make_synthetic(
    out: str | Path,
    *,
    seed: int = 0,
    sites: Sequence[str] = ("BRCA", "NSCLC", "RCC", "BLCA"),
    ood_sites: Sequence[str] = DEFAULT_OOD_SITES,
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
        ``sites``/``ood_sites``, ``oracle_c_index`` (site -> float: :func:`~modaltune.evaluation.metrics.c_index`
        of the true risk on the written times), ``event_rate`` (site -> float), ``summary`` (a dict of
        counts) and ``prognostic_pathways``.
    """
    sites = tuple(str(s).upper() for s in sites)
    ood_sites = tuple(str(s).upper() for s in ood_sites)
    _validate(sites, ood_sites, dim, patches, n_prototypes, n_pathways, pathway_size, multi_slide)
    n_per_site = _patients_per_site(patients, sites)

    out = Path(out)
    feature_dirs = (out / "features_20x", out / "features_10x")
    clear_previous(out, feature_dirs, {_GENERATOR}, "make_synthetic")
    feature_dirs[0].mkdir(parents=True, exist_ok=True)
    if secondary:
        feature_dirs[1].mkdir(parents=True, exist_ok=True)

    cfg = Settings(seed=seed, dim=dim, patches=tuple(patches), n_prototypes=n_prototypes,
                   risk_weights=tuple(risk_weights), feature_noise=feature_noise, site_shift=site_shift,
                   ood_shift=ood_shift, multi_slide=tuple(multi_slide), frac_missing_stage=frac_missing_stage,
                   frac_missing_expression=frac_missing_expression, frac_missing_report=frac_missing_report,
                   secondary=secondary, slide_uuid_suffix=slide_uuid_suffix)
    world = draw_world(seed, dim, n_prototypes, n_pathways, pathway_size, n_extra_genes, n_absent_genes)
    used_ids: set[str] = set()
    draws = {site: draw_site(i, site, n_per_site[site], site in ood_sites, world, cfg, used_ids, feature_dirs)
             for i, site in enumerate(sites)}

    paths = {
        "out": out, "features": feature_dirs[0], "features_secondary": feature_dirs[1] if secondary else None,
        "clinical": out / "clinical.tsv", "expression": out / "expression.tsv",
        "gene_sets": out / "pathways.gmt", "reports": out / "reports.csv", "truth": out / "truth.csv",
        "truth_slides": out / "truth_slides.csv", "truth_json": out / "truth.json",
    }
    truth = _write_tables(paths, draws, world)
    oracle = {s: d.oracle_c_index for s, d in draws.items()}
    event_rate = {s: d.event_rate for s, d in draws.items()}
    summary = _summary(truth, draws, world, sites, n_pathways)
    meta = {
        "generator": _GENERATOR,
        "seed": seed, "sites": list(sites), "ood_sites": list(ood_sites), "dim": dim,
        "patches": list(patches), "n_prototypes": n_prototypes, "prototype_names": prototype_names(n_prototypes),
        "aggressive_prototype": 0, "risk_weights": list(risk_weights),
        "weibull_shape": WEIBULL_SHAPE, "scale_months": {s: SITES[s].scale_months for s in sites},
        "prognostic_pathways": [list(world.gmt)[p] for p in world.prognostic],
        "prognostic_signs": [int(x) for x in world.signs],
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


def _write_tables(paths: dict[str, Path], draws: dict[str, SiteDraw], world: World) -> pd.DataFrame:
    """Write the clinical, expression, GMT, report and truth tables; return the truth table."""
    rows = lambda attr: [r for d in draws.values() for r in getattr(d, attr)]  # noqa: E731
    write_clinical(paths["clinical"], rows("clinical_rows"))
    expr_cols = {k: v for d in draws.values() for k, v in d.expr_cols.items()}
    write_expression(paths["expression"], world.expr_genes, expr_cols)
    write_gmt(paths["gene_sets"], world.gmt)
    write_reports(paths["reports"], rows("reports"))
    truth = write_rows(paths["truth"], rows("truth_rows"))
    write_rows(paths["truth_slides"], rows("slide_rows"))
    return truth


def _summary(truth: pd.DataFrame, draws: dict[str, SiteDraw], world: World, sites, n_pathways: int) -> dict:
    """Counts of what was written (patients, slides, classes, events, what is missing, genes)."""
    truth["n_slides"] = truth["n_slides"].astype(int)
    gmt_genes = {g for gs in world.gmt.values() for g in gs}
    return {
        "n_patients": int(len(truth)),
        "n_slides": int(sum(len(d.slide_rows) for d in draws.values())),
        "patients_per_site": {s: int((truth.site == s).sum()) for s in sites},
        "classes_per_site": {s: {k: int(v) for k, v in truth[truth.site == s].true_subtype.value_counts()
                                 .sort_index().items()} for s in sites},
        "multi_slide_patients": int((truth.n_slides > 1).sum()),
        "events": int(truth.event.sum()),
        "event_rate": round(float(truth.event.mean()), 4),
        "missing_stage": int((~truth.stage_in_clinical & (truth.stage_true > 0)).sum()),
        "missing_expression": int((~truth.has_expression).sum()),
        "missing_report": int((~truth.has_report).sum()),
        "two_sample_case": next((d.two_sample_case for d in draws.values() if d.two_sample_case), None),
        "n_genes_expression": world.n_genes,
        "n_genes_gmt": len(gmt_genes),
        "genes_absent_from_expression": sorted(gmt_genes - set(world.expr_genes)),
        "n_pathways": n_pathways,
    }


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
        raise ConfigError(f"make_synthetic: ood_sites {bad} are not among sites {list(sites)}; add them to the "
                          f"sites or leave them out of ood_sites (ood_sites=() holds out none)")
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
