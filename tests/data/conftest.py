"""Helpers shared by the data tests.

Feature files are written here with plain h5py, independently of modaltune's readers, so a reader
bug cannot hide behind a matching writer bug. The writers are fixtures (``write_h5``, ``write_slide``)
so test modules need no imports from this file.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest


def _write_h5(path: Path, feats, coords=None, attrs=None, coord_attrs=None) -> Path:
    """A TRIDENT/CLAM-style h5: dataset ``features``, optional ``coords`` (with attributes), file attributes."""
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats)
        if coords is not None:
            c = f.create_dataset("coords", data=coords)
            for k, v in (coord_attrs or {}).items():
                c.attrs[k] = v
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def _write_slide(path: Path, n: int = 5, dim: int = 8, *, coords: bool = True, value: float | None = None,
                 seed: int = 0) -> Path:
    """``n`` random float32 patches of width ``dim`` in one row of 256-px tiles (``patch_size_level0=256``);
    ``value`` replaces the first feature (e.g. NaN); ``coords=False`` leaves coordinates out."""
    feats = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    if value is not None and n:
        feats[0, 0] = value
    xy = np.stack([np.arange(n) * 256, np.zeros(n)], axis=1).astype(np.int64) if coords else None
    return _write_h5(path, feats, xy, attrs={"patch_size_level0": 256})


@pytest.fixture()
def write_h5():
    """``write_h5(path, feats, coords=None, attrs=None, coord_attrs=None) -> path``."""
    return _write_h5


@pytest.fixture()
def write_slide():
    """``write_slide(path, n=5, dim=8, *, coords=True, value=None, seed=0) -> path`` (random patches)."""
    return _write_slide
