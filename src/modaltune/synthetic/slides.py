"""Synthetic slides: tissue blobs on a patch grid, prototype-mixture features, TRIDENT-style h5 files.

A slide is a blob of tissue on the 20x grid. Each patch mixes the morphology prototypes with
weights that vary smoothly in space (a Gaussian random field per prototype), so neighbouring patches
share tissue types as in real slides and spatial models have something to find. The 10x features
pool 2x2 blocks of 20x patches (plus fresh noise) on a 512-px grid aligned with the 20x one, so the
two magnifications describe the same tissue.

Files are written like TRIDENT/CLAM output (datasets ``features``, ``coords``, level-0 pixel
attributes) with ``track_times=False``, so the same seed writes byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["PATCH_20X", "softmax", "smooth_field", "tissue_mask", "make_slide", "pool_2x2", "write_h5"]

#: Level-0 pixels of one 20x patch (level 0 = 20x, 0.5 um/px).
PATCH_20X = 256

#: The ``generator`` attribute of every h5 file; the name of the module that first wrote them, kept so
#: files stay byte-identical across versions.
H5_GENERATOR = "modaltune.data.synthetic"


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    x = x - x.max(axis=axis, keepdims=True)
    ex = np.exp(x)
    return ex / ex.sum(axis=axis, keepdims=True)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A standardised Gaussian random field on a ``shape`` grid (white noise smoothed with ``sigma`` cells)."""
    f = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    sd = f.std()
    return (f - f.mean()) / (sd if sd > 0 else 1.0)


def tissue_mask(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boolean grid with exactly ``n`` True cells forming one blob (smooth radial score, top-n)."""
    side = int(math.ceil(math.sqrt(n * 2.2))) + 4
    h = side + int(rng.integers(0, max(2, side // 3)))
    w = side + int(rng.integers(0, max(2, side // 3)))
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ay, ax = rng.uniform(0.7, 1.3, size=2)
    r2 = ((yy - cy) / (ay * h / 4)) ** 2 + ((xx - cx) / (ax * w / 4)) ** 2
    score = -r2 + 0.6 * smooth_field(rng, (h, w), sigma=2.0)
    flat = np.argsort(-score.ravel(), kind="stable")[:n]
    mask = np.zeros(h * w, bool)
    mask[flat] = True
    return mask.reshape(h, w)


def make_slide(rng, n_p, w, prototypes, noise, gamma, delta, secondary) -> dict[str, np.ndarray]:
    """One slide: blob of ``n_p`` 20x patches with spatially smooth prototype mixtures."""
    k, dim = prototypes.shape
    mask = tissue_mask(rng, n_p)
    h, wd = mask.shape
    fields = np.stack([smooth_field(rng, (h, wd), sigma=1.8) for _ in range(k)], axis=-1)
    logits = (np.log(np.maximum(w, 1e-6))[None, None, :] + 1.5 * fields) / 0.5
    rows, cols = np.nonzero(mask)  # row-major order = raster scan, like a patcher
    mix = softmax(logits[rows, cols])  # [n_p, k]
    stain = rng.normal(0, 0.1, size=dim)
    clean = mix @ prototypes + stain
    feats = (clean + rng.normal(0, noise, size=(n_p, dim))) * (1 + gamma) + delta
    # level-0 origin on the 512 grid so that 10x cells align with 2x2 blocks of 20x patches
    x0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    y0 = 2 * PATCH_20X * int(rng.integers(2, 60))
    coords = np.stack([x0 + cols * PATCH_20X, y0 + rows * PATCH_20X], axis=1).astype(np.int64)
    out = {"features": feats.astype(np.float32), "coords": coords, "mix": mix}
    if secondary:
        out["features_10x"], out["coords_10x"], _ = pool_2x2(rng, rows, cols, wd, feats, 0.3 * noise, x0, y0)
    return out


def pool_2x2(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, width: int, feats: np.ndarray,
             noise_sd: float, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 10x view of 20x patches: each 2x2 block of the 20x grid pooled into one 10x patch.

    A 10x patch covers the level-0 area of a 2x2 block of 20x patches (512 level-0 px), so its feature
    is the mean of the block's tissue patches plus fresh noise, and its coordinate the block's corner.

    Args:
        rng: the slide's stream (draws the fresh noise).
        rows, cols: 20x grid cell of each patch (row-major raster order).
        width: grid width (columns) of the 20x grid.
        feats: ``[n, dim]`` 20x features.
        noise_sd: standard deviation of the fresh 10x noise.
        x0, y0: level-0 origin of the grid (multiples of 512 so both grids align).

    Returns:
        ``(features_10x float32 [m, dim], coords_10x int64 [m, 2], parent [n])``: ``parent[i]`` is the
        row of the 10x patch that holds 20x patch ``i``.
    """
    parent = (rows // 2) * ((width + 1) // 2) + (cols // 2)
    uniq, inv = np.unique(parent, return_inverse=True)
    counts = np.bincount(inv).astype(float)
    pooled = np.zeros((len(uniq), feats.shape[1]))
    np.add.at(pooled, inv, feats)
    pooled /= counts[:, None]
    pooled += rng.normal(0, noise_sd, size=pooled.shape)
    pr, pc = uniq // ((width + 1) // 2), uniq % ((width + 1) // 2)
    coords = np.stack([x0 + pc * 2 * PATCH_20X, y0 + pr * 2 * PATCH_20X], axis=1).astype(np.int64)
    return pooled.astype(np.float32), coords, inv


def write_h5(path: Path, feats, coords, slide_id, case_id, *, magnification, patch_size_level0) -> None:
    """Write one slide's features and coordinates as a TRIDENT/CLAM-style h5 (no timestamps)."""
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["slide_id"] = slide_id
        f.attrs["case_id"] = case_id
        f.attrs["encoder"] = "synthetic_prototype_mixture"
        f.attrs["magnification"] = magnification
        f.attrs["patch_size"] = 256
        f.attrs["patch_size_level0"] = patch_size_level0
        f.attrs["level0_magnification"] = 20
        f.attrs["generator"] = H5_GENERATOR
        d = f.create_dataset("features", data=feats, track_times=False)
        d.attrs["encoder"] = "synthetic_prototype_mixture"
        c = f.create_dataset("coords", data=coords, track_times=False)
        c.attrs["patch_size"] = 256
        c.attrs["patch_size_level0"] = patch_size_level0
        c.attrs["level0_magnification"] = 20
        c.attrs["target_magnification"] = magnification
        c.attrs["overlap"] = 0
        c.attrs["name"] = slide_id
