"""The Cox probe's penalty chosen on validation patients (``eval.cph_penalizer: auto``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import ConfigError
from modaltune.evaluation.metrics import c_index
from modaltune.evaluation.per_site import probe_metrics
from modaltune.evaluation.probe_penalty import choose_penalizer, penalizer_setting
from modaltune.evaluation.probes import fit_survival_probe


def _cohort(n, dim, seed, site="A"):
    """Risk in one direction of a wide embedding; few patients per dimension, so a weak penalty overfits."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    risk = x[:, 0]
    t = rng.exponential(np.exp(-risk)) * 30
    c = rng.exponential(30, size=n)
    df = pd.DataFrame({"site": site, "survival_months": np.minimum(t, c), "event": (t <= c).astype(int),
                       "subtype_index": rng.integers(0, 2, n), "has_survival": True})
    return x, df


def test_choice_is_the_best_validation_candidate_and_ignores_test():
    xtr, dtr = _cohort(60, 40, 0)
    xva, dva = _cohort(40, 40, 1)
    grid = (0.01, 0.1, 1.0, 10.0)
    chosen, scores = choose_penalizer(xtr, xva, dtr, dva, grid)
    for pen in grid:         # slow reference: one fit per candidate, scored on validation
        cox = fit_survival_probe(xtr, dtr["survival_months"], dtr["event"], penalizer=pen)
        expect = c_index(dva["survival_months"].to_numpy(), dva["event"].to_numpy() > 0, cox.predict(xva))
        assert scores[pen] == pytest.approx(expect)
    assert chosen == max(p for p in grid if scores[p] == max(scores.values()))
    xte, dte = _cohort(50, 40, 2)
    cfg = {"eval": {"cph_penalizer": "auto", "cph_penalizer_grid": list(grid)}}
    m1 = probe_metrics(xtr, xte, dtr, dte, cfg=cfg, val=(xva, dva))
    shuffled = dte.assign(survival_months=dte["survival_months"].sample(frac=1, random_state=0).to_numpy())
    m2 = probe_metrics(xtr, xte, dtr, shuffled, cfg=cfg, val=(xva, dva))
    assert m1["A"]["cph_penalizer"] == m2["A"]["cph_penalizer"] == chosen      # test labels never choose


def test_one_choice_for_all_sites_by_mean_validation_c_index():
    parts = [_cohort(50, 30, s, site) for s, site in ((0, "A"), (1, "B"))]
    vals = [_cohort(30, 30, s + 10, site) for s, site in ((0, "A"), (1, "B"))]
    xtr, dtr = np.concatenate([p[0] for p in parts]), pd.concat([p[1] for p in parts], ignore_index=True)
    xva, dva = np.concatenate([p[0] for p in vals]), pd.concat([p[1] for p in vals], ignore_index=True)
    chosen, scores = choose_penalizer(xtr, xva, dtr, dva, (0.1, 1.0))
    per_site = {p: [choose_penalizer(xtr[dtr.site == s], xva[dva.site == s], dtr[dtr.site == s],
                                     dva[dva.site == s], (p,))[1][p] for s in "AB"] for p in (0.1, 1.0)}
    assert scores == pytest.approx({p: float(np.mean(v)) for p, v in per_site.items()})
    m = probe_metrics(xtr, xva, dtr, dva, cfg={"eval": {"cph_penalizer": "auto", "cph_penalizer_grid": [0.1, 1.0]}},
                      val=(xva, dva))
    assert m["A"]["cph_penalizer"] == m["B"]["cph_penalizer"] == chosen


def test_without_validation_auto_falls_back_to_the_paper_value_and_says_so():
    xtr, dtr = _cohort(40, 5, 0)
    m = probe_metrics(xtr, xtr, dtr, dtr, cfg={"eval": {"cph_penalizer": "auto"}})
    assert m["A"]["cph_penalizer"] == 0.1 and "paper's 0.1 used" in m["A"]["notes"]
    fixed = probe_metrics(xtr, xtr, dtr, dtr, cfg={"eval": {"cph_penalizer": 0.3}})
    assert fixed["A"]["cph_penalizer"] == 0.3 and "notes" not in fixed["A"]


@pytest.mark.parametrize("ev", [{"cph_penalizer": "often"}, {"cph_penalizer": -1}, {"cph_penalizer_grid": []},
                                {"cph_penalizer_grid": [0.1, -2]}, {"cph_penalizer_grid": ["x"]}])
def test_bad_settings_are_config_errors(ev):
    with pytest.raises(ConfigError, match="cph_penalizer"):
        penalizer_setting(ev)
