"""The Cox probe's ridge penalty chosen on the validation patients (``eval.cph_penalizer: auto``).

The paper fixes lifelines' ``penalizer=0.1`` for its Cox probes, on TCGA sites with several hundred
training patients. On a site with ~120 training patients and a 128-256-d embedding that penalty
lets the probe fit the training patients almost perfectly (training C-index 0.83-0.85 against
0.59-0.62 on validation in the issue-15 runs of ``benchmarks/README.md``), and the test C-index
suffers from the probe, not from the embedding. With ``auto`` every candidate of
``eval.cph_penalizer_grid`` is fitted on the training patients of each site and scored on that
site's validation patients; the candidate with the best mean validation C-index over the sites is
used for every site (one choice per run: a validation split of ~20 patients a site is too small to
choose per site). Ties go to the larger penalty. The test split plays no part. Without
validation patients the paper's 0.1 is used and the metrics say so.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .metrics import c_index
from .probes import fit_survival_probe

__all__ = ["PAPER_PENALIZER", "DEFAULT_GRID", "penalizer_setting", "choose_penalizer"]

PAPER_PENALIZER = 0.1
DEFAULT_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def penalizer_setting(ev: Mapping) -> tuple[float | str, tuple[float, ...]]:
    """``(eval.cph_penalizer, eval.cph_penalizer_grid)`` checked: a positive number or ``auto``, and a
    non-empty list of positive numbers."""
    value = ev.get("cph_penalizer", PAPER_PENALIZER)
    grid = ev.get("cph_penalizer_grid")
    grid = DEFAULT_GRID if grid is None else grid
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__iter__"):
        raise ConfigError(f"eval.cph_penalizer_grid must be a list of positive numbers, got {grid!r}")
    try:
        grid = tuple(float(g) for g in grid)
    except (TypeError, ValueError):
        raise ConfigError(f"eval.cph_penalizer_grid must be a list of positive numbers, got {grid!r}") from None
    if not grid or any(not np.isfinite(g) or g <= 0 for g in grid):
        raise ConfigError(f"eval.cph_penalizer_grid must be a list of positive numbers, got {list(grid)}")
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto", grid
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ConfigError(f"eval.cph_penalizer must be a non-negative number or 'auto', got {value!r}")
    return float(value), grid


def _site_arrays(df: pd.DataFrame):
    from .per_site import survival_arrays

    t, e, has = survival_arrays(df)
    return df["site"].astype(str).to_numpy(), t, e, has


def choose_penalizer(emb_train, emb_val, df_train: pd.DataFrame, df_val: pd.DataFrame,
                     grid: Sequence[float] = DEFAULT_GRID) -> tuple[float | None, dict[float, float]]:
    """The grid value with the best mean validation C-index over sites (see the module docstring).

    Returns ``(penalizer, {candidate: mean validation C-index})``; the penalizer is None when no
    site has both training events and two validation patients with survival (nothing to choose on).
    """
    Xtr = np.asarray(emb_train, dtype=np.float64).reshape(len(df_train), -1)
    Xva = np.asarray(emb_val, dtype=np.float64).reshape(len(df_val), -1)
    s_tr, t_tr, e_tr, h_tr = _site_arrays(df_train)
    s_va, t_va, e_va, h_va = _site_arrays(df_val)
    scores: dict[float, float] = {}
    for pen in grid:
        per_site = []
        for site in dict.fromkeys(s_va):
            tr, va = (s_tr == site) & h_tr, (s_va == site) & h_va
            if tr.sum() < 2 or not e_tr[tr].any() or va.sum() < 2 or not e_va[va].any():
                continue
            cox = fit_survival_probe(Xtr[tr], t_tr[tr], e_tr[tr], penalizer=float(pen))
            c = c_index(t_va[va], e_va[va], cox.predict(Xva[va]))
            if np.isfinite(c):
                per_site.append(c)
        scores[float(pen)] = float(np.mean(per_site)) if per_site else float("nan")
    finite = {p: s for p, s in scores.items() if np.isfinite(s)}
    if not finite:
        return None, scores
    best = max(finite.values())
    return max(p for p, s in finite.items() if s == best), scores
