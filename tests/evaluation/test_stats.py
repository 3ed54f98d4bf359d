"""Bootstrap CIs, paired bootstrap test and mean/std summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modaltune.evaluation.metrics import balanced_accuracy, c_index
from modaltune.evaluation.stats import bootstrap_ci, format_mean_std, mean_std, paired_bootstrap_test


def _survival(n, seed, signal=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-signal * x))
    e = rng.random(n) < 0.7
    return t, e, x


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, float("nan"), 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert all(math.isnan(v) for v in mean_std([]))
    assert format_mean_std([0.8, 0.9]) == "0.850 ± 0.071"
    assert format_mean_std([float("nan")]) == "n/a"


def test_bootstrap_ci_contains_estimate_and_shrinks():
    widths = []
    for n in (60, 600):
        t, e, x = _survival(n, seed=n)
        est, lo, hi = bootstrap_ci(c_index, t, e, x, n=200, seed=0)
        assert est == pytest.approx(c_index(t, e, x))
        assert lo <= est <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] * 0.6
    # same seed, same interval; n_boot alias
    t, e, x = _survival(80, 1)
    assert bootstrap_ci(c_index, t, e, x, n=100, seed=3) == bootstrap_ci(c_index, t, e, x, n_boot=100, seed=3)


def test_bootstrap_skips_degenerate_resamples():
    y = np.array([0] * 19 + [1])             # many resamples lack class 1 -> still defined here
    p = np.array([0] * 19 + [1])
    est, lo, hi = bootstrap_ci(balanced_accuracy, y, p, n=100, seed=0)
    assert est == 1.0 and lo == hi == 1.0
    e = np.zeros(20)
    e[0] = 1
    t = np.arange(20.0)
    est, lo, hi = bootstrap_ci(c_index, t, e, -t, n=200, seed=0)   # resamples without the event are NaN
    assert est == 1.0 and lo == 1.0


def test_paired_bootstrap_test():
    t, e, x = _survival(200, seed=5, signal=1.5)
    noise = np.random.default_rng(9).normal(size=200)
    p_better = paired_bootstrap_test(c_index, (t, e, x), (t, e, noise), n=300, seed=0)
    assert p_better < 0.01
    p_same = paired_bootstrap_test(c_index, (t, e, x), (t, e, x.copy()), n=300, seed=0)
    assert p_same == 1.0
    p_order = paired_bootstrap_test(c_index, (t, e, noise), (t, e, x), n=300, seed=0)
    assert p_order < 0.01
    with pytest.raises(ValueError):
        paired_bootstrap_test(c_index, (t, e, x), (t[:10], e[:10], x[:10]))
