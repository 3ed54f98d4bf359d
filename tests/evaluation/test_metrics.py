"""Metrics against slow reference implementations and lifelines / scikit-survival."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines.utils import concordance_index

from modaltune.evaluation.metrics import balanced_accuracy, c_index, ipcw_c_index, ipcw_c_index_detail


def _slow_c_index(t, e, r):
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if i != j and (t[i] < t[j] or (t[i] == t[j] and not e[j])):
                den += 1
                num += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return num / den


def _slow_balanced_accuracy(y, p):
    recalls = []
    for c in sorted(set(y) - {-1}):
        idx = [i for i in range(len(y)) if y[i] == c]
        recalls.append(sum(p[i] == c for i in idx) / len(idx))
    return sum(recalls) / len(recalls)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_c_index_matches_reference_and_lifelines(seed):
    rng = np.random.default_rng(seed)
    n = 120
    t = np.round(rng.exponential(10, n), 0)          # many tied times
    e = rng.random(n) < 0.6
    r = np.round(rng.normal(size=n), 1)               # tied risks
    ours = c_index(t, e, r)
    assert ours == pytest.approx(_slow_c_index(t, e, r), abs=1e-12)
    assert ours == pytest.approx(concordance_index(t, -r, e), abs=1e-12)


def test_c_index_direction_and_edge_cases():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([1, 1, 1, 1])
    assert c_index(t, e, -t) == 1.0          # higher risk = earlier death
    assert c_index(t, e, t) == 0.0
    assert c_index(t, e, np.zeros(4)) == 0.5
    assert math.isnan(c_index(t, np.zeros(4), -t))   # no event: no comparable pair
    with pytest.raises(ValueError):
        c_index(t, e, [1.0, 2.0])


def test_balanced_accuracy_matches_manual_and_ignores_rare():
    rng = np.random.default_rng(0)
    y = rng.integers(-1, 3, 200)
    p = rng.integers(0, 3, 200)
    assert balanced_accuracy(y, p) == pytest.approx(_slow_balanced_accuracy(list(y), list(p)))
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx(0.5)
    assert math.isnan(balanced_accuracy([-1, -1], [0, 1]))


def test_ipcw_c_index():
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    n = 150
    x = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-x) * 10)
    t_cens = rng.exponential(15, n)
    t = np.minimum(t_event, t_cens)
    e = t_event <= t_cens
    tr, te = slice(0, 100), slice(100, None)
    value = ipcw_c_index(t[tr], e[tr], t[te], e[te], x[te])
    tau = t[tr].max()
    ref = concordance_index_ipcw(Surv.from_arrays(e[tr], t[tr]), Surv.from_arrays(e[te], t[te]), x[te], tau=tau)[0]
    assert value == pytest.approx(ref)
    assert 0.6 < value <= 1.0
    # evaluation times beyond the training follow-up are truncated, not an error
    t2 = t[te].copy()
    t2[0] = tau * 10
    assert np.isfinite(ipcw_c_index(t[tr], e[tr], t2, e[te], x[te]))
    # no evaluation event -> NaN with a reason
    v, why = ipcw_c_index_detail(t[tr], e[tr], t[te], np.zeros(50, bool), x[te])
    assert math.isnan(v) and "no evaluation event" in why


