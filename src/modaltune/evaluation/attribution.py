"""Exact Shapley values over a few players (modalities or expert groups) and their per-patient shares.

MICE reports "modality contributions per cohort" by SHAP (spec (f), Interpretability). With three
modalities (report, pathology, genomics) or a handful of expert groups, the Shapley value can be
computed *exactly* by evaluating the model on all 2^n coalitions, so no sampling noise or kernel
approximation enters the table:

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + {i}) - v(S)).

What "absent" means is the caller's choice, made inside ``value``, and it changes the numbers:
for MICE a modality outside the coalition is replaced by the model's own synthesised token (the
path a patient without that modality takes; 8 forward passes per patient for 3 modalities), and
an expert group outside the coalition has its output replaced by its training mean. ``value`` may
return one number (e.g. the cohort C-index) or one value per patient (e.g. each patient's risk),
in which case every Shapley value is a per-patient array.

:func:`shapley_shares` turns per-patient values into shares of absolute contribution that sum to 1,
and :func:`shares_by_group` averages them per site for a "modality contribution per site" table.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["shapley_values", "shapley_shares", "shares_by_group", "MAX_PLAYERS"]

MAX_PLAYERS = 16  # 2^16 = 65,536 model evaluations; beyond that group the players


def _check_players(players: Sequence[str]) -> list[str]:
    players = list(players)
    if not players:
        raise InputError("Shapley values need at least one player", fix="pass the modality or group names")
    if len(set(players)) != len(players):
        raise InputError(f"duplicate players: {players}", fix="name every modality or group once")
    if len(players) > MAX_PLAYERS:
        raise InputError(f"{len(players)} players need 2^{len(players)} model evaluations",
                         fix=f"group them into at most {MAX_PLAYERS} players (e.g. expert groups)")
    return players


def shapley_values(players: Sequence[str], value: Callable[[frozenset[str]], float | np.ndarray]
                   ) -> dict[str, float | np.ndarray]:
    """Exact Shapley value of every player, by enumerating all 2^n coalitions.

    ``value`` is called exactly once per coalition (results are cached), so it may be an expensive
    model evaluation. The values satisfy efficiency: their sum equals ``v(all) - v(empty)``.

    Args:
        players: distinct names of the players (at most :data:`MAX_PLAYERS`).
        value: ``value(coalition) -> float | array``; ``coalition`` is the frozenset of *present*
            players, the others must be made absent by the caller (e.g. MICE's synthesised token).
            Every call must return the same shape (e.g. one value per patient, in a fixed order).

    Returns:
        ``{player: phi}``; ``phi`` is a float for a scalar game, else an array of the value's shape.

    Raises:
        InputError: no or duplicate players, too many players, values of different shapes, or a
            non-finite value.
    """
    players = _check_players(players)
    n = len(players)
    masks = np.arange(2 ** n)
    cache: dict[int, np.ndarray] = {}
    for m in masks.tolist():
        coalition = frozenset(p for i, p in enumerate(players) if m >> i & 1)
        v = np.asarray(value(coalition), dtype=float)
        if m and v.shape != cache[0].shape:
            raise InputError(f"value({sorted(coalition)}) has shape {v.shape}, value(empty) has {cache[0].shape}",
                             fix="return one number, or one value per patient in a fixed order, for every coalition")
        if not np.all(np.isfinite(v)):
            raise InputError(f"value({sorted(coalition)}) is not finite",
                             fix="check the model's output with those players absent")
        cache[m] = v
    V = np.stack([cache[m] for m in masks.tolist()])
    sizes = np.array([bin(m).count("1") for m in masks.tolist()])
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    out: dict[str, float | np.ndarray] = {}
    for i, p in enumerate(players):
        without = masks[(masks >> i & 1) == 0]
        phi = np.tensordot(weight[sizes[without]], V[without | (1 << i)] - V[without], axes=1)
        out[p] = float(phi) if phi.ndim == 0 else phi
    return out


def shapley_shares(values: Mapping[str, float | np.ndarray]) -> dict[str, float | np.ndarray]:
    """Shares of absolute contribution per patient: ``|phi_i| / sum_j |phi_j|``.

    Signs are dropped on purpose: a modality that lowers one patient's risk and raises another's
    matters in both. The shares of a patient sum to 1; they are NaN for a patient whose Shapley
    values are all 0 (nothing to share).

    Args:
        values: ``{player: phi}`` as returned by :func:`shapley_values` (floats or equal-shape arrays).

    Returns:
        ``{player: share}`` with the shapes of ``values``.

    Raises:
        InputError: no player, or values of different shapes.
    """
    if not values:
        raise InputError("no Shapley values to normalise", fix="pass the output of shapley_values")
    names = list(values)
    arrs = [np.asarray(values[k], dtype=float) for k in names]
    if any(a.shape != arrs[0].shape for a in arrs):
        raise InputError(f"Shapley values differ in shape: {[a.shape for a in arrs]}",
                         fix="pass the values of one game (one value per patient for every player)")
    A = np.abs(np.stack(arrs))
    total = A.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(total > 0, A / np.where(total > 0, total, 1.0), np.nan)
    return {k: float(s) if s.ndim == 0 else s for k, s in zip(names, S)}


def shares_by_group(shares: Mapping[str, np.ndarray], groups: Sequence) -> dict[object, dict[str, float]]:
    """Mean share of every player per group (e.g. per site): the "modality contribution per site" table.

    Args:
        shares: per-patient shares from :func:`shapley_shares` (arrays of length n).
        groups: group label (site) of each of the n patients.

    Returns:
        ``{group: {player: mean share}}``; patients with NaN shares (all-zero contributions) are
        left out of the mean; a group where every share is NaN gets NaN.

    Raises:
        InputError: shares and groups differ in length.
    """
    g = np.asarray(groups).reshape(-1)
    table: dict[object, dict[str, float]] = {}
    for k, s in shares.items():
        s = np.asarray(s, dtype=float).reshape(-1)
        if s.shape != g.shape:
            raise InputError(f"shares of {k!r} ({s.size}) and groups ({g.size}) differ in length",
                             fix="pass one group label per patient, in the order of the shares")
        for label in np.unique(g):
            vals = s[g == label]
            vals = vals[np.isfinite(vals)]
            key = label.item() if isinstance(label, np.generic) else label
            table.setdefault(key, {})[k] = float(vals.mean()) if vals.size else float("nan")
    return table
