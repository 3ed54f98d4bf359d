"""``prepare_cohort``: raw inputs in, one validated cohort directory out.

The steps run in the order of the data's dependencies: the clinical table first (it defines the
patients and their sites), then feature files (matched to those patients), expression and gene sets,
reports, and finally the manifest, summary and files. Each step lives in its own module of this
package; this one only sequences them and records every warning raised on the way, so the summary
lists the readers' warnings next to ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ...errors import InputError, InputWarning
from ..cohort import Cohort
from ..site_schemes import SITE_SCHEMES
from .clinical import assign_labels, assign_sites, load_clinical, resolve_grouping
from .expression import check_ood_sites, load_expression, load_reports, select_genes
from .features import ValidationCache, map_slides_to_cases, match_secondary, scan_features
from .log import IngestLog, recording_warnings
from .summary import build_summary, note_missing
from .write import build_manifest, cohort_meta, write_cohort

__all__ = ["DEFAULT_MIN_GENES_PER_PATHWAY", "prepare_cohort"]

#: Pathways with fewer genes present in the expression matrix are dropped (one or two genes make a
#: meaningless pathway token).
DEFAULT_MIN_GENES_PER_PATHWAY = 3


def prepare_cohort(
    out: str | Path,
    *,
    features: str | Path | None = None,
    features_secondary: str | Path | None = None,
    clinical: str | Path,
    expression: str | Path | None = None,
    gene_sets: str | Path | None = None,
    reports: str | Path | None = None,
    slide_case_table: str | Path | None = None,
    grouping: Any = None,
    clinical_columns: Mapping[str, str] | None = None,
    ood_sites: Iterable[str] = (),
    min_genes_per_pathway: int = DEFAULT_MIN_GENES_PER_PATHWAY,
    check_values: bool = True,
    expression_orientation: str = "auto",
    site_scheme: str = "modaltune",
) -> Cohort:
    """Validate raw inputs, align them per patient and write the cohort directory ``out``.

    Args:
        out: cohort directory to write (created; files of the same names are overwritten).
        features: directory of primary-magnification patch features (``<slide_id>.h5|.pt``).
        features_secondary: directory of a second magnification, matched to ``features`` by slide id.
        clinical: clinical table (GDC TSV/CSV or SurvPath CSV); defines the patients.
        expression: expression matrix (Xena genes x samples or samples x genes).
        gene_sets: GMT file of pathways (genes absent from ``expression`` are dropped).
        reports: CSV of ``case_id,text`` pathology reports.
        slide_case_table: CSV mapping slide ids to case ids for non-TCGA names.
        grouping: None (ModalTune Table 4), a YAML path, a dict of that shape, or a ``labels.Grouping``.
        clinical_columns: maps our clinical column names to the user's (see ``read_clinical``).
        ood_sites: sites flagged out-of-distribution (``ood`` column).
        min_genes_per_pathway: pathways with fewer genes present in the expression are dropped.
        check_values: read every feature file once to reject NaN/inf and find files without coordinates
            (cached between runs by path, size and mtime). False: header checks only.
        expression_orientation: ``auto``, or the orientation passed to ``read_expression``.
        site_scheme: how TCGA projects become sites (``data.site_schemes``): ``modaltune`` (organ
            grouping: LUAD + LUSC -> NSCLC, KIRC/KIRP/KICH -> RCC, ...) or ``tcga_project`` (one site per
            project except COAD + READ -> CRC and GBM + LGG -> GBMLGG, as MICE). Recorded in
            ``cohort.json`` and the summary.

    Returns:
        The loaded :class:`Cohort` (its ``summary`` is also in ``out/summary.json|txt``).

    Raises:
        InputError: unreadable, inconsistent or non-finite inputs (the message names file and fix).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if features is None and features_secondary is not None:
        raise InputError("secondary-magnification features given without primary ones", file=features_secondary,
                         fix="pass the primary features as `features` (secondary files are matched to them)")
    if site_scheme not in SITE_SCHEMES:
        raise InputError(f"unknown site scheme '{site_scheme}'", fix=f"use one of {', '.join(SITE_SCHEMES)}")
    if int(min_genes_per_pathway) < 1:
        raise InputError(f"min_genes_per_pathway must be >= 1, got {min_genes_per_pathway}",
                         fix="use a positive number of genes")
    log = IngestLog()
    with recording_warnings() as caught:
        return _prepare(out, log, caught, features, features_secondary, clinical, expression, gene_sets, reports,
                        slide_case_table, grouping, clinical_columns, ood_sites, min_genes_per_pathway,
                        check_values, expression_orientation, site_scheme)


def _prepare(out: Path, log: IngestLog, caught: list, features, features_secondary, clinical, expression, gene_sets,
             reports, slide_case_table, grouping, clinical_columns, ood_sites, min_genes_per_pathway, check_values,
             expression_orientation, site_scheme) -> Cohort:
    """The body of :func:`prepare_cohort` (warnings are recorded by the caller)."""
    grouping_obj = resolve_grouping(grouping)

    clin, clin_slide_map, reader_warned_survival = load_clinical(Path(clinical), clinical_columns, log)
    clin["site"] = assign_sites(clin, Path(clinical), log, site_scheme)
    labels_df = assign_labels(clin, grouping_obj, Path(clinical), log)
    known_cases = set(clin["case_id"])

    cache = ValidationCache(out / ".validation_cache.json") if check_values else None
    prim = sec = None
    if features is not None:
        prim = scan_features(Path(features), "primary", check_values, cache)
        map_slides_to_cases(prim, slide_case_table, clin_slide_map, known_cases, log)
    if features_secondary is not None:
        sec = scan_features(Path(features_secondary), "secondary", check_values, cache)
        match_secondary(prim, sec, log)
    if cache is not None:
        cache.save()

    expr, genes, pathways, expr_info = None, [], {}, {}
    if expression is not None:
        expr, expr_info = load_expression(Path(expression), expression_orientation, known_cases, log)
        genes, pathways = select_genes(list(expr.columns), gene_sets, int(min_genes_per_pathway), log)
        expr = expr.loc[:, genes].astype(np.float32)
        if pathways:
            covered = {int(i) for idx in pathways.values() for i in idx}
            expr_info["n_genes_in_no_gene_set"] = len(genes) - len(covered)
    elif gene_sets is not None:
        log.warn("gene sets given without an expression matrix; they are ignored", file=gene_sets,
                 fix="pass `expression` too, or drop `gene_sets`")

    rep = load_reports(Path(reports), known_cases, log) if reports is not None else None

    ood = check_ood_sites(ood_sites, set(clin["site"]), log)
    manifest = build_manifest(clin, labels_df, prim, sec, expr, rep, ood)
    note_missing(manifest, log, warn_survival=not reader_warned_survival)

    meta = cohort_meta(manifest, prim, sec, genes, pathways, ood, grouping_obj, min_genes_per_pathway, dict(
        clinical=clinical, features=features, features_secondary=features_secondary, expression=expression,
        gene_sets=gene_sets, reports=reports, slide_case_table=slide_case_table), site_scheme)
    log.warnings = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    summary = build_summary(manifest, log, prim, sec, expr_info, genes, pathways, site_scheme)
    write_cohort(out, manifest, expr, genes, pathways, rep, summary, meta, grouping_obj)
    return Cohort.load(out)
