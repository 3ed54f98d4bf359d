"""Fixed-size bags: official resampling lists and (y, x) raster order (disentangled.md (b) Inputs, (j) 5)."""

import numpy as np
import pytest

from modaltune.data.fixed_bags import fixed_bag, raster_order, resample_indices
from modaltune.errors import ConfigError, InputError


def official(n, size):
    """The official list, written as loops the way the conference code builds it."""
    out = []
    if n <= size:
        times, remaining = size // n, size % n
        for _ in range(times):
            out += list(range(n))
        out += list(range(remaining))
    else:
        for i in range(size):
            out.append(int(np.around(i * (n / size))))
    return out


@pytest.mark.parametrize("n", [1, 7, 2499, 2500, 2501, 2513, 9000])
def test_resample_matches_official(n):
    idx = resample_indices(n, 2500)
    assert idx.dtype == np.int64 and idx.shape == (2500,)
    assert idx.tolist() == official(n, 2500)


def test_resample_known_values():
    assert resample_indices(9000, 2500)[:5].tolist() == [0, 4, 7, 11, 14]
    assert resample_indices(9000, 2500)[-1] == 8996
    seven = resample_indices(7, 2500)
    assert seven[:8].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    assert seven[-3:].tolist() == [5, 6, 0]  # 2500 = 357 * 7 + 1: the last entry starts a new copy
    assert np.bincount(seven).tolist() == [358] + [357] * 6
    assert resample_indices(2500, 2500).tolist() == list(range(2500))
    # i * (2501 / 2500) is (about) 1250.5 at i = 1250: np.around gives 1250, then 1251.5 -> 1252
    assert resample_indices(2501, 2500)[1250] == 1250 and resample_indices(2501, 2500)[1251] == 1252


def test_evaluation_order_matters_and_follows_official():
    # i * (n / size) and i * n / size round differently for n = 2513; we follow the official form
    i = np.arange(2500)
    assert not np.array_equal(np.around(i * (2513 / 2500)), np.around(i * 2513 / 2500))
    assert resample_indices(2513, 2500).tolist() == [int(v) for v in np.around(i * (2513 / 2500))]


def test_raster_order_y_then_x_then_index():
    coords = np.array([[512, 0], [0, 256], [256, 0], [0, 0], [256, 256], [256, 0]])  # (x, y)
    order = raster_order(coords)
    assert order.tolist() == [3, 2, 5, 0, 1, 4]
    sorted_coords = coords[order]
    keys = [(y, x) for x, y in sorted_coords]
    assert keys == sorted(keys)


def test_fixed_bag_orders_then_resamples():
    rng = np.random.default_rng(0)
    side = 5
    xs, ys = np.meshgrid(np.arange(side) * 224, np.arange(side) * 224)
    coords = np.stack([xs.ravel(), ys.ravel()], 1)
    perm = rng.permutation(side * side)
    coords = coords[perm]
    feats = rng.normal(size=(side * side, 3))
    out, out_coords, source = fixed_bag(feats, coords, grid=4)  # 25 -> 16 patches
    assert out.shape == (16, 3) and out_coords.shape == (16, 2) and source.shape == (16,)
    order = raster_order(coords)
    assert source.tolist() == order[official(25, 16)].tolist()
    np.testing.assert_array_equal(out, feats[source])
    np.testing.assert_array_equal(out_coords, coords[source])
    keys = [(y, x) for x, y in out_coords]
    assert keys == sorted(keys)  # still a raster scan after striding
    # deterministic
    again = fixed_bag(feats, coords, grid=4)
    assert np.array_equal(again[2], source)


def test_fixed_bag_without_coords_keeps_list_order_and_repeats():
    feats = np.arange(6, dtype=float)[:, None]
    out, out_coords, source = fixed_bag(feats, None, grid=3)
    assert out_coords is None
    assert source.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2]
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2]


def test_errors():
    with pytest.raises(InputError, match="empty"):
        fixed_bag(np.zeros((0, 4)), np.zeros((0, 2)), grid=2)
    with pytest.raises(InputError, match="empty"):
        resample_indices(0, 4)
    with pytest.raises(InputError, match="coords"):
        fixed_bag(np.zeros((3, 4)), np.zeros((2, 2)), grid=2)
    with pytest.raises(InputError):
        raster_order(np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        fixed_bag(np.zeros((3, 4)), None, grid=0)
