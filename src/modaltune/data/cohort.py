"""Validate and align raw inputs into a cohort directory; load it back.

:func:`prepare_cohort` reads the user's files through :mod:`modaltune.data.formats`, checks them,
aligns every modality on the TCGA case id (patient) and writes one cohort directory::

    out/
      manifest.csv          one row per patient of the clinical table (see MANIFEST_COLUMNS)
      expression.csv.gz     cases x genes (expression.parquet instead when pyarrow is installed);
                            only rows of cases with omics, only genes used by a kept pathway
                            (all genes when no GMT is given)
      gene_sets.json        {"genes": [...], "pathways": {name: [indices into genes]}}
      reports.csv           case_id,text (when reports are given)
      prompts.csv           case_id,diagnosis: the split-independent diagnosis prompt; the general
                            and survival prompts need train-fitted bin edges and are built per split
                            (``data.dataset``)
      summary.json/.txt     counts per site / class / modality, events and censoring, every dropped
                            or unmatched item with its reason
      cohort.json           metadata (feature widths, genes, pathways, sites, OOD sites, grouping...)
      grouping.yaml         the subtype grouping used (editable; pass it back as ``grouping``)
      .validation_cache.json  value checks of feature files already scanned (size + mtime keyed),
                            so re-running ``prepare`` does not read every file again

Rules (no silent loss):

* The clinical table defines the patients. A patient of the clinical table is **always kept**,
  whatever it lacks (slides, expression, report, label, survival); what it lacks is recorded in
  the availability columns and counted in the summary.
* A slide, expression sample or report whose case is **not in the clinical table** cannot get a
  site (nor labels) and is dropped, with a warning naming the items and the fix; it is listed under
  ``unmatched`` in the summary.
* Sites: a ``site`` column of the clinical table wins; otherwise ``SITE_OF_PROJECT[project_id]``;
  a project not in that table gives the project id without ``TCGA-`` (``TCGA-UCEC`` -> ``UCEC``);
  a patient with neither gets ``UNKNOWN`` (kept, warned).
* Diagnoses are grouped by ``labels.assign_subtype``; an unknown diagnosis string keeps the patient
  with no subtype (index -1) and warns, naming the cases and the fix (add the string to a grouping
  YAML passed as ``grouping``).
* Several clinical rows of one case (GDC has one per treatment, SurvPath one per slide) are merged
  when they agree; rows that disagree on a patient-level value are an error naming the case.
* Genes of the GMT absent from the expression matrix are dropped and listed; pathways left with
  fewer than ``min_genes_per_pathway`` genes (default 3: one or two genes make a meaningless
  pathway token) are dropped and listed. No pathway left is an error (usually a gene-id mismatch).
* Feature files: all must be readable (error naming the file), non-empty (error naming the file)
  and of one width per magnification (error naming the odd files and the widths). With
  ``check_values=True`` each file is read once to find NaN/inf (error naming the file) and
  missing coordinates (recorded). Secondary-magnification files are matched to primary ones by
  slide id; unmatched ones on either side are listed.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InputError, InputWarning, warn_input
from .formats import (
    feature_shape,
    list_feature_files,
    read_clinical,
    read_expression,
    read_features,
    read_gmt,
    read_reports,
    read_slide_case_table,
    tcga_case_id,
)
from .labels import (
    SITE_OF_PROJECT,
    Grouping,
    assign_subtype,
    default_grouping,
    load_grouping,
    m_to_words,
    n_to_words,
    stage_to_words,
    t_to_words,
)
from .prompts import build_prompts

__all__ = ["Cohort", "prepare_cohort", "format_summary", "MANIFEST_COLUMNS", "DEFAULT_MIN_GENES_PER_PATHWAY"]

COHORT_FORMAT_VERSION = 1
DEFAULT_MIN_GENES_PER_PATHWAY = 3
UNKNOWN_SITE = "UNKNOWN"
_MAX_NAMED = 10  # items named in one warning message

STR_COLUMNS = ("case_id", "site", "project_id", "primary_diagnosis", "subtype", "location", "diagnosis_text",
               "stage", "t", "n", "m", "slides", "slide_paths", "slide_paths_secondary")
INT_COLUMNS = ("subtype_index", "n_slides", "n_patches", "n_patches_secondary")
FLOAT_COLUMNS = ("survival_months", "event")
BOOL_COLUMNS = ("rare", "has_survival", "has_wsi", "has_wsi_secondary", "has_omics", "has_report", "ood")
#: manifest.csv columns in file order (``n_patches``/``n_patches_secondary`` are extras to the contract)
MANIFEST_COLUMNS = ("case_id", "site", "project_id", "primary_diagnosis", "subtype", "subtype_index", "rare",
                    "location", "diagnosis_text", "stage", "t", "n", "m", "survival_months", "event",
                    "has_survival", "has_wsi", "has_wsi_secondary", "has_omics", "has_report", "n_slides",
                    "slides", "slide_paths", "slide_paths_secondary", "ood", "n_patches", "n_patches_secondary")
_SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".h5", ".pt")


# ----------------------------------------------------------------------------------------------
# the Cohort object


@dataclass
class Cohort:
    """A prepared cohort directory, loaded.

    Attributes:
        root: the cohort directory.
        manifest: one row per patient, indexed by ``case_id`` (columns: :data:`MANIFEST_COLUMNS`).
        expression: cases x genes (float32, columns in ``genes`` order; rows for cases with omics)
            or None for a cohort without transcriptomics.
        genes: gene symbols, the order of the omics vector.
        pathways: pathway name -> int64 indices into ``genes`` (empty without a GMT).
        meta: the content of ``cohort.json``.
        reports: DataFrame indexed by ``case_id`` with column ``text``, or None.
        summary: the content of ``summary.json`` ({} when absent).
        grouping: the ``labels.Grouping`` used to assign subtypes.
    """

    root: Path
    manifest: pd.DataFrame
    expression: pd.DataFrame | None
    genes: list[str]
    pathways: dict[str, np.ndarray]
    meta: dict
    reports: pd.DataFrame | None = None
    summary: dict = field(default_factory=dict)
    grouping: Any = None

    # -- convenience views -------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Width of the primary patch features (0 when the cohort has no slides)."""
        return int(self.meta.get("feature_dim") or 0)

    @property
    def feature_dim_secondary(self) -> int:
        """Width of the secondary-magnification features (0 when absent)."""
        return int(self.meta.get("feature_dim_secondary") or 0)

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def pathway_names(self) -> list[str]:
        return list(self.pathways)

    @property
    def sites(self) -> list[str]:
        """Sites present in the manifest (sorted)."""
        return list(self.meta.get("sites") or sorted(self.manifest["site"].unique()))

    @property
    def ood_sites(self) -> list[str]:
        return list(self.meta.get("ood_sites") or [])

    @property
    def case_ids(self) -> list[str]:
        return list(self.manifest.index)

    def report_text(self, case_id: str) -> str:
        """The report of a case ("" when it has none)."""
        if self.reports is None or case_id not in self.reports.index:
            return ""
        return str(self.reports.at[case_id, "text"])

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> "Cohort":
        """Load a cohort directory written by :func:`prepare_cohort`.

        Raises:
            InputError: the directory or one of its required files is missing or inconsistent.
        """
        root = Path(directory)
        fix = "run `modaltune prepare` (data.cohort.prepare_cohort) to write the cohort directory"
        if not root.is_dir():
            raise InputError("cohort directory not found", file=root, fix=fix)
        missing = [n for n in ("manifest.csv", "cohort.json", "gene_sets.json") if not (root / n).exists()]
        if missing:
            raise InputError(f"not a complete cohort directory; missing {', '.join(missing)}", file=root, fix=fix)
        meta = json.loads((root / "cohort.json").read_text())
        manifest = _read_manifest(root / "manifest.csv")
        genes, pathways = _read_gene_sets(root / "gene_sets.json")
        expression = _read_expression_table(root, meta, genes, manifest)
        reports = None
        if (root / "reports.csv").exists():
            reports = pd.read_csv(root / "reports.csv", dtype={"case_id": str, "text": str}, keep_default_na=False)
            reports = reports.set_index("case_id")
        summary = json.loads((root / "summary.json").read_text()) if (root / "summary.json").exists() else {}
        grouping = _grouping_from_meta(root, meta)
        _warn_missing_slide_files(manifest, root)
        return cls(root=root, manifest=manifest, expression=expression, genes=genes, pathways=pathways,
                   meta=meta, reports=reports, summary=summary, grouping=grouping)


def _read_manifest(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={c: str for c in STR_COLUMNS}, keep_default_na=False, na_values={
        c: [""] for c in (*FLOAT_COLUMNS, *INT_COLUMNS)})
    required = [c for c in MANIFEST_COLUMNS if c not in ("n_patches", "n_patches_secondary")]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"manifest lacks columns {missing}", file=path,
                         fix="re-run `modaltune prepare`; do not edit manifest.csv columns by hand")
    if df["case_id"].duplicated().any():
        dup = sorted(df.loc[df["case_id"].duplicated(), "case_id"].unique())
        raise InputError(f"manifest has duplicate case ids {_names(dup)}", file=path, fix="re-run `modaltune prepare`")
    for c in STR_COLUMNS:
        if c in df:
            df[c] = df[c].fillna("").astype(str)
    for c in FLOAT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in INT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(-1 if c == "subtype_index" else 0).astype(int)
    for c in BOOL_COLUMNS:
        df[c] = df[c].map(_to_bool).astype(bool)
    return df.set_index("case_id", drop=False)


def _warn_missing_slide_files(manifest: pd.DataFrame, root: Path) -> None:
    """Warn (once, listing them) when feature files named by the manifest no longer exist."""
    missing = [p for col in ("slide_paths", "slide_paths_secondary") for paths in manifest[col]
               for p in paths.split(";") if p and not os.path.exists(p)]
    if missing:
        warn_input(f"{len(missing)} feature file(s) named in the manifest are missing: {_names(missing)}",
                   file=root / "manifest.csv", fix="restore the feature files at these paths or re-run "
                   "`modaltune prepare` with their new location")


def _to_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) if v == v else False


def _read_gene_sets(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    data = json.loads(path.read_text())
    genes = [str(g) for g in data.get("genes", [])]
    pathways = {str(k): np.asarray(v, dtype=np.int64) for k, v in data.get("pathways", {}).items()}
    for name, idx in pathways.items():
        if idx.size and (idx.min() < 0 or idx.max() >= len(genes)):
            raise InputError(f"pathway '{name}' indexes genes outside 0..{len(genes) - 1}", file=path,
                             fix="re-run `modaltune prepare`")
    return genes, pathways


def _read_expression_table(root: Path, meta: dict, genes: list[str], manifest: pd.DataFrame) -> pd.DataFrame | None:
    name = meta.get("expression_file")
    if not name:
        if manifest["has_omics"].any():
            raise InputError("manifest marks patients with omics but cohort.json names no expression file",
                             file=root / "cohort.json", fix="re-run `modaltune prepare`")
        return None
    path = root / name
    if not path.exists():
        raise InputError("expression file named in cohort.json is missing", file=path, fix="re-run `modaltune prepare`")
    if path.suffix == ".parquet":
        expr = pd.read_parquet(path)
    else:
        expr = pd.read_csv(path, index_col=0)
    expr.index = expr.index.astype(str)
    missing_genes = [g for g in genes if g not in expr.columns]
    if missing_genes:
        raise InputError(f"expression lacks genes of gene_sets.json: {_names(missing_genes)}", file=path,
                         fix="re-run `modaltune prepare`")
    need = manifest.index[manifest["has_omics"]]
    absent = [c for c in need if c not in expr.index]
    if absent:
        raise InputError(f"expression lacks rows of cases marked has_omics: {_names(absent)}", file=path,
                         fix="re-run `modaltune prepare`")
    return expr.loc[:, genes].astype(np.float32)


def _grouping_from_meta(root: Path, meta: dict) -> Grouping:
    if meta.get("grouping"):
        return Grouping.from_dict(meta["grouping"], source=root / "cohort.json")
    return default_grouping()


# ----------------------------------------------------------------------------------------------
# problem log: everything dropped or unmatched, with its reason


@dataclass
class _Log:
    dropped: list[dict] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    def _entry(self, kind: str, items: Iterable[str], reason: str, file) -> dict:
        items = sorted({str(i) for i in items})
        return {"kind": kind, "n": len(items), "reason": reason, "file": None if file is None else str(file),
                "items": items}

    def drop(self, kind: str, items, reason: str, *, file=None, fix=None, warn: bool = True) -> None:
        """Record items dropped from the cohort (and warn)."""
        e = self._entry(kind, items, reason, file)
        if e["n"]:
            self.dropped.append(e)
            if warn:
                self.warn(f"{e['n']} {kind} dropped: {reason}: {_names(e['items'])}", file=file, fix=fix)

    def unmatch(self, kind: str, items, reason: str, *, file=None, fix=None, warn: bool = True) -> None:
        """Record items that matched nothing (kept or dropped per ``reason``)."""
        e = self._entry(kind, items, reason, file)
        if e["n"]:
            self.unmatched.append(e)
            if warn:
                self.warn(f"{e['n']} {kind}: {reason}: {_names(e['items'])}", file=file, fix=fix)

    def note(self, kind: str, items, reason: str, *, file=None) -> None:
        """Record a fact about kept items (no warning): e.g. patients without survival."""
        e = self._entry(kind, items, reason, file)
        if e["n"]:
            self.notes.append(e)

    def warn(self, problem: str, *, file=None, case=None, fix=None) -> None:
        # collected into self.warnings (with the readers' warnings) by prepare_cohort
        warn_input(problem, file=file, case=case, fix=fix, stacklevel=3)


@contextmanager
def _recording_warnings():
    """Yield the list of warnings raised inside (ours and the readers'); re-emit them on exit so
    callers still see them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _names(items: Iterable, limit: int = _MAX_NAMED) -> str:
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ----------------------------------------------------------------------------------------------
# prepare


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
    if int(min_genes_per_pathway) < 1:
        raise InputError(f"min_genes_per_pathway must be >= 1, got {min_genes_per_pathway}",
                         fix="use a positive number of genes")
    log = _Log()
    with _recording_warnings() as caught:
        return _prepare(out, log, caught, features, features_secondary, clinical, expression, gene_sets, reports,
                        slide_case_table, grouping, clinical_columns, ood_sites, min_genes_per_pathway,
                        check_values, expression_orientation)


def _prepare(out: Path, log: _Log, caught: list, features, features_secondary, clinical, expression, gene_sets,
             reports, slide_case_table, grouping, clinical_columns, ood_sites, min_genes_per_pathway, check_values,
             expression_orientation) -> Cohort:
    """The body of :func:`prepare_cohort` (warnings are recorded by the caller)."""
    grouping_obj = _resolve_grouping(grouping)

    clin, clin_slide_map, reader_warned_survival = _load_clinical(Path(clinical), clinical_columns, log)
    clin["site"] = _assign_sites(clin, Path(clinical), log)
    labels_df = _assign_labels(clin, grouping_obj, Path(clinical), log)
    known_cases = set(clin["case_id"])

    cache = _ValidationCache(out / ".validation_cache.json") if check_values else None
    prim = sec = None
    if features is not None:
        prim = _scan_features(Path(features), "primary", check_values, cache)
        _map_slides_to_cases(prim, slide_case_table, clin_slide_map, known_cases, log)
    if features_secondary is not None:
        sec = _scan_features(Path(features_secondary), "secondary", check_values, cache)
        _match_secondary(prim, sec, log)
    if cache is not None:
        cache.save()

    expr, genes, pathways, expr_info = None, [], {}, {}
    if expression is not None:
        expr, expr_info = _load_expression(Path(expression), expression_orientation, known_cases, log)
        genes, pathways = _select_genes(list(expr.columns), gene_sets, int(min_genes_per_pathway), log)
        expr = expr.loc[:, genes].astype(np.float32)
    elif gene_sets is not None:
        log.warn("gene sets given without an expression matrix; they are ignored", file=gene_sets,
                 fix="pass `expression` too, or drop `gene_sets`")

    rep = _load_reports(Path(reports), known_cases, log) if reports is not None else None

    ood = _check_ood_sites(ood_sites, set(clin["site"]), log)
    manifest = _build_manifest(clin, labels_df, prim, sec, expr, rep, ood)
    _note_missing(manifest, log, warn_survival=not reader_warned_survival)

    meta = _meta(manifest, prim, sec, genes, pathways, ood, grouping_obj, min_genes_per_pathway, dict(
        clinical=clinical, features=features, features_secondary=features_secondary, expression=expression,
        gene_sets=gene_sets, reports=reports, slide_case_table=slide_case_table))
    log.warnings = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    summary = build_summary(manifest, log, prim, sec, expr_info, genes, pathways)
    _write_cohort(out, manifest, expr, genes, pathways, rep, summary, meta, grouping_obj)
    return Cohort.load(out)


# -- clinical ----------------------------------------------------------------------------------


def _resolve_grouping(grouping) -> Grouping:
    if grouping is None:
        return default_grouping()
    if isinstance(grouping, (str, Path)):
        return load_grouping(grouping)
    if isinstance(grouping, Mapping):
        return Grouping.from_dict(grouping)
    return grouping


def _load_clinical(path: Path, columns, log: _Log) -> tuple[pd.DataFrame, dict[str, str], bool]:
    """Read the clinical table (one row per case; the reader merges agreeing duplicate rows and rejects
    conflicting ones); also the slide -> case map of a slide_id column and whether the reader already
    warned about patients without survival."""
    df = read_clinical(path, columns=dict(columns) if columns else None)
    attrs = dict(df.attrs)
    df = df.copy()
    case = df["case_id"].astype("string").str.strip()
    no_case = (case.isna() | (case == "")).to_numpy()
    if no_case.any():
        bad = df.loc[no_case]
        items = [f"row without case id #{k + 1} ({_clean(p) or 'no project'}, {_clean(d) or 'no diagnosis'})"
                 for k, (p, d) in enumerate(zip(bad.get("project_id", [None] * len(bad)),
                                                bad.get("primary_diagnosis", [None] * len(bad))))]
        log.drop("clinical rows", items, "no case id (cannot be a patient)", file=path,
                 fix="fill the case id column (or map it with clinical_columns)")
    df = df.loc[~no_case].copy()
    df["case_id"] = case[~no_case].astype(str).to_numpy()
    if df["case_id"].duplicated().any():
        dup = sorted(set(df.loc[df["case_id"].duplicated(), "case_id"]))
        raise InputError(f"clinical table has several rows for case(s) {_names(dup)}", file=path, case=dup[0],
                         fix="keep one row per patient")
    slide_map: dict[str, str] = {}
    for sid, cid in (attrs.get("slide_case") or {}).items():
        slide_map[_strip_slide_ext(str(sid).strip())] = str(cid)
    if "slide_id" in df.columns:
        for sids, cid in zip(df["slide_id"], df["case_id"]):
            for sid in str(sids).split(";") if isinstance(sids, str) else []:
                if sid.strip():
                    slide_map.setdefault(_strip_slide_ext(sid.strip()), cid)
        df = df.drop(columns=["slide_id"])
    return df.reset_index(drop=True), slide_map, "no_survival" in attrs


def _strip_slide_ext(name: str) -> str:
    for ext in _SLIDE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _assign_sites(clin: pd.DataFrame, path: Path, log: _Log) -> pd.Series:
    """Site per case: a `site` column, else SITE_OF_PROJECT[project_id], else project id sans TCGA-."""
    given = clin["site"] if "site" in clin.columns else pd.Series([None] * len(clin), index=clin.index)
    sites = []
    for site, project in zip(given, clin.get("project_id", pd.Series([None] * len(clin)))):
        if isinstance(site, str) and site.strip():
            sites.append(site.strip().upper())
        elif isinstance(project, str) and project.strip():
            p = project.strip().upper()
            sites.append(SITE_OF_PROJECT.get(p, p[5:] if p.startswith("TCGA-") else p))
        else:
            sites.append(UNKNOWN_SITE)
    sites = pd.Series(sites, index=clin.index, dtype=object)
    unknown = clin.loc[sites == UNKNOWN_SITE, "case_id"]
    if len(unknown):
        log.note("patients", unknown, f"no project_id and no site; kept with site {UNKNOWN_SITE}", file=path)
        log.warn(f"{len(unknown)} patient(s) have neither project_id nor site; kept with site {UNKNOWN_SITE}: "
                 f"{_names(unknown)}", file=path, fix="fill project_id or add a `site` column to the clinical table")
    return sites


def _clean(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    return s if s and s not in ("'--", "--", "nan", "NaN", "None") else None


def _diagnosis_text(diagnosis: str) -> str:
    text = diagnosis.strip()
    if text.lower().endswith(", nos"):
        text = text[:-5]
    return text.lower()


def _assign_labels(clin: pd.DataFrame, grouping, path: Path, log: _Log) -> pd.DataFrame:
    """Subtype, rare flag, location, diagnosis text and TNM words per case (index aligned to clin)."""
    rows, unknown, no_site = [], {}, {}
    none = [None] * len(clin)
    for site, diag, project in zip(clin["site"], clin.get("primary_diagnosis", none), clin.get("project_id", none)):
        diag = _clean(diag)
        site_g = grouping.sites.get(site)
        cls_name, idx, rare = (None, None, False)
        if diag is not None and site_g is not None:
            cls_name, idx, rare = assign_subtype(grouping, site, diag, project=_clean(project))
        rows.append({
            "subtype": cls_name or "",
            "subtype_index": -1 if idx is None or rare else int(idx),
            "rare": bool(rare),
            "location": (getattr(site_g, "location", "") or "") if site_g is not None else "",
            "diagnosis_text": _diagnosis_text(cls_name) if cls_name and not rare else (
                _diagnosis_text(diag) if diag else ""),
        })
        if diag is not None and site_g is None:
            no_site.setdefault(site, []).append(len(rows) - 1)
        elif diag is not None and cls_name is None and not rare:
            unknown.setdefault((site, diag), []).append(len(rows) - 1)
    out = pd.DataFrame(rows, index=clin.index)
    if out["rare"].any():
        out.loc[out["rare"], "subtype"] = ""
    cases = clin["case_id"].to_numpy()
    for (site, diag), pos in unknown.items():
        log.note("patients", cases[pos], f"unknown diagnosis '{diag}' for site {site}: kept without subtype",
                 file=path)
        log.warn(f"unknown diagnosis '{diag}' for site {site} in {len(pos)} patient(s) (kept without subtype)",
                 file=path, case=_names(cases[pos]),
                 fix=f"add '{diag}' to a class or the rare list of {site} in a grouping YAML and pass it as "
                     "`grouping`")
    for site, pos in no_site.items():
        log.note("patients", cases[pos], f"site {site} not in the grouping: kept without subtype", file=path)
        log.warn(f"site {site} has no subtype grouping; {len(pos)} patient(s) kept without subtype",
                 file=path, case=_names(cases[pos]),
                 fix=f"add {site} to a grouping YAML and pass it as `grouping` (only needed for subtyping)")
    for col, fn in (("stage", stage_to_words), ("t", t_to_words), ("n", n_to_words), ("m", m_to_words)):
        src = clin[col] if col in clin.columns else [None] * len(clin)
        out[col] = [(fn(v) if _clean(v) is not None else None) or "" for v in src]
    return out


# -- features ----------------------------------------------------------------------------------


@dataclass
class _Slides:
    """Feature files of one magnification after validation."""

    directory: Path
    paths: dict[str, Path]          # slide_id -> file (only kept slides)
    n_patches: dict[str, int]
    dim: int
    no_coords: list[str] = field(default_factory=list)
    case_of: dict[str, str] = field(default_factory=dict)


class _ValidationCache:
    """Remembers value checks of feature files by (path, size, mtime) so each file is read once."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def _key(file: Path) -> str:
        st = file.stat()
        return f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, file: Path) -> dict | None:
        return self.data.get(self._key(file))

    def put(self, file: Path, value: dict) -> None:
        self.data[self._key(file)] = value

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def _shape(path: Path) -> tuple[int, int]:
    try:
        return tuple(int(x) for x in feature_shape(path))  # type: ignore[return-value]
    except InputError:
        raise
    except Exception as exc:  # h5py/torch raise many types for corrupt files
        raise InputError(f"cannot read feature file ({type(exc).__name__}: {exc})", file=path,
                         fix="re-extract the features of this slide or remove the file") from exc


def _scan_features(directory: Path, role: str, check_values: bool, cache: _ValidationCache | None) -> _Slides:
    """Cheap header checks of every file, then (optionally) one full read per file for NaN/inf."""
    if not directory.is_dir():
        raise InputError(f"{role} feature directory not found", file=directory,
                         fix="pass the directory holding <slide_id>.h5 or .pt feature files")
    files = list_feature_files(directory)
    if not files:
        raise InputError(f"no .h5/.pt feature files in the {role} feature directory", file=directory,
                         fix="point `features` at the folder of TRIDENT/CLAM feature files")
    shapes = {sid: _shape(p) for sid, p in sorted(files.items())}
    dim = _check_widths(shapes, files, role, directory)
    for sid, (n, _) in shapes.items():
        if n == 0:
            raise InputError(f"empty bag: the {role} feature file of slide {sid} has 0 patches", file=files[sid],
                             fix="re-run patching for this slide (no tissue found?) or remove the file")
    slides = _Slides(directory, dict(sorted(files.items())), {s: n for s, (n, _) in shapes.items()}, dim)
    if check_values:
        for sid, path in slides.paths.items():
            slides.no_coords += [sid] if not _check_values(path, cache)["has_coords"] else []
    return slides


def _check_widths(shapes: dict[str, tuple[int, int]], files: dict[str, Path], role: str, directory: Path) -> int:
    widths = Counter(d for _, d in shapes.values())
    dim = widths.most_common(1)[0][0]
    if len(widths) > 1:
        odd = [(sid, d) for sid, (_, d) in shapes.items() if d != dim]
        listing = "; ".join(f"{files[s].name} has width {d}" for s, d in odd[:_MAX_NAMED])
        raise InputError(f"{role} feature files have inconsistent widths: {widths[dim]} file(s) have width {dim}, "
                         f"but {listing}" + (f" and {len(odd) - _MAX_NAMED} more" if len(odd) > _MAX_NAMED else ""),
                         file=files[odd[0][0]],
                         fix="extract every slide with the same patch encoder (or remove the odd files)")
    return int(dim)


def _check_values(path: Path, cache: _ValidationCache | None) -> dict:
    hit = cache.get(path) if cache is not None else None
    if hit is not None:
        return hit
    try:
        ff = read_features(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read feature file ({type(exc).__name__}: {exc})", file=path,
                         fix="re-extract the features of this slide or remove the file") from exc
    bad = ~np.isfinite(ff.features)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise InputError(f"feature file contains NaN/inf values in {len(rows)} patch(es) (first at row {rows[0]})",
                         file=path, fix="re-extract the features of this slide (or remove the file)")
    result = {"has_coords": ff.coords is not None}
    if cache is not None:
        cache.put(path, result)
    return result


def _map_slides_to_cases(slides: _Slides, slide_case_table, clin_slide_map: dict[str, str], known: set[str],
                         log: _Log) -> None:
    """Slide -> case via the slide table, the clinical slide_id column, or the TCGA barcode."""
    table = read_slide_case_table(slide_case_table) if slide_case_table is not None else None
    not_in_table, no_clinical = [], []
    for sid in list(slides.paths):
        if table is not None:
            case = table.get(sid)
            if case is None:
                not_in_table.append(sid)
                continue
        else:
            case = clin_slide_map.get(sid) or tcga_case_id(sid)
        if case not in known:
            no_clinical.append(sid)
            continue
        slides.case_of[sid] = case
    fix = ("add the patient to the clinical table (a patient needs a site), pass a slide_case_table for "
           "non-TCGA slide names, or remove the slide's feature file")
    log.unmatch("slides", not_in_table, "slide id not in the slide-case table; dropped", file=slide_case_table,
                fix="add the slide to the slide-case table")
    log.unmatch("slides", no_clinical, "case not in the clinical table; dropped", file=slides.directory, fix=fix)
    for sid in (*not_in_table, *no_clinical):
        slides.paths.pop(sid)
        slides.n_patches.pop(sid)
    slides.no_coords = [s for s in slides.no_coords if s in slides.paths]


def _match_secondary(prim: _Slides | None, sec: _Slides, log: _Log) -> None:
    """Keep secondary files whose slide id is a kept primary slide; report the rest."""
    prim_ids = set(prim.paths) if prim is not None else set()
    extra = [s for s in sec.paths if s not in prim_ids]
    log.unmatch("secondary slides", extra, "no primary-magnification file with this slide id; dropped",
                file=sec.directory, fix="extract both magnifications for every slide (same file stem)")
    for sid in extra:
        sec.paths.pop(sid)
        sec.n_patches.pop(sid)
    sec.no_coords = [s for s in sec.no_coords if s in sec.paths]
    sec.case_of = {s: prim.case_of[s] for s in sec.paths} if prim is not None else {}
    missing = [s for s in prim_ids if s not in sec.paths]
    log.unmatch("primary slides", missing, "no secondary-magnification file (kept; has_wsi_secondary may be False)",
                file=sec.directory, warn=bool(missing))


# -- expression, gene sets, reports -------------------------------------------------------------


def _load_expression(path: Path, orientation: str, known: set[str], log: _Log) -> tuple[pd.DataFrame, dict]:
    expr = read_expression(path, orientation=orientation)
    info = {"file": str(path), "n_cases_in_file": int(len(expr)), "n_genes_in_file": int(expr.shape[1]),
            "sample_choice": _jsonable_attr(expr.attrs.get("sample_choice"))}
    expr.index = expr.index.astype(str)
    expr.columns = expr.columns.astype(str)
    if expr.columns.duplicated().any():
        dup = sorted(set(expr.columns[expr.columns.duplicated()]))
        raise InputError(f"expression matrix has duplicate genes {_names(dup)}", file=path,
                         fix="collapse duplicate gene rows (e.g. average them) before preparing")
    if expr.index.duplicated().any():
        dup = sorted(set(expr.index[expr.index.duplicated()]))
        raise InputError(f"expression matrix has several rows for cases {_names(dup)}", file=path,
                         case=dup[0], fix="keep one sample per case")
    values = expr.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        cases = list(expr.index[bad.any(axis=1)])
        genes = list(expr.columns[bad.any(axis=0)])
        raise InputError(f"expression matrix has NaN/inf values for {len(cases)} case(s) and {len(genes)} gene(s); "
                         f"genes: {_names(genes)}", file=path, case=_names(cases),
                         fix="impute the missing values or remove those genes from the matrix")
    extra = [c for c in expr.index if c not in known]
    log.unmatch("expression cases", extra, "case not in the clinical table; dropped", file=path,
                fix="add the patient to the clinical table (a patient needs a site), or ignore")
    expr = expr.loc[[c for c in expr.index if c in known]]
    info["n_cases_kept"] = int(len(expr))
    return expr, info


def _jsonable_attr(v):
    if v is None:
        return None
    if isinstance(v, pd.DataFrame):
        return v.astype(str).to_dict(orient="records")
    if isinstance(v, pd.Series):
        return {str(k): str(x) for k, x in v.items()}
    if isinstance(v, Mapping):
        return {str(k): (x if isinstance(x, (int, float, bool)) or x is None else str(x)) for k, x in v.items()}
    return str(v)


def _select_genes(expr_genes: list[str], gene_sets, min_genes: int, log: _Log) -> tuple[list[str], dict]:
    """Genes used by kept pathways (expression column order) and pathway -> gene indices."""
    if gene_sets is None:
        return list(expr_genes), {}
    gmt = read_gmt(gene_sets)
    present = set(expr_genes)
    absent = sorted({g for gs in gmt.values() for g in gs if g not in present})
    log.drop("genes", absent, "in the gene sets but not in the expression matrix", file=gene_sets,
             fix="use gene symbols matching the expression matrix (ignore if expected)")
    kept: dict[str, list[str]] = {}
    small = []
    for name, gs in gmt.items():
        gs = list(dict.fromkeys(g for g in gs if g in present))
        (kept.__setitem__(name, gs) if len(gs) >= min_genes else small.append(name))
    log.drop("pathways", small, f"fewer than min_genes_per_pathway={min_genes} genes in the expression matrix",
             file=gene_sets, fix="lower min_genes_per_pathway or check gene identifiers")
    if not kept:
        raise InputError(f"no pathway keeps {min_genes} or more genes of the expression matrix", file=gene_sets,
                         fix="check that the GMT and the expression matrix use the same gene identifiers "
                             "(symbols vs Ensembl ids)")
    used = {g for gs in kept.values() for g in gs}
    genes = [g for g in expr_genes if g in used]
    index = {g: i for i, g in enumerate(genes)}
    return genes, {name: [index[g] for g in gs] for name, gs in kept.items()}


def _load_reports(path: Path, known: set[str], log: _Log) -> pd.DataFrame:
    rep = read_reports(path).copy()
    rep["case_id"] = rep["case_id"].astype(str).str.strip()
    rep["text"] = rep["text"].fillna("").astype(str).str.strip()
    empty = rep.loc[rep["text"] == "", "case_id"]
    log.note("reports", empty, "empty report text (has_report False)", file=path)
    rep = rep[rep["text"] != ""]
    if rep["case_id"].duplicated().any():
        dup = sorted(set(rep.loc[rep["case_id"].duplicated(), "case_id"]))
        log.warn(f"{len(dup)} case(s) have several reports; their texts are joined", file=path, case=_names(dup),
                 fix="keep one report per case if that is not intended")
        rep = rep.groupby("case_id", sort=False, as_index=False)["text"].agg("\n".join)
    extra = rep.loc[~rep["case_id"].isin(known), "case_id"]
    log.unmatch("reports", extra, "case not in the clinical table; dropped", file=path,
                fix="add the patient to the clinical table (a patient needs a site), or ignore")
    return rep[rep["case_id"].isin(known)].reset_index(drop=True)


def _check_ood_sites(ood_sites: Iterable[str], sites: set[str], log: _Log) -> list[str]:
    ood = [str(s).strip().upper() for s in ood_sites if str(s).strip()]
    unknown = [s for s in ood if s not in sites]
    if unknown:
        log.warn(f"OOD site(s) {unknown} are not in the cohort (sites: {sorted(sites)})",
                 fix="check the ood_sites spelling (sites are upper-case, e.g. COADREAD)")
    return sorted(set(ood) & sites)


# -- manifest ----------------------------------------------------------------------------------


def _slides_by_case(slides: _Slides | None) -> dict[str, list[str]]:
    by_case: dict[str, list[str]] = {}
    if slides is not None:
        for sid in sorted(slides.paths):
            by_case.setdefault(slides.case_of[sid], []).append(sid)
    return by_case


def _build_manifest(clin: pd.DataFrame, lab: pd.DataFrame, prim: _Slides | None, sec: _Slides | None,
                    expr: pd.DataFrame | None, rep: pd.DataFrame | None, ood: list[str]) -> pd.DataFrame:
    p_by, s_by = _slides_by_case(prim), _slides_by_case(sec)
    omics = set(expr.index) if expr is not None else set()
    reported = set(rep["case_id"]) if rep is not None else set()
    months = pd.to_numeric(clin.get("survival_months"), errors="coerce").astype(float)
    event = pd.to_numeric(clin.get("event"), errors="coerce").astype(float)
    rows = []
    for i, case in enumerate(clin["case_id"]):
        ps, ss = p_by.get(case, []), s_by.get(case, [])
        m, e = months.iloc[i], event.iloc[i]
        rows.append({
            "case_id": case, "site": clin["site"].iloc[i],
            "project_id": _clean(clin["project_id"].iloc[i]) or "" if "project_id" in clin else "",
            "primary_diagnosis": _clean(clin["primary_diagnosis"].iloc[i]) or "" if "primary_diagnosis" in clin else "",
            **lab.iloc[i].to_dict(),
            "survival_months": m, "event": e,
            "has_survival": bool(np.isfinite(m) and m >= 0 and e in (0.0, 1.0)),
            "has_wsi": bool(ps), "has_wsi_secondary": bool(ss), "has_omics": case in omics,
            "has_report": case in reported, "n_slides": len(ps), "slides": ";".join(ps),
            "slide_paths": ";".join(str(prim.paths[s].resolve()) for s in ps),
            "slide_paths_secondary": ";".join(str(sec.paths[s].resolve()) for s in ss),
            "ood": clin["site"].iloc[i] in ood,
            "n_patches": sum(prim.n_patches[s] for s in ps) if ps else 0,
            "n_patches_secondary": sum(sec.n_patches[s] for s in ss) if ss else 0,
        })
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.sort_values("case_id", kind="stable").reset_index(drop=True)


def _note_missing(manifest: pd.DataFrame, log: _Log, *, warn_survival: bool) -> None:
    """Record kept patients that lack a label or survival (facts, not drops)."""
    no_surv = manifest.loc[~manifest["has_survival"], "case_id"]
    log.note("patients", no_surv, "no usable survival (months/event missing or invalid): kept, has_survival False")
    if len(no_surv) and warn_survival:
        log.warn(f"{len(no_surv)} patient(s) have no usable survival time/event; kept with has_survival False: "
                 f"{_names(no_surv)}", fix="fill vital_status and days_to_death / days_to_last_follow_up "
                                           "(only needed for survival tasks)")
    no_diag = manifest.loc[manifest["primary_diagnosis"] == "", "case_id"]
    log.note("patients", no_diag, "no primary diagnosis: kept without subtype")


# -- summary -----------------------------------------------------------------------------------


def _class_counts(df: pd.DataFrame) -> dict[str, int]:
    counts = Counter(df.loc[df["subtype"] != "", "subtype"])
    out = {k: int(counts[k]) for k in sorted(counts)}
    out["rare"] = int(df["rare"].sum())
    out["none"] = int(((df["subtype"] == "") & ~df["rare"]).sum())
    return out


def _modality_counts(df: pd.DataFrame) -> dict[str, int]:
    has = {"wsi": df["has_wsi"], "wsi_secondary": df["has_wsi_secondary"], "omics": df["has_omics"],
           "report": df["has_report"]}
    out = {k: int(v.sum()) for k, v in has.items()}
    out["wsi_and_omics"] = int((df["has_wsi"] & df["has_omics"]).sum())
    out["no_modality"] = int((~df["has_wsi"] & ~df["has_omics"] & ~df["has_report"]).sum())
    out["slides"] = int(df["n_slides"].sum())
    out["multi_slide_patients"] = int((df["n_slides"] > 1).sum())
    return out


def _survival_counts(df: pd.DataFrame) -> dict[str, int]:
    s = df[df["has_survival"]]
    return {"with_survival": int(len(s)), "events": int((s["event"] == 1).sum()),
            "censored": int((s["event"] == 0).sum()), "missing": int((~df["has_survival"]).sum())}


def _group_summary(df: pd.DataFrame) -> dict:
    return {"patients": int(len(df)), "classes": _class_counts(df), "modalities": _modality_counts(df),
            "survival": _survival_counts(df)}


def build_summary(manifest: pd.DataFrame, log: _Log, prim: _Slides | None, sec: _Slides | None,
                  expr_info: dict, genes: list[str], pathways: dict) -> dict:
    """The cohort summary: per-site and total counts plus every dropped/unmatched item."""
    sites = {s: {**_group_summary(g), "ood": bool(g["ood"].iloc[0])} for s, g in manifest.groupby("site")}
    return {
        "n_patients": int(len(manifest)),
        "total": _group_summary(manifest),
        "sites": sites,
        "features": {
            "primary": None if prim is None else {"dir": str(prim.directory), "n_slides": len(prim.paths),
                                                  "dim": prim.dim, "slides_without_coords": prim.no_coords},
            "secondary": None if sec is None else {"dir": str(sec.directory), "n_slides": len(sec.paths),
                                                   "dim": sec.dim, "slides_without_coords": sec.no_coords},
        },
        "expression": {**expr_info, "n_genes": len(genes), "n_pathways": len(pathways)} if expr_info else None,
        "dropped": log.dropped,
        "unmatched": log.unmatched,
        "notes": log.notes,
        "warnings": log.warnings,
    }


def _format_group(name: str, g: dict) -> list[str]:
    cls = ", ".join(f"{k}={v}" for k, v in g["classes"].items())
    mod = g["modalities"]
    sv = g["survival"]
    return [f"  {name}: {g['patients']} patients",
            f"    classes: {cls}",
            f"    modalities: WSI={mod['wsi']} ({mod['slides']} slides, {mod['multi_slide_patients']} multi-slide), "
            f"WSI-secondary={mod['wsi_secondary']}, omics={mod['omics']}, report={mod['report']}, "
            f"WSI+omics={mod['wsi_and_omics']}, none={mod['no_modality']}",
            f"    survival: {sv['with_survival']} with survival ({sv['events']} events, {sv['censored']} censored), "
            f"{sv['missing']} missing"]


def _format_items(title: str, entries: list[dict]) -> list[str]:
    if not entries:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for e in entries:
        lines.append(f"  - {e['n']} {e['kind']}: {e['reason']}" + (f" [{e['file']}]" if e.get("file") else ""))
        lines.append(f"      {_names(e['items'])}")
    return lines


def format_summary(summary: dict) -> str:
    """Human-readable text of a summary dict (the content of summary.txt)."""
    lines = [f"Cohort: {summary['n_patients']} patients"]
    lines += _format_group("all sites", summary["total"])
    for site, g in summary["sites"].items():
        lines += _format_group(site + (" (OOD)" if g.get("ood") else ""), g)
    for role, f in (summary.get("features") or {}).items():
        if f:
            lines.append(f"features ({role}): {f['n_slides']} slides of width {f['dim']} from {f['dir']}"
                         + (f"; {len(f['slides_without_coords'])} without coords (grid coords generated)"
                            if f["slides_without_coords"] else ""))
    if summary.get("expression"):
        e = summary["expression"]
        lines.append(f"expression: {e.get('n_cases_kept', 0)} cases, {e['n_genes']} genes kept, "
                     f"{e['n_pathways']} pathways")
    lines += _format_items("dropped", summary["dropped"])
    lines += _format_items("unmatched", summary["unmatched"])
    lines += _format_items("kept but incomplete", summary.get("notes", []))
    return "\n".join(lines) + "\n"


# -- writing -----------------------------------------------------------------------------------


def _meta(manifest, prim, sec, genes, pathways, ood, grouping, min_genes, inputs) -> dict:
    from .. import __version__

    return {
        "format_version": COHORT_FORMAT_VERSION,
        "version": __version__,
        "n_patients": int(len(manifest)),
        "feature_dim": prim.dim if prim is not None else 0,
        "feature_dim_secondary": sec.dim if sec is not None else 0,
        "n_genes": len(genes),
        "n_pathways": len(pathways),
        "sites": sorted(manifest["site"].unique()),
        "ood_sites": list(ood),
        "min_genes_per_pathway": int(min_genes),
        "grouping": grouping.to_dict(),
        "inputs": {k: (None if v is None else str(Path(v).resolve())) for k, v in inputs.items()},
    }


def _write_cohort(out: Path, manifest, expr, genes, pathways, rep, summary, meta, grouping) -> None:
    import yaml

    from ..utils import write_json

    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    for stale in ("expression.parquet", "expression.csv.gz", "reports.csv"):
        (out / stale).unlink(missing_ok=True)
    if expr is not None:
        meta["expression_file"] = _write_expression(out, expr)
    write_json(out / "gene_sets.json", {"genes": genes, "pathways": pathways})
    if rep is not None:
        rep[["case_id", "text"]].to_csv(out / "reports.csv", index=False, lineterminator="\n")
    prompts = [{"case_id": r["case_id"], "diagnosis": build_prompts(_prompt_row(r), None)["diagnosis"]}
               for r in manifest.to_dict(orient="records")]
    pd.DataFrame(prompts, columns=["case_id", "diagnosis"]).to_csv(out / "prompts.csv", index=False,
                                                                  lineterminator="\n")
    (out / "grouping.yaml").write_text(yaml.safe_dump(meta["grouping"], sort_keys=False))
    write_json(out / "summary.json", summary)
    (out / "summary.txt").write_text(format_summary(summary))
    write_json(out / "cohort.json", meta)


def _write_expression(out: Path, expr: pd.DataFrame) -> str:
    expr = expr.copy()
    expr.index.name = "case_id"
    try:
        import pyarrow  # noqa: F401

        expr.to_parquet(out / "expression.parquet")
        return "expression.parquet"
    except ImportError:
        expr.to_csv(out / "expression.csv.gz", float_format="%.7g", lineterminator="\n")
        return "expression.csv.gz"


def _prompt_row(row: Mapping) -> dict:
    """A manifest row as ``build_prompts`` expects it ("" and NaN become None)."""
    out = {}
    for k, v in dict(row).items():
        if isinstance(v, str) and v == "":
            v = None
        elif isinstance(v, float) and np.isnan(v):
            v = None
        out[k] = v
    return out
