"""Linear probes: planted signal, rare labels, per-site fitting, agreement with lifelines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import ConfigError
from modaltune.evaluation.metrics import balanced_accuracy
from modaltune.evaluation.per_site import probe_metrics
from modaltune.evaluation.probes import PenalizedCox, fit_subtype_probe, fit_survival_probe


def _cohort(n, dim, seed, sites=("BRCA", "NSCLC"), rare_frac=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    site = np.asarray(sites)[rng.integers(0, len(sites), n)]
    w_cls, w_risk = rng.normal(size=dim), rng.normal(size=dim)
    y = (X @ w_cls > 0).astype(int)
    rare = rng.random(n) < rare_frac
    risk = X @ w_risk / np.sqrt(dim)
    t_event = rng.exponential(np.exp(-2.0 * risk) * 20)
    t_cens = rng.exponential(40, n)
    df = pd.DataFrame({"case_id": [f"C{i:03d}" for i in range(n)], "site": site, "subtype_index": np.where(rare, -1, y),
                       "rare": rare, "survival_months": np.minimum(t_event, t_cens),
                       "event": (t_event <= t_cens).astype(float), "has_survival": True})
    return X, df


def test_probes_find_planted_signal():
    X, df = _cohort(600, 16, seed=0)
    tr, te = np.arange(400), np.arange(400, 600)
    metrics, preds = probe_metrics(X[tr], X[te], df.iloc[tr], df.iloc[te], cfg={"eval": {"cph_penalizer": 0.1}},
                                   return_predictions=True)
    assert set(metrics) == {"BRCA", "NSCLC"}
    for site, m in metrics.items():
        assert m["balanced_accuracy"] > 0.8, (site, m)
        assert m["c_index"] > 0.7, (site, m)
        assert 0.6 < m["ipcw_c_index"] <= 1.0
        assert m["n"] == int((df.iloc[te].site == site).sum()) and m["n_events"] > 0
    assert list(preds.case_id) == list(df.case_id.iloc[te])
    assert {"risk", "pred_class", "subtype", "survival_months", "event"} <= set(preds)
    assert np.isfinite(preds.risk).all()
    # one argument order only: embeddings first, then frames
    with pytest.raises((TypeError, ValueError, AttributeError, KeyError)):
        probe_metrics(X[tr], df.iloc[tr], X[te], df.iloc[te])


def test_probes_on_high_dimensional_embeddings_with_few_patients():
    X, df = _cohort(90, 256, seed=1, sites=("BRCA",))
    tr, te = np.arange(60), np.arange(60, 90)
    m = probe_metrics(X[tr], X[te], df.iloc[tr], df.iloc[te])["BRCA"]
    assert np.isfinite(m["c_index"]) and np.isfinite(m["balanced_accuracy"])
    # the run config's eval.logreg_* reach the subtype probe
    with pytest.raises(ConfigError, match="logreg_c"):
        probe_metrics(X[tr], X[te], df.iloc[tr], df.iloc[te], cfg={"eval": {"logreg_c": -1}})
    cox = fit_survival_probe(X[tr], df.survival_months.iloc[tr], df.event.iloc[tr])
    assert cox.converged_ and np.isfinite(cox.coef_).all()


def test_rare_labels_are_ignored():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    y = (X[:, 0] > 0).astype(int)
    y_rare = y.copy()
    y_rare[:30] = -1
    probe = fit_subtype_probe(X, y_rare)
    assert set(probe.classes) == {0, 1}
    ref = fit_subtype_probe(X[30:], y[30:])
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(X))
    # one class only -> constant prediction, no crash
    assert set(fit_subtype_probe(X, np.zeros(100, int)).predict(X)) == {0}
    # three classes (liblinear is binary: one-vs-rest)
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    assert (fit_subtype_probe(X, y3).predict(X) == y3).mean() > 0.8


def test_subtype_probe_regularisation_and_class_weight():
    """Smaller C shrinks the coefficients; balanced class weights raise the minority-class recall
    on imbalanced, overlapping classes; bad values are config errors."""
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.15).astype(int)
    X = rng.normal(size=(n, 5))
    X[:, 0] += 1.0 * y
    coef = lambda p: np.abs(p.model.named_steps["clf"].coef_).sum()  # noqa: E731
    assert coef(fit_subtype_probe(X, y, C=0.01)) < 0.5 * coef(fit_subtype_probe(X, y, C=1.0))
    plain = fit_subtype_probe(X, y).predict(X)
    balanced = fit_subtype_probe(X, y, class_weight="balanced").predict(X)
    assert (balanced[y == 1] == 1).mean() > (plain[y == 1] == 1).mean() + 0.2
    assert balanced_accuracy(y, balanced) > balanced_accuracy(y, plain)
    with pytest.raises(ConfigError, match="logreg_c"):
        fit_subtype_probe(X, y, C=0.0)
    with pytest.raises(ConfigError, match="class_weight"):
        fit_subtype_probe(X, y, class_weight="inverse")


def test_per_site_probes_are_fitted_on_their_site():
    """A site whose label rule is inverted is only learnt if its probe uses its own patients."""
    rng = np.random.default_rng(2)
    n = 400
    X = rng.normal(size=(n, 3))
    site = np.where(np.arange(n) % 2 == 0, "A", "B")
    y = np.where(site == "A", X[:, 0] > 0, X[:, 0] < 0).astype(int)
    df = pd.DataFrame({"site": site, "subtype_index": y, "survival_months": rng.exponential(10, n),
                       "event": 1.0})
    m = probe_metrics(X[:300], X[300:], df.iloc[:300], df.iloc[300:])
    assert m["A"]["balanced_accuracy"] > 0.9 and m["B"]["balanced_accuracy"] > 0.9
    pooled = probe_metrics(X[:300], X[300:], df.iloc[:300], df.iloc[300:], per_site=False)
    assert set(pooled) == {"all"} and pooled["all"]["balanced_accuracy"] < 0.75
    # an evaluation site without training patients gets NaN and a note
    df2 = df.iloc[300:].copy()
    df2["site"] = "C"
    m2 = probe_metrics(X[:300], X[300:], df.iloc[:300], df2)
    assert math.isnan(m2["C"]["c_index"]) and "no training patients" in m2["C"]["notes"]


def test_penalized_cox_matches_lifelines():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(0)
    n, p = 120, 5
    X = rng.normal(size=(n, p)) * [1, 2, 0.5, 1, 3]
    t = rng.exponential(np.exp(-X[:, 0]))
    e = rng.random(n) < 0.6
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(p)]).assign(T=t, E=e.astype(int))
    ref = CoxPHFitter(penalizer=0.1).fit(df, "T", "E")
    ours = PenalizedCox(0.1).fit(X, t, e)
    np.testing.assert_allclose(ours.coef_ / ours.std_, ref.params_.to_numpy(), rtol=1e-4, atol=1e-5)
