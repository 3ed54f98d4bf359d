"""The cohort directory: its layout, and :class:`Cohort`, the loaded view every later step reads.

A cohort directory is written once by :func:`modaltune.data.prepare.prepare_cohort` and read by
everything after it (splits, datasets, training, evaluation), so its layout is a contract and is
defined here, next to its reader::

    out/
      manifest.csv          one row per patient of the clinical table (see MANIFEST_COLUMNS), plus
                            <ep>_months, <ep>_event, has_<ep> per endpoint of the clinical table
                            besides OS (pfs, dss, dfs, dmfs, lrfs); survival_months/event/has_survival
                            are OS
      expression.csv.gz     cases x genes (expression.parquet instead when pyarrow is installed);
                            only rows of cases with omics; every gene of the matrix (also
                            those in no gene set: genome-wide methods read them)
      gene_sets.json        {"genes": [...], "pathways": {name: [indices into genes]}}
      reports.csv           case_id,text (when reports are given)
      summary.json/.txt     counts per site / class / modality, events and censoring, every dropped
                            or unmatched item with its reason
      cohort.json           metadata (feature widths, genes, pathways, sites, site scheme, endpoints,
                            OOD sites, grouping...)
      grouping.yaml         the subtype grouping used (editable; pass it back as ``grouping``)
      .validation_cache.json  value checks of feature files already scanned (size + mtime keyed),
                            so re-running ``prepare`` does not read every file again

Prompts are not stored: they need survival bin edges fitted on a split's training patients, so
the dataset builds them per split (:mod:`modaltune.data.prompts`).

:meth:`Cohort.load` checks what it reads (required files, columns, gene indices, expression rows of
patients marked with omics) and says "re-run prepare" rather than failing later in training.

Runs score one endpoint per site: :meth:`Cohort.with_endpoints` returns a copy whose survival columns
hold the chosen endpoint (rules in :mod:`.endpoint_choice`), so nothing downstream knows endpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, warn_input
from .endpoint_choice import apply_endpoints, available_endpoints, resolve_endpoint_spec
from .formats.endpoints import ENDPOINTS
from .formats.ids import names
from .labels import Grouping, default_grouping
from .site_schemes import DEFAULT_SITE_SCHEME

__all__ = ["Cohort", "MANIFEST_COLUMNS", "COHORT_FORMAT_VERSION"]

#: Version of the directory layout, written to ``cohort.json``.
COHORT_FORMAT_VERSION = 1

#: manifest.csv columns by the type :meth:`Cohort.load` gives them (text, int, float, bool).
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
        endpoint_of: site -> endpoint held by the survival columns, set by :meth:`with_endpoints`
            (empty: overall survival everywhere, as prepared).
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
    endpoint_of: dict[str, str] = field(default_factory=dict)

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
        """Number of genes of the omics vector."""
        return len(self.genes)

    @property
    def pathway_names(self) -> list[str]:
        """Pathway names, in the order of :attr:`pathways`."""
        return list(self.pathways)

    @property
    def sites(self) -> list[str]:
        """Sites present in the manifest (sorted)."""
        return list(self.meta.get("sites") or sorted(self.manifest["site"].unique()))

    @property
    def ood_sites(self) -> list[str]:
        """Sites held out for out-of-distribution evaluation."""
        return list(self.meta.get("ood_sites") or [])

    @property
    def site_scheme(self) -> str:
        """How projects were grouped into sites (``cohort.json``; ``modaltune`` for older cohorts)."""
        return str(self.meta.get("site_scheme") or DEFAULT_SITE_SCHEME)

    @property
    def endpoints(self) -> list[str]:
        """Survival endpoints of the manifest: ``"os"`` first, then e.g. ``"pfs"``, ``"dss"``."""
        return available_endpoints(self.manifest)

    def with_endpoints(self, spec: str | dict | None) -> "Cohort":
        """A shallow copy whose ``survival_months`` / ``event`` / ``has_survival`` are, per site, the chosen endpoint.

        Args:
            spec: None (this cohort, unchanged), an endpoint name (``"os"``, ``"pfs"``...) for every site,
                or a mapping ``{default: os, KIRP: pfs, ...}`` whose keys are sites or TCGA project ids
                (mapped by the cohort's site scheme); see :mod:`.endpoint_choice`.

        Returns:
            A new :class:`Cohort` sharing everything but the manifest (a copy) and ``endpoint_of``
            (``{site: endpoint}``); this cohort is not modified.

        Raises:
            ConfigError: an unknown endpoint, one the cohort lacks (naming those it has), or a bad key.
        """
        if spec is None:
            return self
        sites = sorted(str(s) for s in self.manifest["site"].unique())
        choice = resolve_endpoint_spec(spec, sites, self.endpoints, self.site_scheme)
        if set(choice.values()) == {"os"} and "os_months" not in self.manifest:
            return dataclasses.replace(self, endpoint_of=choice)
        return dataclasses.replace(self, manifest=apply_endpoints(self.manifest, choice, self.root),
                                   endpoint_of=choice)

    @property
    def case_ids(self) -> list[str]:
        """Case ids in manifest order."""
        return list(self.manifest.index)

    def report_text(self, case_id: str) -> str:
        """The report of a case ("" when it has none)."""
        if self.reports is None or case_id not in self.reports.index:
            return ""
        return str(self.reports.at[case_id, "text"])

    @classmethod
    def load(cls, directory: str | Path) -> "Cohort":
        """Load a cohort directory written by :func:`~modaltune.data.prepare.prepare_cohort`.

        Raises:
            InputError: the directory or one of its required files is missing or inconsistent.
        """
        root = Path(directory)
        fix = "run `modaltune prepare` (data.prepare.prepare_cohort) to write the cohort directory"
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
        raise InputError(f"manifest has duplicate case ids {names(dup)}", file=path, fix="re-run `modaltune prepare`")
    for c in STR_COLUMNS:
        if c in df:
            df[c] = df[c].fillna("").astype(str)
    endpoint_cols = [f"{ep}_{p}" for ep in ENDPOINTS for p in ("months", "event") if f"{ep}_{p}" in df]
    for c in (*FLOAT_COLUMNS, *endpoint_cols):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in INT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(-1 if c == "subtype_index" else 0).astype(int)
    for c in (*BOOL_COLUMNS, *(f"has_{ep}" for ep in ENDPOINTS if f"has_{ep}" in df)):
        df[c] = df[c].map(_to_bool).astype(bool)
    return df.set_index("case_id", drop=False)


def _warn_missing_slide_files(manifest: pd.DataFrame, root: Path) -> None:
    """Warn (once, listing them) when feature files named by the manifest no longer exist."""
    missing = [p for col in ("slide_paths", "slide_paths_secondary") for paths in manifest[col]
               for p in paths.split(";") if p and not os.path.exists(p)]
    if missing:
        warn_input(f"{len(missing)} feature file(s) named in the manifest are missing: {names(missing)}",
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
        raise InputError(f"expression lacks genes of gene_sets.json: {names(missing_genes)}", file=path,
                         fix="re-run `modaltune prepare`")
    need = manifest.index[manifest["has_omics"]]
    absent = [c for c in need if c not in expr.index]
    if absent:
        raise InputError(f"expression lacks rows of cases marked has_omics: {names(absent)}", file=path,
                         fix="re-run `modaltune prepare`")
    return expr.loc[:, genes].astype(np.float32)


def _grouping_from_meta(root: Path, meta: dict) -> Grouping:
    if meta.get("grouping"):
        return Grouping.from_dict(meta["grouping"], source=root / "cohort.json")
    return default_grouping()
