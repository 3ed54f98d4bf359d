"""Survival bins (ModalTune Sec. 8, Table 5): quantile edges of survival months, and bin lookup.

The survival prompt says "died between 15 and 27 months", so continuous times are cut into a few
bins. :func:`fit_survival_bins` takes quantiles of the survival months of the **given** patients who
had the event; pass the training patients only, or the test times leak into every prompt. The first
edge is 0 and the last the largest observed time. :func:`assign_bins` maps months to bin indices.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError, warn_input

__all__ = ["fit_survival_bins", "assign_bins"]


def fit_survival_bins(months: np.ndarray, events: np.ndarray, n_bins: int = 4,
                      min_events: int | None = None) -> np.ndarray:
    """Quantile bin edges of survival months, fitted on the given (training) patients only.

    Inner edges are the ``k / n_bins`` quantiles (numpy's linear interpolation) of the months of the
    patients with ``event == 1``; with fewer than ``min_events`` (default ``n_bins``) such patients
    the quantiles of all patients are used (warned). The first edge is 0 and the last the largest
    observed time of all given patients, so every training time falls in a bin. Ties are broken so
    the edges increase strictly. Patients with NaN/negative months or NaN events are ignored.

    Returns:
        float64 array of length ``n_bins + 1``.

    Raises:
        InputError: ``n_bins < 1`` or no patient with a usable survival time.
    """
    if int(n_bins) < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}", fix="use n_bins >= 1 (ModalTune: 4)")
    n_bins = int(n_bins)
    t = np.asarray(months, dtype=np.float64).reshape(-1)
    e = np.asarray(events, dtype=np.float64).reshape(-1)
    if t.shape != e.shape:
        raise InputError(f"months ({t.shape[0]}) and events ({e.shape[0]}) differ in length",
                         fix="pass one month and one event per patient")
    ok = np.isfinite(t) & (t >= 0) & np.isfinite(e)
    t, e = t[ok], e[ok]
    if t.size == 0:
        raise InputError("no patient with a survival time to fit the survival bins",
                         fix="check that the training patients have survival_months and event")
    min_events = n_bins if min_events is None else int(min_events)
    uncensored = t[e == 1]
    if uncensored.size >= max(1, min_events) or uncensored.size == t.size:
        values = uncensored
    else:
        warn_input(f"only {uncensored.size} event(s) among {t.size} patient(s): survival bins are quantiles of "
                   "all patients' times", fix="use more (training) patients per site for event-based bins")
        values = t
    hi = float(t.max())
    if hi <= 0:
        hi = 1.0
    inner = np.quantile(values, np.arange(1, n_bins) / n_bins) if n_bins > 1 else np.empty(0)
    edges = np.concatenate([[0.0], inner, [hi]])
    eps = max(hi, 1.0) * 1e-6
    for i in range(1, n_bins):  # forward: strictly above the previous edge
        edges[i] = max(edges[i], edges[i - 1] + eps)
    for i in range(n_bins - 1, 0, -1):  # backward: strictly below the next edge
        edges[i] = min(edges[i], edges[i + 1] - eps)
    return edges


def assign_bins(months: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each time: bin ``k`` holds ``edges[k] <= t < edges[k+1]``; times at or beyond the
    last edge go to the last bin; NaN or negative times give -1."""
    t = np.asarray(months, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    n_bins = len(edges) - 1
    if n_bins < 1:
        raise InputError(f"survival bin edges need at least 2 values, got {len(edges)}",
                         fix="fit the edges with fit_survival_bins")
    out = np.full(t.shape, -1, dtype=np.int64)
    ok = np.isfinite(t) & (t >= 0)
    out[ok] = np.clip(np.searchsorted(edges, t[ok], side="right") - 1, 0, n_bins - 1)
    return out
