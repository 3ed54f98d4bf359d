"""Patch features of one slide: TRIDENT/CLAM ``.h5`` and ``.pt`` files.

Feature extraction (TRIDENT, CLAM) happens outside modaltune; what arrives here is one file per
slide holding ``features`` [N, D] and, usually, ``coords`` [N, 2] (level-0 pixels). ``.h5`` files keep
their file and dataset attributes (patch size, magnification), which later code reads to lay slides
side by side. ``.pt`` files hold a tensor [N, D] or a dict with ``features`` and optionally ``coords``.

Files are checked on read, because a NaN in one patch or a truncated file otherwise surfaces as a
NaN loss hours into training: each problem raises :class:`~modaltune.errors.InputError` naming the
file and the fix. :func:`feature_shape` reads only the h5 header, so a cohort of thousands of slides
can be checked for consistent widths without loading every bag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import InputError
from .ids import MAX_NAMED

__all__ = ["FeatureFile", "read_features", "feature_shape", "list_feature_files"]

_FEATURE_SUFFIXES = (".h5", ".pt")


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
        """Number of patches (rows of ``features``)."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature width (columns of ``features``)."""
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
        listing = "; ".join(f"{a.name} and {b.name}" for a, b in dups[:MAX_NAMED])
        raise InputError(f"{len(dups)} slide id(s) have several feature files: {listing}", file=directory,
                         case=dups[0][0].stem, fix="keep one feature file per slide (remove the .h5 or the .pt)")
    if not found:
        raise InputError("no .h5/.pt feature files in the feature directory", file=directory,
                         fix="point `features` at the folder of TRIDENT/CLAM feature files")
    return dict(sorted(found.items()))
