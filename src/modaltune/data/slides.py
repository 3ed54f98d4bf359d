"""Loading a patient's slides: feature files, generated coordinates, concatenation, an LRU cache.

* Slides of one patient are concatenated. The first slide keeps its coordinates; each next slide is
  shifted in x so that its smallest x lies one tile beyond the largest x so far
  (``x' = x - min(x) + prev_max_x + tile``), so slides never overlap. The tile size is the file's
  ``patch_size_level0`` attribute, else the smallest x step of its coordinates, else 256.
* A feature file without coordinates gets grid coordinates (row-major on a square-ish grid of
  ``ceil(sqrt(N))`` columns, tile-sized steps).
* Loaded files are kept in an LRU cache keyed by path, so each file is read only when it falls out of
  the cache.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .formats import read_features

__all__ = ["Slide", "SlideCache", "load_slide", "concat_slides", "DEFAULT_TILE"]

DEFAULT_TILE = 256


@dataclass
class Slide:
    """One loaded feature file: features, coordinates, tile size, whether coordinates were generated."""

    features: np.ndarray  # float32 [N, D]
    coords: np.ndarray    # float64 [N, 2]
    tile: float
    generated: bool       # coords were missing and generated on a grid


def _tile_size(coords: np.ndarray | None, attrs: Mapping) -> float:
    for key in ("patch_size_level0", "patch_size_lv0"):
        v = attrs.get(key) if attrs else None
        if v is not None:
            try:
                v = float(np.asarray(v).reshape(-1)[0])
            except (TypeError, ValueError):
                continue
            if v > 0:
                return v
    if coords is not None and len(coords) > 1:
        steps = np.diff(np.unique(coords[:, 0]))
        steps = steps[steps > 0]
        if steps.size:
            return float(steps.min())
    return float(DEFAULT_TILE)


def _grid_coords(n: int, tile: float) -> np.ndarray:
    cols = max(1, int(math.ceil(math.sqrt(n))))
    i = np.arange(n)
    return np.stack([(i % cols) * tile, (i // cols) * tile], axis=1).astype(np.float64)


def load_slide(path: Path) -> Slide:
    """Read a feature file (h5 or pt); generate grid coordinates when it has none."""
    ff = read_features(path)  # opens the file once
    feats = np.asarray(ff.features, dtype=np.float32)
    tile = _tile_size(ff.coords, ff.attrs or {})
    if ff.coords is None:
        return Slide(feats, _grid_coords(len(feats), tile), tile, True)
    return Slide(feats, np.asarray(ff.coords, dtype=np.float64).reshape(-1, 2), tile, False)


class SlideCache:
    """Tiny LRU cache path -> loaded slide."""

    def __init__(self, size: int):
        self.size = max(0, int(size))
        self.data: OrderedDict[str, Slide] = OrderedDict()

    def get(self, key: str, load) -> Slide:
        """The cached slide of ``key``, else ``load()`` (then cached)."""
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        value = load()
        if self.size:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


def concat_slides(slides: Sequence[Slide]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate slides; slide k's x is shifted past the previous slides' max x plus one tile."""
    feats, coords = [], []
    max_x = None
    for s in slides:
        c = s.coords.copy()
        if max_x is not None and len(c):
            c[:, 0] = c[:, 0] - c[:, 0].min() + max_x + s.tile
        if len(c):
            max_x = float(c[:, 0].max()) if max_x is None else max(max_x, float(c[:, 0].max()))
        feats.append(s.features)
        coords.append(c)
    return np.concatenate(feats, axis=0), np.concatenate(coords, axis=0)
