"""Feature files of a cohort: checked, matched to patients, and paired across magnifications.

Feature files are checked at prepare time rather than at training time, where a bad file costs an
epoch: every header is read (readable, non-empty, one width per magnification); with
``check_values`` every file is read once more for NaN/inf and missing coordinates. That full read is
the slow part of ``prepare``, so its results are cached in the cohort directory keyed by path, size
and mtime (:class:`ValidationCache`): re-running ``prepare`` reads only new or changed files.

Slides find their patient through a slide -> case table, the clinical table's slide ids, or the TCGA
barcode in the file name, in that order. A slide without a patient in the clinical table cannot get
a site and is dropped and listed. Secondary-magnification files are matched to primary ones by
slide id.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..formats import feature_shape, list_feature_files, read_features, read_slide_case_table, tcga_case_id
from ..formats.ids import MAX_NAMED, names
from .log import IngestLog

__all__ = ["FeatureSet", "ValidationCache", "scan_features", "map_slides_to_cases", "match_secondary"]


@dataclass
class FeatureSet:
    """Feature files of one magnification after validation.

    Attributes:
        directory: the feature directory given.
        paths: slide id -> file, only slides kept (matched to a patient).
        n_patches: slide id -> number of patches.
        dim: the feature width shared by every file.
        no_coords: slide ids whose file has no coordinates (the dataset generates a grid).
        case_of: slide id -> case id.
    """

    directory: Path
    paths: dict[str, Path]
    n_patches: dict[str, int]
    dim: int
    no_coords: list[str] = field(default_factory=list)
    case_of: dict[str, str] = field(default_factory=dict)


class ValidationCache:
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
        """The stored check result of ``file``, or None when it is new or changed."""
        return self.data.get(self._key(file))

    def put(self, file: Path, value: dict) -> None:
        """Store the check result of ``file`` (under its current size and mtime)."""
        self.data[self._key(file)] = value

    def save(self) -> None:
        """Write the cache atomically (a crash never leaves a half-written file)."""
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


def scan_features(directory: Path, role: str, check_values: bool, cache: ValidationCache | None) -> FeatureSet:
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
    slides = FeatureSet(directory, dict(sorted(files.items())), {s: n for s, (n, _) in shapes.items()}, dim)
    if check_values:
        for sid, path in slides.paths.items():
            if not _check_values(path, cache)["has_coords"]:
                slides.no_coords.append(sid)
    return slides


def _check_widths(shapes: dict[str, tuple[int, int]], files: dict[str, Path], role: str, directory: Path) -> int:
    widths = Counter(d for _, d in shapes.values())
    dim = widths.most_common(1)[0][0]
    if len(widths) > 1:
        odd = [(sid, d) for sid, (_, d) in shapes.items() if d != dim]
        listing = "; ".join(f"{files[s].name} has width {d}" for s, d in odd[:MAX_NAMED])
        raise InputError(f"{role} feature files have inconsistent widths: {widths[dim]} file(s) have width {dim}, "
                         f"but {listing}" + (f" and {len(odd) - MAX_NAMED} more" if len(odd) > MAX_NAMED else ""),
                         file=files[odd[0][0]],
                         fix="extract every slide with the same patch encoder (or remove the odd files)")
    return int(dim)


def _check_values(path: Path, cache: ValidationCache | None) -> dict:
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


def map_slides_to_cases(slides: FeatureSet, slide_case_table, clin_slide_map: dict[str, str], known: set[str],
                         log: IngestLog) -> None:
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
    warn_no_coords(slides, log, "primary")


def warn_no_coords(slides: FeatureSet, log: IngestLog, role: str) -> None:
    """Name the slides whose feature file has no ``coords``: their grid coordinates are made up."""
    if not slides.no_coords:
        return
    first = slides.no_coords[0]
    log.warn(f"{len(slides.no_coords)} {role} feature file(s) have no 'coords' dataset, so their patch "
             f"positions are unknown and a row-major grid is made up for them (methods that use positions, "
             f"e.g. TransMIL's PPEG or the slide encoders' position encodings, then see a made-up layout): "
             f"slides {names(slides.no_coords)}", file=slides.paths[first],
             case=slides.case_of.get(first),
             fix="re-extract these slides with TRIDENT or CLAM, which store 'coords' next to 'features'")


def match_secondary(prim: FeatureSet | None, sec: FeatureSet, log: IngestLog) -> None:
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
    warn_no_coords(sec, log, "secondary")
    missing = [s for s in prim_ids if s not in sec.paths]
    log.unmatch("primary slides", missing, "no secondary-magnification file (kept; has_wsi_secondary may be False)",
                file=sec.directory, warn=bool(missing))
