"""Kaplan-Meier plot of risk groups (test median or training-median threshold) with a log-rank test."""

from __future__ import annotations

import numpy as np
import pytest

from modaltune.errors import InputError
from modaltune.evaluation.survival_plots import (
    KMFold,
    kaplan_meier_folds,
    kaplan_meier_plot,
    kaplan_meier_summary,
    median_split,
    training_threshold,
)


def test_km_plot_separated_groups(tmp_path):
    rng = np.random.default_rng(0)
    n = 80
    risk = np.r_[np.ones(n // 2), np.zeros(n // 2)] + rng.normal(0, 0.01, n)
    t = np.r_[rng.exponential(5, n // 2), rng.exponential(50, n // 2)]
    e = rng.random(n) < 0.8
    path = tmp_path / "figs" / "km.png"
    p = kaplan_meier_plot(t, e, risk, path, title="BRCA")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert p < 1e-4
    s = kaplan_meier_summary(t, e, risk)
    assert s["n_high"] == s["n_low"] == n // 2 and s["p_value"] == p and s["path"] is None


def test_km_plot_no_signal(tmp_path):
    rng = np.random.default_rng(1)
    n = 80
    t = rng.exponential(10, n)
    e = rng.random(n) < 0.7
    p = kaplan_meier_plot(t, e, rng.normal(size=n), tmp_path / "km.png", title="random")
    assert p > 0.01
    # constant risk: one group is empty -> NaN, still a figure
    p_const = kaplan_meier_plot(t, e, np.zeros(n), tmp_path / "km_const.png")
    assert np.isnan(p_const) and (tmp_path / "km_const.png").exists()


def _fold(seed, n_train=60, n_test=20):
    rng = np.random.default_rng(seed)
    train_risk = rng.normal(size=n_train)
    risk = rng.normal(size=n_test)
    t = rng.exponential(np.exp(-2 * risk))
    e = rng.random(n_test) < 0.8
    return KMFold(train_risk, t, e, risk)


def test_explicit_threshold_replaces_the_test_median():
    f = _fold(0)
    default = kaplan_meier_summary(f.time, f.event, f.risk)
    assert default["threshold"] == default["median_risk"] == np.median(f.risk)
    assert default["threshold_source"] == "median risk of these patients"
    thr = training_threshold(f.train_risk)
    assert thr == np.median(f.train_risk)
    given = kaplan_meier_summary(f.time, f.event, f.risk, threshold=thr)
    assert given["threshold"] == thr and given["threshold_source"] == "given"
    assert given["n_high"] == int(np.sum(f.risk > thr))
    assert median_split(f.risk, thr).tolist() == (f.risk > thr).tolist()


def test_kaplan_meier_folds_uses_training_medians_and_pools_test_folds(tmp_path):
    folds = [_fold(k) for k in range(3)]
    s = kaplan_meier_folds(folds, tmp_path / "km_pooled.png", title="pooled")
    assert s["thresholds"] == [np.median(f.train_risk) for f in folds] and s["n_folds"] == 3
    assert s["n_high"] == sum(int(np.sum(f.risk > np.median(f.train_risk))) for f in folds)
    assert s["n_high"] + s["n_low"] == 60 and "training" in s["threshold_source"]
    assert 0 <= s["p_value"] < 0.05 and (tmp_path / "km_pooled.png").exists()
    # test patients never change a threshold: shift and rescale every test risk and time
    moved = [KMFold(f.train_risk, f.time * 3, ~f.event, f.risk * 10 + 5) for f in folds]
    assert kaplan_meier_folds(moved)["thresholds"] == s["thresholds"]
    # ... while the training risks do
    shifted = [KMFold(f.train_risk + 1, f.time, f.event, f.risk) for f in folds]
    assert kaplan_meier_folds(shifted)["thresholds"] == pytest.approx([x + 1 for x in s["thresholds"]])


def test_kaplan_meier_folds_bad_input():
    f = _fold(0)
    with pytest.raises(InputError, match="training risk"):
        kaplan_meier_folds([KMFold(np.full(3, np.nan), f.time, f.event, f.risk)])
    with pytest.raises(InputError, match="differ in length"):
        kaplan_meier_folds([KMFold(f.train_risk, f.time[:5], f.event, f.risk)])
    with pytest.raises(InputError):
        kaplan_meier_folds([])


def test_figure_carries_numbers_at_risk_c_index_and_threshold_origin(tmp_path, monkeypatch):
    from modaltune.evaluation import survival_plots
    from modaltune.evaluation.metrics import c_index

    rng = np.random.default_rng(3)
    n = 40
    risk = rng.normal(size=n)
    t = rng.exponential(20, n)
    e = rng.random(n) < 0.7
    assert survival_plots.at_risk_counts(np.array([1.0, 5.0, 9.0]), np.array([True, True, False]), [0, 2, 6]) \
        == [2, 1, 0]
    texts: list[str] = []
    real_savefig = None

    def spy(self, *a, **k):            # collect every text drawn on the figure before it is saved
        texts.extend(txt.get_text() for ax in self.axes for txt in ax.texts + [ax.title])
        texts.extend(txt.get_text() for txt in self.texts)
        return real_savefig(self, *a, **k)

    from matplotlib.figure import Figure
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", spy)
    s = kaplan_meier_summary(t, e, risk, tmp_path / "km.png", title="S1 (test)")
    assert s["c_index"] == pytest.approx(c_index(t, e, risk))
    joined = "\n".join(texts)
    assert "numbers at risk" in joined and str(n // 2) in texts          # at time 0 each half is at risk
    assert f"C-index = {s['c_index']:.3f}" in joined and "log-rank p" in joined
    assert "the median risk of these (test) patients" in joined
    texts.clear()
    kaplan_meier_summary(t, e, risk, tmp_path / "km2.png", threshold=0.1, threshold_source="median training risk")
    assert "risk > 0.1 (median training risk)" in "\n".join(texts)
