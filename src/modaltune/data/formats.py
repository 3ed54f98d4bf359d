"""Readers of the standard input formats (each raises :class:`~modaltune.errors.InputError` naming file and fix).

Formats read here:

* patch features of one slide: TRIDENT/CLAM ``.h5`` (datasets ``features`` [N, D] and ``coords``
  [N, 2] level-0 pixels; file and dataset attributes kept) or ``.pt`` (a tensor [N, D] or a dict with
  ``features`` and optionally ``coords``), see :func:`read_features`;
* clinical tables: GDC ``clinical.tsv``/``.csv`` (``'--`` = empty, one row per treatment) and SurvPath
  style tables (one row per slide, ``survival_months`` + ``censorship``), see :func:`read_clinical`;
* expression matrices: UCSC Xena genes x samples (first column gene symbols) or samples x genes,
  see :func:`read_expression`;
* gene sets (``.gmt``), pathology reports, slide -> case tables.

Case ids: every reader returns **case ids** (patients). A TCGA barcode is reduced to its first 12
characters (``TCGA-XX-XXXX``) by :func:`tcga_case_id`; other ids are kept as written.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InputError, warn_input

__all__ = [
    "DAYS_PER_MONTH",
    "CLINICAL_COLUMNS",
    "FeatureFile",
    "tcga_case_id",
    "is_tcga_barcode",
    "sample_type_code",
    "read_features",
    "feature_shape",
    "list_feature_files",
    "read_clinical",
    "read_expression",
    "read_gmt",
    "read_reports",
    "read_slide_case_table",
    "MISSING_TOKENS",
]

#: Days per month used to convert GDC day counts to months.
DAYS_PER_MONTH = 30.44

#: Columns of the table returned by :func:`read_clinical`, in order (``slide_id`` and ``site`` are
#: added after ``case_id`` / at the end only when the input has them).
CLINICAL_COLUMNS = ("case_id", "project_id", "primary_diagnosis", "stage", "t", "n", "m", "vital_status",
                    "days_to_death", "days_to_last_follow_up", "survival_months", "event", "oncotree_code",
                    "age")

#: Cell values read as "empty" in clinical tables (compared case-insensitively, after stripping).
MISSING_TOKENS = frozenset({"", "'--", "--", "-", "na", "n/a", "nan", "none", "null", "not reported",
                            "unknown", "not available", "[not available]", "[not applicable]", "[unknown]",
                            "[not evaluated]", "[discrepancy]", "[completed]", "not applicable"})

_TCGA_RE = re.compile(r"^TCGA[-._][A-Z0-9]{2}[-._][A-Z0-9]{4}(?:$|[-._])", re.IGNORECASE)
_FEATURE_SUFFIXES = (".h5", ".pt")
_SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".h5", ".pt")
_MAX_NAMED = 10


# ----------------------------------------------------------------------------------------------
# ids


def is_tcga_barcode(value: str) -> bool:
    """True for a TCGA barcode (``TCGA-XX-XXXX...``; ``.`` or ``_`` separators accepted)."""
    return isinstance(value, str) and bool(_TCGA_RE.match(value.strip()))


def tcga_case_id(barcode: str) -> str:
    """The case (patient) id of a TCGA barcode: its first 12 characters, upper-cased.

    ``"tcga-a2-a0t2-01A-11R"`` -> ``"TCGA-A2-A0T2"``; R-mangled ``"TCGA.A2.A0T2.01"`` -> ``"TCGA-A2-A0T2"``.
    Ids that are not TCGA barcodes are returned unchanged (only surrounding whitespace is stripped).
    """
    s = str(barcode).strip()
    if not _TCGA_RE.match(s):
        return s
    return s[:12].upper().replace(".", "-").replace("_", "-")


def sample_type_code(barcode: str) -> int | None:
    """TCGA sample-type code of a sample barcode (``TCGA-XX-XXXX-01A`` -> 1, ``-11`` -> 11), else None."""
    s = str(barcode).strip()
    if not _TCGA_RE.match(s) or len(s) < 15:
        return None
    code = s[13:15]
    return int(code) if code.isdigit() else None


def _names(items: Iterable, limit: int = _MAX_NAMED) -> str:
    items = [str(x) for x in items]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ----------------------------------------------------------------------------------------------
# patch features


@dataclass
class FeatureFile:
    """Patch features of one slide.

    Attributes:
        slide_id: the file stem (e.g. ``TCGA-A2-A0T2-01Z-00-DX1``).
        path: the file read.
        features: float32 ``[N, D]``.
        coords: int64 ``[N, 2]`` level-0 pixel coordinates (x, y), or None when the file has none.
        attrs: attributes of the file (h5: attributes of ``features``, then ``coords``, then the
            file; a later level wins), plain Python values.
    """

    slide_id: str
    path: Path
    features: np.ndarray
    coords: np.ndarray | None
    attrs: dict = field(default_factory=dict)

    @property
    def n_patches(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


_REEXTRACT = "re-extract the features of this slide (TRIDENT/CLAM) or remove the file"


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_plain(v) for v in value.tolist()]
        return value.item() if value.size == 1 else value.tolist()
    return value


def _squeeze_batch(arr: np.ndarray) -> np.ndarray:
    return arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FEATURE_SUFFIXES:
        raise InputError(f"unsupported feature file type '{path.suffix}'", file=path,
                         fix="use TRIDENT/CLAM .h5 files or .pt files holding a [N, D] tensor")
    if not path.is_file():
        raise InputError("feature file not found", file=path, fix="check the path")
    return suffix


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError (and others) for truncated/corrupt files
        raise InputError(f"cannot read feature file: not a readable HDF5 file ({type(exc).__name__}: {exc})",
                         file=path, fix=_REEXTRACT) from exc


def _h5_features_dataset(f, path: Path):
    import h5py

    ds = f.get("features")
    if not isinstance(ds, h5py.Dataset):
        keys = sorted(f.keys())
        raise InputError(f"feature file has no 'features' dataset (found: {keys})", file=path,
                         fix="write patch features under the dataset name 'features' (TRIDENT/CLAM layout)")
    return ds


def _check_ndim(shape: tuple, path: Path, what: str = "features") -> tuple[int, int]:
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise InputError(f"'{what}' must be 2-D [N patches, D], got shape {tuple(shape)}", file=path,
                         fix="save one slide per file as an [N, D] array (a leading batch dim of 1 is allowed)")
    return int(shape[0]), int(shape[1])


def _validate(features: np.ndarray, coords: np.ndarray | None, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    features = _squeeze_batch(np.asarray(features))
    _check_ndim(features.shape, path)
    if features.dtype.kind not in "fiub":
        raise InputError(f"'features' must be numeric, got dtype {features.dtype}", file=path, fix=_REEXTRACT)
    features = features.astype(np.float32, copy=False)
    n = features.shape[0]
    if n == 0:
        raise InputError("empty bag: the feature file has 0 patches", file=path,
                         fix="re-run patching for this slide (no tissue found?) or remove the file")
    bad = ~np.isfinite(features)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise InputError(f"feature file contains NaN/inf: {int(bad.sum())} value(s) in {len(rows)} patch(es) "
                         f"(first at row {rows[0]})", file=path, fix=_REEXTRACT)
    if coords is not None:
        coords = _squeeze_batch(np.asarray(coords))
        if coords.ndim != 2 or coords.shape != (n, 2):
            raise InputError(f"'coords' shape {tuple(coords.shape)} does not match the {n} patches of 'features' "
                             f"(expected ({n}, 2))", file=path, fix=_REEXTRACT)
        if coords.dtype.kind == "f":
            if not np.isfinite(coords).all():
                raise InputError("'coords' contains NaN/inf", file=path, fix=_REEXTRACT)
            coords = np.rint(coords)
        coords = coords.astype(np.int64, copy=False)
    return features, coords


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read .pt feature file ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                         file=path, fix="save a plain tensor [N, D] (or a dict of tensors with 'features' and "
                                        "'coords') with torch.save; re-extract if the file is corrupt") from exc


def _as_numpy(value, path: Path, what: str) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InputError(f"'{what}' in the .pt file is a {type(value).__name__}, not a tensor", file=path,
                     fix="store tensors (torch.save({'features': tensor_NxD, 'coords': tensor_Nx2}, path))")


def _pt_parts(obj, path: Path) -> tuple[Any, Any, dict]:
    if isinstance(obj, Mapping):
        if "features" not in obj:
            raise InputError(f".pt feature file has no 'features' entry (keys: {sorted(map(str, obj))})", file=path,
                             fix="save a dict with a 'features' tensor [N, D] (and optionally 'coords' [N, 2])")
        attrs = {str(k): _plain(v) for k, v in obj.items()
                 if k not in ("features", "coords") and isinstance(v, (str, int, float, bool, bytes, np.generic))}
        return obj["features"], obj.get("coords"), attrs
    return obj, None, {}


def read_features(path: str | Path) -> FeatureFile:
    """Read the patch features of one slide.

    Args:
        path: a TRIDENT/CLAM ``.h5`` file (datasets ``features`` [N, D] and, optionally, ``coords``
            [N, 2] level-0 pixels; a leading batch dim of 1 is squeezed) or a ``.pt`` file (tensor
            [N, D] or a dict with ``features`` and optionally ``coords``; loaded with
            ``weights_only=True``).

    Returns:
        A :class:`FeatureFile` (features float32, coords int64 or None).

    Raises:
        InputError: unreadable/corrupt file, no ``features``, wrong number of dimensions, NaN/inf
            values (the count is given), an empty bag (N = 0), or ``coords`` not of shape (N, 2).
    """
    path = Path(path)
    suffix = _check_suffix(path)
    attrs: dict = {}
    if suffix == ".h5":
        with _open_h5(path) as f:
            ds = _h5_features_dataset(f, path)
            _check_ndim(ds.shape, path)
            try:
                features = ds[()]
                coords = f["coords"][()] if "coords" in f else None
            except Exception as exc:
                raise InputError(f"cannot read the datasets of the feature file ({type(exc).__name__}: {exc})",
                                 file=path, fix=_REEXTRACT) from exc
            attrs.update({k: _plain(v) for k, v in ds.attrs.items()})
            if "coords" in f:
                attrs.update({k: _plain(v) for k, v in f["coords"].attrs.items()})
            attrs.update({k: _plain(v) for k, v in f.attrs.items()})
    else:
        features, coords, attrs = _pt_parts(_torch_load(path), path)
        features = _as_numpy(features, path, "features")
        coords = None if coords is None else _as_numpy(coords, path, "coords")
    features, coords = _validate(features, coords, path)
    return FeatureFile(slide_id=path.stem, path=path, features=features, coords=coords, attrs=attrs)


def feature_shape(path: str | Path) -> tuple[int, int]:
    """``(N, D)`` of a feature file without loading it (h5: header only; ``.pt``: loaded).

    Does not check values; an empty bag gives ``(0, D)`` (use :func:`read_features` for the full check).
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if suffix == ".h5":
        with _open_h5(path) as f:
            return _check_ndim(tuple(_h5_features_dataset(f, path).shape), path)
    features, _, _ = _pt_parts(_torch_load(path), path)
    return _check_ndim(tuple(_as_numpy(features, path, "features").shape), path)


def list_feature_files(directory: str | Path) -> dict[str, Path]:
    """``slide_id -> path`` of the ``.h5``/``.pt`` files directly in ``directory`` (sorted by slide id).

    Raises:
        InputError: the directory does not exist, holds no feature file, or two files share a stem
            (e.g. ``X.h5`` and ``X.pt``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("feature directory not found", file=directory,
                         fix="pass the directory holding <slide_id>.h5 or <slide_id>.pt feature files")
    found: dict[str, Path] = {}
    dups: list[tuple[Path, Path]] = []
    for p in sorted(directory.iterdir()):
        if not p.is_file() or p.suffix.lower() not in _FEATURE_SUFFIXES or p.name.startswith("."):
            continue
        if p.stem in found:
            dups.append((found[p.stem], p))
            continue
        found[p.stem] = p
    if dups:
        listing = "; ".join(f"{a.name} and {b.name}" for a, b in dups[:_MAX_NAMED])
        raise InputError(f"{len(dups)} slide id(s) have several feature files: {listing}", file=directory,
                         case=dups[0][0].stem, fix="keep one feature file per slide (remove the .h5 or the .pt)")
    if not found:
        raise InputError("no .h5/.pt feature files in the feature directory", file=directory,
                         fix="point `features` at the folder of TRIDENT/CLAM feature files")
    return dict(sorted(found.items()))


# ----------------------------------------------------------------------------------------------
# tables


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _detect_sep(path: Path) -> str:
    """Separator from the header line (tabs win over commas), else from the extension."""
    try:
        with _open_text(path) as fh:
            header = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read the table ({exc})", file=path, fix="check the file") from exc
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    if ";" in header and _base_suffix(path) not in (".tsv", ".tab"):
        return ";"
    return "," if _base_suffix(path) == ".csv" else "\t"


def _raw_header(path: Path) -> list[str]:
    import csv

    with _open_text(path) as fh:
        row = next(csv.reader(fh, delimiter=_detect_sep(path)), [])
    return [c.lstrip("\ufeff") for c in row]


def _read_table(path: str | Path, what: str, **kw) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", file=path, fix="check the path")
    sep = _detect_sep(path)
    try:
        df = pd.read_csv(path, sep=sep, **kw)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{what} file is empty", file=path, fix="check the file") from exc
    except Exception as exc:  # ParserError, UnicodeDecodeError, ...
        raise InputError(f"cannot parse the {what} table ({type(exc).__name__}: {exc})", file=path,
                         fix="write a tab- or comma-separated table with one header line") from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    return df


def _find_column(columns: Iterable[str], candidates: Iterable[str]) -> str | None:
    lower = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


def _clean_str(series: pd.Series) -> pd.Series:
    return series.map(lambda v: np.nan if _missing(v) else str(v).strip()).astype(object)


def _to_number(series: pd.Series) -> pd.Series:
    return pd.to_numeric(_clean_str(series), errors="coerce").astype(float)


# -- clinical ----------------------------------------------------------------------------------

#: our column -> accepted user column names (first present wins; case-insensitive).
_CLINICAL_ALIASES: dict[str, tuple[str, ...]] = {
    "case_id": ("case_submitter_id", "cases.submitter_id", "bcr_patient_barcode", "case_id", "patient_id",
                "patient", "submitter_id", "cases.case_id"),
    "slide_id": ("slide_id", "slide", "slide_submitter_id"),
    "project_id": ("project_id", "project.project_id", "cases.project_id", "project"),
    "primary_diagnosis": ("primary_diagnosis", "diagnoses.primary_diagnosis", "diagnosis"),
    "stage": ("ajcc_pathologic_stage", "diagnoses.ajcc_pathologic_stage", "stage", "pathologic_stage",
              "ajcc_pathologic_tumor_stage"),
    "t": ("ajcc_pathologic_t", "diagnoses.ajcc_pathologic_t", "t", "pathologic_t", "ajcc_tumor_pathologic_pt"),
    "n": ("ajcc_pathologic_n", "diagnoses.ajcc_pathologic_n", "n", "pathologic_n", "ajcc_nodes_pathologic_pn"),
    "m": ("ajcc_pathologic_m", "diagnoses.ajcc_pathologic_m", "m", "pathologic_m",
          "ajcc_metastasis_pathologic_pm"),
    "vital_status": ("vital_status", "demographic.vital_status"),
    "days_to_death": ("days_to_death", "demographic.days_to_death"),
    "days_to_last_follow_up": ("days_to_last_follow_up", "diagnoses.days_to_last_follow_up",
                               "days_to_last_followup"),
    "survival_months": ("survival_months", "os_months"),
    "event": ("event", "os_event"),
    "censorship": ("censorship", "censored"),
    "oncotree_code": ("oncotree_code", "oncotree"),
    "age": ("age_at_index", "demographic.age_at_index", "age"),
    "site": ("site",),
}
_NUMERIC_CLINICAL = ("days_to_death", "days_to_last_follow_up", "survival_months", "event", "censorship", "age")
#: columns whose disagreement between rows of one case is an error (patient-level facts)
_STRICT_CLINICAL = ("project_id", "primary_diagnosis", "stage", "t", "n", "m", "vital_status", "days_to_death",
                    "survival_months", "event", "censorship", "oncotree_code", "site")


def _resolve_clinical_columns(df: pd.DataFrame, columns: Mapping[str, str] | None, path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if columns:
        unknown = [k for k in columns if k not in _CLINICAL_ALIASES]
        if unknown:
            raise InputError(f"unknown key(s) {unknown} in the clinical column mapping", file=path,
                             fix=f"map our names {sorted(_CLINICAL_ALIASES)} to your column names")
        for ours, theirs in columns.items():
            col = _find_column(df.columns, [str(theirs)])
            if col is None:
                raise InputError(f"column '{theirs}' (mapped to '{ours}') is not in the clinical table "
                                 f"(columns: {_names(df.columns, 30)})", file=path,
                                 fix="fix the column mapping (`columns` / clinical_columns)")
            found[ours] = col
    for ours, aliases in _CLINICAL_ALIASES.items():
        if ours not in found:
            col = _find_column(df.columns, aliases)
            if col is not None and col not in found.values():
                found[ours] = col
    if "case_id" not in found:
        raise InputError(f"the clinical table has no case id column (columns: {_names(df.columns, 30)})", file=path,
                         fix="name it case_submitter_id or case_id, or map it: columns={'case_id': '<your column>'}")
    return found


def _collapse_cases(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per case: rows that agree merge (first non-empty value wins), slide ids are joined."""
    has_case = df["case_id"].notna()
    body, rest = df[has_case], df[~has_case]
    if not body["case_id"].duplicated().any():
        return df.reset_index(drop=True)
    strict = [c for c in _STRICT_CLINICAL if c in body.columns]
    dup = body[body["case_id"].duplicated(keep=False)]
    counts = dup.groupby("case_id", sort=False)[strict].nunique(dropna=True) if strict else pd.DataFrame()
    if len(counts):
        conflict = counts[(counts > 1).any(axis=1)]
        if len(conflict):
            first = str(conflict.index[0])
            cols = [c for c in strict if conflict.loc[first, c] > 1]
            values = {c: sorted(map(str, dup.loc[dup["case_id"] == first, c].dropna().unique())) for c in cols}
            raise InputError(f"the clinical table has conflicting rows for {len(conflict)} case(s) "
                             f"({_names(conflict.index)}); e.g. {first} has {values}", file=path, case=first,
                             fix="keep one row per patient, or rows that agree on the patient-level values "
                                 "(diagnosis, stage/TNM, vital status, survival)")
    soft = [c for c in ("days_to_last_follow_up", "age") if c in body.columns]
    for col in soft:
        n_vals = dup.groupby("case_id", sort=False)[col].nunique(dropna=True)
        differ = n_vals[n_vals > 1]
        if len(differ):
            how = "the largest (latest follow-up) is used" if col == "days_to_last_follow_up" else "the first is used"
            warn_input(f"{len(differ)} case(s) have several values of {col} across their rows; {how}: "
                       f"{_names(differ.index)}", file=path, case=str(differ.index[0]),
                       fix="keep one row per patient if that is not intended")
    agg: dict[str, Any] = {c: "first" for c in body.columns if c != "case_id"}
    if "days_to_last_follow_up" in agg:
        agg["days_to_last_follow_up"] = "max"
    if "slide_id" in agg:
        agg["slide_id"] = lambda s: ";".join(dict.fromkeys(str(v) for v in s.dropna())) or np.nan
    merged = body.groupby("case_id", sort=False, as_index=False).agg(agg)
    return pd.concat([merged, rest], ignore_index=True)[df.columns]


def read_clinical(path: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a clinical table (GDC or SurvPath style) into one row per patient.

    Args:
        path: ``.tsv``/``.csv`` (optionally ``.gz``); the separator is sniffed from the header line.
        columns: maps our column names to the user's (e.g. ``{"case_id": "patient", "stage": "Stage"}``).
            Our names: ``case_id, slide_id, project_id, primary_diagnosis, stage, t, n, m, vital_status,
            days_to_death, days_to_last_follow_up, survival_months, event, censorship, oncotree_code, age,
            site``. Unmapped names are looked up among the usual GDC / SurvPath / GDC 2024 (``cases.``,
            ``diagnoses.``, ``demographic.`` prefixed) column names.

    Returns:
        DataFrame with the columns :data:`CLINICAL_COLUMNS` (missing ones NaN), plus ``slide_id`` (after
        ``case_id``) and ``site`` (last) when the input has them. Text columns hold ``str`` or NaN
        (``'--``, ``Not Reported``, ``Unknown`` ... are NaN); numeric columns are float.

        * ``case_id``: TCGA barcodes reduced to 12 characters (:func:`tcga_case_id`).
        * Survival: ``survival_months`` as given (SurvPath), else days / 30.44 of ``days_to_death``
          (``vital_status`` Dead) or ``days_to_last_follow_up`` (Alive). ``event``: as given, else
          ``1 - censorship`` (SurvPath: 1 = censored), else from ``vital_status`` (Dead = 1, Alive = 0).
          Rows without a usable pair (months >= 0 and event in {0, 1}) are **kept** with both NaN; they
          are counted in a warning and in ``df.attrs["no_survival"]`` (list of case ids).
        * Several rows of one case (GDC: one per treatment; SurvPath: one per slide) collapse into one
          row: the first non-empty value of each column wins, ``days_to_last_follow_up`` takes the
          largest value, ``slide_id`` becomes the ``;``-joined slide ids (``df.attrs["slide_case"]``
          maps each slide id to its case). Rows of one case that disagree on a patient-level value
          (project, diagnosis, stage/TNM, vital status, days to death, survival, site) are an error.
        * Rows with an empty case id are kept (not merged) for the caller to report.

    Raises:
        InputError: missing/unparsable file, no case id column, bad ``columns`` mapping, conflicting
            duplicate rows (naming the case).
    """
    path = Path(path)
    raw = _read_table(path, "clinical", dtype=str, keep_default_na=False)
    found = _resolve_clinical_columns(raw, columns, path)
    n = len(raw)
    out = pd.DataFrame(index=range(n))
    for ours, col in found.items():
        values = raw[col].reset_index(drop=True)
        out[ours] = _to_number(values) if ours in _NUMERIC_CLINICAL else _clean_str(values)
    out["case_id"] = out["case_id"].map(lambda v: tcga_case_id(v) if isinstance(v, str) else v)
    if "project_id" in out:
        out["project_id"] = out["project_id"].map(lambda v: v.upper() if isinstance(v, str) else v)
    if "slide_id" in out:
        out["slide_id"] = out["slide_id"].map(lambda v: _strip_slide_ext(v) if isinstance(v, str) else v)
    slide_case = {}
    if "slide_id" in out:
        slide_case = {s: c for s, c in zip(out["slide_id"], out["case_id"])
                      if isinstance(s, str) and isinstance(c, str)}
    out = _collapse_cases(out, path)
    out = _survival(out)
    no_surv = out.loc[out["survival_months"].isna() & out["case_id"].notna(), "case_id"].tolist()
    if no_surv:
        warn_input(f"{len(no_surv)} of {int(out['case_id'].notna().sum())} patient(s) have no usable survival "
                   f"(kept with survival NaN): {_names(no_surv)}", file=path,
                   fix="fill vital_status and days_to_death/days_to_last_follow_up (or survival_months and "
                       "censorship) if survival analyses should use them")
    cols = ["case_id", *(["slide_id"] if "slide_id" in out else []), *CLINICAL_COLUMNS[1:],
            *(["site"] if "site" in out else [])]
    for c in cols:
        if c not in out:
            out[c] = np.nan
    result = out[cols].reset_index(drop=True)
    result.attrs["no_survival"] = no_surv
    result.attrs["slide_case"] = slide_case
    return result


def _survival(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    n = len(df)
    vital = df["vital_status"].map(lambda v: str(v).strip().lower() if isinstance(v, str) else "") \
        if "vital_status" in df else pd.Series([""] * n, index=df.index)
    dead = vital.isin(("dead", "deceased", "1"))
    alive = vital.isin(("alive", "living", "0"))
    nan = pd.Series(np.nan, index=df.index)
    if "event" in df:
        event = df["event"]
    elif "censorship" in df:
        event = 1.0 - df["censorship"]
    else:
        event = pd.Series(np.where(dead, 1.0, np.where(alive, 0.0, np.nan)), index=df.index)
    if "survival_months" in df:
        months = df["survival_months"]
    else:
        death = df["days_to_death"] if "days_to_death" in df else nan
        follow = df["days_to_last_follow_up"] if "days_to_last_follow_up" in df else nan
        by_event = pd.Series(np.where(event == 1, death, np.where(event == 0, follow, np.nan)), index=df.index)
        months = by_event / DAYS_PER_MONTH
    months = months.astype(float)
    event = event.astype(float)
    ok = months.notna() & (months >= 0) & event.isin((0.0, 1.0))
    df["survival_months"] = months.where(ok)
    df["event"] = event.where(ok)
    return df


def _strip_slide_ext(name: str) -> str:
    for ext in _SLIDE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


# -- expression --------------------------------------------------------------------------------

_GENE_HEADERS = ("gene", "genes", "gene_id", "gene_symbol", "gene_name", "hugo_symbol", "symbol", "genes_symbol")
_SAMPLE_HEADERS = ("case_id", "case_submitter_id", "sample_id", "samples", "patient", "patient_id",
                   "submitter_id", "barcode", "bcr_patient_barcode")
ORIENTATIONS = ("auto", "genes_x_samples", "samples_x_genes")


def _orientation(df: pd.DataFrame, first_header: str, path: Path) -> str:
    header = [str(c) for c in df.columns]
    first = [str(v) for v in df.index]
    frac = lambda xs: (sum(is_tcga_barcode(x) for x in xs) / len(xs)) if xs else 0.0  # noqa: E731
    if frac(header) >= 0.5:
        return "genes_x_samples"
    if frac(first) >= 0.5:
        return "samples_x_genes"
    h = first_header.strip().lower()
    if h in _GENE_HEADERS:
        return "genes_x_samples"
    if h in _SAMPLE_HEADERS:
        return "samples_x_genes"
    if len(header) != len(first):
        return "genes_x_samples" if len(first) > len(header) else "samples_x_genes"
    raise InputError("cannot tell the orientation of the expression matrix (no TCGA barcodes, no telling "
                     "first-column name, as many rows as columns)", file=path,
                     fix="pass orientation='genes_x_samples' or 'samples_x_genes'")


def _choose_samples(samples: list[str], path: Path) -> tuple[list[int], dict[str, str], dict[str, list[str]]]:
    """Row positions kept (one per case) by the documented rule; choices for cases with several samples."""
    by_case: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_case.setdefault(tcga_case_id(s), []).append(i)
    keep, chosen, dropped = [], {}, {}
    for case, rows in by_case.items():
        if len(rows) == 1:
            keep.append(rows[0])
            continue
        codes = [sample_type_code(samples[i]) for i in rows]
        order = sorted(range(len(rows)), key=lambda k: (codes[k] if codes[k] is not None else 100, k))
        best = rows[order[0]]
        keep.append(best)
        chosen[case] = samples[best]
        dropped[case] = [samples[rows[k]] for k in order[1:]]
    if chosen:
        listing = "; ".join(f"{c}: {chosen[c]} (not {', '.join(dropped[c])})" for c in list(chosen)[:_MAX_NAMED])
        warn_input(f"{len(chosen)} case(s) have several expression samples; one kept per case (primary tumour "
                   f"-01 first, then the lowest sample-type code, then file order): {listing}", file=path,
                   case=next(iter(chosen)), fix="remove the samples you do not want if this choice is wrong")
    normal = [c for c in chosen if (sample_type_code(chosen[c]) or 0) >= 10]
    if normal:
        warn_input(f"{len(normal)} case(s) have only non-tumour expression samples (type code >= 10) and use one: "
                   f"{_names(chosen[c] for c in normal)}", file=path, case=normal[0],
                   fix="remove normal-tissue samples if tumour expression is intended")
    return sorted(keep), chosen, dropped


def read_expression(path: str | Path, orientation: str = "auto") -> pd.DataFrame:
    """Read an expression matrix into cases x genes.

    Args:
        path: ``.tsv``/``.csv``/``.txt`` (optionally ``.gz``); the first column holds row labels.
        orientation: ``"genes_x_samples"`` (UCSC Xena: first column gene symbols, one column per
            sample), ``"samples_x_genes"``, or ``"auto"``.

    Orientation rule (``auto``), first match wins:
        1. at least half of the column headers are TCGA barcodes -> genes x samples;
        2. at least half of the first-column values are TCGA barcodes -> samples x genes;
        3. the first column's header is a gene header (``gene``, ``gene_id``, ``gene_symbol``,
           ``hugo_symbol``, ``symbol`` ...) -> genes x samples; a sample/case header (``case_id``,
           ``sample_id``, ``patient`` ...) -> samples x genes (Xena's ``sample`` is ambiguous and skipped);
        4. genes outnumber samples: the longer axis is taken as genes;
        otherwise an error asks for ``orientation``.

    Several samples of one case (``TCGA-XX-XXXX-01A`` and ``-11A``): the primary tumour (``-01``) is
    kept, else the lowest sample-type code, else the first in file order. The choices are warned about
    and returned in ``df.attrs["sample_choice"]`` (case -> kept sample id; ``df.attrs["samples_dropped"]``:
    case -> the other sample ids). Duplicate gene symbols are averaged (warned).

    Returns:
        float64 DataFrame indexed by case id (``index.name == "case_id"``), columns gene symbols.

    Raises:
        InputError: missing/unparsable file, bad ``orientation``, no gene or no sample, NaN/inf or
            non-numeric values (naming samples and genes).
    """
    path = Path(path)
    if orientation not in ORIENTATIONS:
        raise InputError(f"unknown expression orientation '{orientation}'", file=path,
                         fix=f"use one of {ORIENTATIONS}")
    df = _read_table(path, "expression", index_col=0)
    header = _raw_header(path)  # pandas renames repeated headers (G2 -> G2.1); keep them as written
    if len(header) == df.shape[1] + 1:
        df.columns = [h.strip() for h in header[1:]]
    first_header = str(df.index.name or "")
    df.index = [str(x).strip() for x in df.index]
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InputError(f"expression matrix has no values (shape {df.shape})", file=path,
                         fix="write a matrix with row labels in the first column and a header line")
    orient = _orientation(df, first_header, path) if orientation == "auto" else orientation
    if orient == "genes_x_samples":
        df = df.T
    df.index = [str(x).strip() for x in df.index]
    df.columns = [str(x).strip() for x in df.columns]
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        samples = [df.index[i] for i in np.flatnonzero(bad.any(axis=1))]
        genes = [df.columns[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise InputError(f"expression matrix has {int(bad.sum())} NaN/inf or non-numeric value(s) in "
                         f"{len(samples)} sample(s) ({_names(samples)}) and {len(genes)} gene(s) ({_names(genes)})",
                         file=path, case=samples[0],
                         fix="impute the missing values or remove those genes (or samples) from the matrix")
    samples = list(df.index)
    keep, chosen, dropped = _choose_samples(samples, path)
    out = pd.DataFrame(values[keep], index=[tcga_case_id(samples[i]) for i in keep], columns=df.columns)
    if out.columns.duplicated().any():
        dup = sorted(set(out.columns[out.columns.duplicated()]))
        warn_input(f"{len(dup)} gene symbol(s) appear several times in the expression matrix and are averaged: "
                   f"{_names(dup)}", file=path, fix="collapse duplicate genes yourself if averaging is wrong")
        out = out.T.groupby(level=0, sort=False).mean().T
    out.index.name = "case_id"
    out.attrs["sample_choice"] = chosen
    out.attrs["samples_dropped"] = dropped
    return out


# -- gene sets, reports, slide tables ----------------------------------------------------------


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene1<TAB>gene2...``.

    The description column is skipped; genes are stripped and de-duplicated (order kept); blank lines
    are ignored. Returns ``{name: [genes]}`` in file order.

    Raises:
        InputError: missing file, a line without tabs or without genes, a repeated set name, no set.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("gene set file not found", file=path, fix="check the path")
    sets: dict[str, list[str]] = {}
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            name = parts[0].strip()
            genes = list(dict.fromkeys(g.strip() for g in parts[2:] if g.strip()))
            if len(parts) < 3 or not name:
                raise InputError(f"line {lineno} of the GMT file is not 'name<TAB>description<TAB>genes...'",
                                 file=path, fix="separate the fields with tabs (GMT format)")
            if not genes:
                raise InputError(f"gene set '{name}' (line {lineno}) has no genes", file=path,
                                 fix="remove the empty gene set")
            if name in sets:
                raise InputError(f"gene set name '{name}' appears twice (line {lineno})", file=path,
                                 fix="give every gene set a unique name")
            sets[name] = genes
    if not sets:
        raise InputError("the GMT file has no gene set", file=path, fix="check the file")
    return sets


def read_reports(path: str | Path) -> pd.DataFrame:
    """Read pathology reports: a CSV/TSV with a case id column and a text column.

    Case id column: ``case_id``, ``case_submitter_id``, ``patient_id``, ``patient``, ``submitter_id`` or
    ``patient_filename`` (TCGA-Reports); text column: ``text``, ``report``, ``report_text`` or
    ``pathology_report``. Case ids go through :func:`tcga_case_id`; missing text becomes ``""``.
    All rows are returned (duplicates and empty texts are the caller's to handle).

    Returns:
        DataFrame with columns ``case_id, text`` (str).
    """
    path = Path(path)
    df = _read_table(path, "reports", dtype=str, keep_default_na=False)
    case_col = _find_column(df.columns, ("case_id", "case_submitter_id", "patient_id", "patient", "submitter_id",
                                         "patient_filename"))
    text_col = _find_column(df.columns, ("text", "report", "report_text", "pathology_report"))
    if case_col is None or text_col is None:
        missing = "case id" if case_col is None else "text"
        raise InputError(f"the reports table has no {missing} column (columns: {_names(df.columns, 30)})",
                         file=path, fix="name the columns case_id and text (or report)")
    cases = df[case_col].map(lambda v: tcga_case_id(v) if str(v).strip() else "")
    return pd.DataFrame({"case_id": cases.astype(str).to_numpy(),
                         "text": df[text_col].fillna("").astype(str).to_numpy()})


def read_slide_case_table(path: str | Path) -> dict[str, str]:
    """Read a slide -> case table (CSV/TSV with ``slide_id`` and ``case_id`` columns) for non-TCGA data.

    Accepted column names: ``slide_id``/``slide``/``slide_submitter_id``/``filename`` and
    ``case_id``/``case_submitter_id``/``patient_id``/``patient``. Slide file extensions (``.svs``,
    ``.h5`` ...) are stripped so ids match feature file stems. Case ids are kept as written (TCGA
    barcodes are reduced to 12 characters).

    Raises:
        InputError: missing columns, an empty id, or a slide listed with two different cases.
    """
    path = Path(path)
    df = _read_table(path, "slide-case", dtype=str, keep_default_na=False)
    slide_col = _find_column(df.columns, ("slide_id", "slide", "slide_submitter_id", "filename"))
    case_col = _find_column(df.columns, ("case_id", "case_submitter_id", "patient_id", "patient"))
    if slide_col is None or case_col is None:
        raise InputError(f"the slide-case table needs slide_id and case_id columns (columns: {_names(df.columns)})",
                         file=path, fix="write a table with the columns slide_id,case_id")
    mapping: dict[str, str] = {}
    for row, (sid, cid) in enumerate(zip(df[slide_col], df[case_col]), start=2):
        sid, cid = str(sid).strip(), str(cid).strip()
        if not sid or not cid:
            raise InputError(f"row {row} of the slide-case table has an empty slide or case id", file=path,
                             fix="fill both columns on every row")
        sid, cid = _strip_slide_ext(sid), tcga_case_id(cid)
        if mapping.get(sid, cid) != cid:
            raise InputError(f"slide {sid} is listed with two cases ({mapping[sid]} and {cid})", file=path,
                             case=cid, fix="give each slide exactly one case")
        mapping[sid] = cid
    return mapping
