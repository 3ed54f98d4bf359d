"""Exact Shapley values: efficiency, symmetry, null player, additivity, a hand-computed game, shares."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from modaltune.errors import InputError
from modaltune.evaluation.attribution import shapley_shares, shapley_values, shares_by_group

PLAYERS = ["report", "pathology", "genomics", "expert"]


def _random_game(seed, n_patients=5):
    rng = np.random.default_rng(seed)
    table = {frozenset(c): rng.normal(size=n_patients)
             for r in range(len(PLAYERS) + 1) for c in itertools.combinations(PLAYERS, r)}
    return table.__getitem__, table


@pytest.mark.parametrize("seed", [0, 1])
def test_efficiency_and_one_call_per_coalition(seed):
    game, table = _random_game(seed)
    calls = []
    phi = shapley_values(PLAYERS, lambda s: calls.append(s) or game(s))
    assert len(calls) == 2 ** 4 and len(set(calls)) == 2 ** 4          # each coalition once (cached)
    total = sum(phi.values())
    np.testing.assert_allclose(total, table[frozenset(PLAYERS)] - table[frozenset()], atol=1e-12)
    assert all(v.shape == (5,) for v in phi.values())


def test_hand_computed_two_player_game():
    v = {frozenset(): 0.0, frozenset("A"): 1.0, frozenset("B"): 2.0, frozenset("AB"): 4.0}
    phi = shapley_values(["A", "B"], v.__getitem__)
    assert phi == pytest.approx({"A": 0.5 * 1 + 0.5 * (4 - 2), "B": 0.5 * 2 + 0.5 * (4 - 1)})
    assert isinstance(phi["A"], float)


def test_symmetric_players_get_equal_values_and_majority_game():
    def game(s):
        return 3.0 * len(s & {"report", "pathology"}) ** 2 + (1.5 if "genomics" in s else 0.0)

    phi = shapley_values(PLAYERS[:3], game)
    assert phi["report"] == pytest.approx(phi["pathology"])
    assert phi["genomics"] == pytest.approx(1.5)
    majority = shapley_values(PLAYERS[:3], lambda s: float(len(s) >= 2))
    assert all(v == pytest.approx(1 / 3) for v in majority.values())


def test_null_player_gets_zero():
    game, _ = _random_game(3)
    phi = shapley_values(PLAYERS, lambda s: game(s - {"expert"}))        # "expert" never matters
    np.testing.assert_allclose(phi["expert"], 0.0, atol=1e-12)
    assert np.abs(phi["report"]).max() > 0


def test_additive_game_gives_each_player_its_contribution():
    rng = np.random.default_rng(0)
    own = {p: rng.normal(size=7) for p in PLAYERS}
    base = rng.normal(size=7)
    phi = shapley_values(PLAYERS, lambda s: base + sum((own[p] for p in s), np.zeros(7)))
    for p in PLAYERS:
        np.testing.assert_allclose(phi[p], own[p], atol=1e-12)


def test_bad_players_and_values():
    with pytest.raises(InputError, match="duplicate"):
        shapley_values(["a", "a"], lambda s: 0.0)
    with pytest.raises(InputError):
        shapley_values([], lambda s: 0.0)
    with pytest.raises(InputError, match="2\\^17"):
        shapley_values([str(i) for i in range(17)], lambda s: 0.0)
    with pytest.raises(InputError, match="shape"):
        shapley_values(["a", "b"], lambda s: np.zeros(len(s) + 1))
    with pytest.raises(InputError, match="not finite"):
        shapley_values(["a", "b"], lambda s: float("nan") if s == {"a"} else 0.0)


def test_shares_sum_to_one_drop_signs_and_nan_when_nothing_to_share():
    phi = {"report": np.array([1.0, -2.0, 0.0]), "pathology": np.array([3.0, 2.0, 0.0])}
    s = shapley_shares(phi)
    np.testing.assert_allclose(s["report"][:2], [0.25, 0.5])
    np.testing.assert_allclose(s["report"][:2] + s["pathology"][:2], 1.0)
    assert math.isnan(s["report"][2]) and math.isnan(s["pathology"][2])
    assert shapley_shares({"a": -1.0, "b": 3.0}) == pytest.approx({"a": 0.25, "b": 0.75})
    with pytest.raises(InputError):
        shapley_shares({"a": np.zeros(2), "b": np.zeros(3)})


def test_shares_by_group():
    shares = {"report": np.array([0.2, 0.4, np.nan, 1.0]), "genomics": np.array([0.8, 0.6, np.nan, 0.0])}
    table = shares_by_group(shares, ["BRCA", "BRCA", "LUAD", "KIRC"])
    assert table["BRCA"] == pytest.approx({"report": 0.3, "genomics": 0.7})
    assert math.isnan(table["LUAD"]["report"]) and table["KIRC"]["report"] == 1.0
    with pytest.raises(InputError, match="differ in length"):
        shares_by_group(shares, ["BRCA"])
