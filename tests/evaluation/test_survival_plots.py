"""Kaplan-Meier plot of median-split risk groups with a log-rank test."""

from __future__ import annotations

import numpy as np

from modaltune.evaluation.survival_plots import kaplan_meier_plot, kaplan_meier_summary


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
