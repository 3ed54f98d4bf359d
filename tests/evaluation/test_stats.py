"""Bootstrap CIs, paired bootstrap test and mean/std summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modaltune.errors import InputError
from modaltune.evaluation.metrics import balanced_accuracy, c_index
from modaltune.evaluation.stats import (
    bootstrap_ci,
    fold_bootstrap_ci,
    fold_summary,
    format_mean_std,
    mean_std,
    paired_bootstrap_test,
    wilcoxon_paired,
)


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
    assert format_mean_std([0.8, float("nan")]) == "0.800"          # one value: no "± 0.000"


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


# -- fold-level statistics ----------------------------------------------------------------------

def test_fold_summary_keeps_both_ddofs():
    s = fold_summary([0.6, 0.7, 0.8])
    assert s.mean == pytest.approx(0.7) and s.n == 3
    assert s.std == pytest.approx(0.1) and s.std_ddof0 == pytest.approx(0.1 * math.sqrt(2 / 3))
    assert fold_summary([0.6, 0.7, 0.8], ddof=0).std == pytest.approx(s.std_ddof0)
    one = fold_summary([0.5, float("nan"), None])
    assert one.mean == 0.5 and math.isnan(one.std) and one.std_ddof0 == 0.0 and one.n == 1
    empty = fold_summary([])
    assert empty.n == 0 and all(math.isnan(v) for v in empty[:3])


FISHER = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)


def test_wilcoxon_matches_scipy_and_a_known_example():
    from scipy.stats import wilcoxon

    res = wilcoxon_paired(FISHER + 1.0, np.ones(15))
    assert res.statistic == 24 and res.p_value == pytest.approx(0.041259765625)   # Fisher's data, exact
    assert res.method == "exact" and res.n_pairs == res.n_nonzero == 15 and res.reason is None
    rng = np.random.default_rng(0)
    a = rng.normal(size=70)
    b = a + rng.normal(0.3, 1, 70)
    approx = wilcoxon_paired(a, b)
    assert approx.method == "approx" and approx.p_value == pytest.approx(wilcoxon(a, b).pvalue)
    tied_a, tied_b = np.arange(6.0), np.arange(6.0) - [1, 1, 2, -2, 3, 1]            # tied |d|
    tied = wilcoxon_paired(tied_a, tied_b)
    assert tied.method == "permutation" and tied.p_value == pytest.approx(wilcoxon(tied_a, tied_b).pvalue)
    assert wilcoxon_paired(a[:20], b[:20], method="approx").p_value == pytest.approx(
        wilcoxon(a[:20], b[:20], method="asymptotic").pvalue)


def test_wilcoxon_is_symmetric_in_sign_and_pairs_by_fold():
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 10, 5))                 # sites x folds
    ab, ba = wilcoxon_paired(a, b), wilcoxon_paired(b, a)
    assert (ab.statistic, ab.p_value) == (ba.statistic, ba.p_value) and ab.n_pairs == 50
    flat = wilcoxon_paired(a.reshape(-1), b.reshape(-1))
    assert (flat.statistic, flat.p_value) == (ab.statistic, ab.p_value)
    five = wilcoxon_paired([0.70, 0.71, 0.72, 0.73, 0.74], [0.60, 0.62, 0.63, 0.61, 0.64])
    assert five.p_value == pytest.approx(0.0625)  # five folds cannot reach p < 0.05


def test_wilcoxon_undefined_and_bad_input():
    same = wilcoxon_paired([0.6, 0.7, 0.8], [0.6, 0.7, 0.8])
    assert math.isnan(same.p_value) and "0 non-zero" in same.reason and same.n_pairs == 3
    one = wilcoxon_paired([0.6, 0.7, float("nan")], [0.5, 0.7, 0.8])
    assert math.isnan(one.statistic) and one.n_pairs == 2 and one.n_nonzero == 1
    with pytest.raises(InputError, match="differ in shape"):
        wilcoxon_paired([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="method"):
        wilcoxon_paired([1.0, 2.0], [0.0, 0.0], method="normal")


def _folds(seed, k=3, n=30):
    return [_survival(n, seed * 10 + i) for i in range(k)]


def test_fold_bootstrap_ci_reproducible_and_labelled():
    folds = _folds(0)
    res = fold_bootstrap_ci(folds, n=60, seed=1)
    assert res == fold_bootstrap_ci(folds, n=60, seed=1)
    other = fold_bootstrap_ci(folds, n=60, seed=2)
    assert other.fold_mean.low != res.fold_mean.low and other.pooled.low != res.pooled.low
    fold_c = [c_index(*f) for f in folds]
    assert res.fold_mean.estimate == pytest.approx(np.mean(fold_c))
    assert res.fold_mean.low == pytest.approx(np.mean([ci.low for ci in res.per_fold]))
    assert res.fold_mean.high == pytest.approx(np.mean([ci.high for ci in res.per_fold]))
    pooled = [np.concatenate([f[i] for f in folds]) for i in range(3)]
    assert res.pooled.estimate == pytest.approx(c_index(*pooled))
    assert "mean over 3 folds" in res.fold_mean.label and "pooled" in res.pooled.label
    for ci in (res.fold_mean, res.pooled):
        assert ci.low <= ci.estimate <= ci.high
    # a fold's interval depends only on its own patients
    changed = [folds[0], _survival(30, 99), folds[2]]
    assert fold_bootstrap_ci(changed, n=60, seed=1).per_fold[0] == res.per_fold[0]


def test_fold_bootstrap_redraws_resamples_without_events():
    t = np.arange(1.0, 13.0)
    e = np.zeros(12, bool)
    e[[0, 5]] = True                             # ~11 % of plain resamples would hold no event
    seen = []

    def metric(time, event, risk):
        seen.append(bool(event.any()))
        return c_index(time, event, risk)

    fold_bootstrap_ci([(t, e, -t)], n=200, seed=0, metric=metric)
    assert len(seen) == 2 * (200 + 1) and all(seen)   # fold + pooled: estimate and 200 resamples each
    with pytest.raises(InputError, match="no event"):
        fold_bootstrap_ci([(t, e, -t), (t, np.zeros(12), -t)], n=10)
    with pytest.raises(InputError, match="differ in length"):
        fold_bootstrap_ci([(t, e, -t[:5])], n=10)
    with pytest.raises(InputError):
        fold_bootstrap_ci([], n=10)
