"""Evaluation metrics: balanced accuracy, Harrell's and Uno's (IPCW) C-index, AUC.

Conventions:

* ``risk``: higher = shorter expected survival (an earlier event).
* Labels below 0 (``-1`` = rare or unknown subtype) are ignored by the classification metrics.
* A metric that cannot be computed (no valid labels, no comparable pair) is ``NaN``, never an error;
  :func:`ipcw_c_index_detail` also says why.

Macro F1 / sensitivity / specificity and the paper-style macro AUC (no renormalisation of the
probability columns, unlike :func:`auc`) live in :mod:`modaltune.evaluation.classification`.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["balanced_accuracy", "c_index", "ipcw_c_index", "ipcw_c_index_detail", "accuracy"]

_BLOCK = 2048  # rows per block of the pairwise C-index (bounds memory at ~_BLOCK * n booleans)


def _valid_labels(y, pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    if y.shape != pred.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape[0]} vs {pred.shape[0]}")
    keep = y >= 0
    return y[keep].astype(np.int64), pred[keep].astype(np.int64)


def balanced_accuracy(y, pred) -> float:
    """Mean per-class recall over the classes present in ``y`` (labels < 0 ignored; NaN if none)."""
    y, pred = _valid_labels(y, pred)
    if y.size == 0:
        return float("nan")
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(recalls))


def accuracy(y, pred) -> float:
    """Plain accuracy (labels < 0 ignored; NaN if none)."""
    y, pred = _valid_labels(y, pred)
    return float(np.mean(y == pred)) if y.size else float("nan")


def c_index(time, event, risk) -> float:
    """Harrell's concordance of ``risk`` with survival (higher risk = shorter survival).

    Comparable pairs ``(i, j)``: patient ``i`` had the event and ``time_i < time_j``, or the times
    are tied and ``j`` is censored (an event precedes a censoring at the same time). A pair is
    concordant when ``risk_i > risk_j``; ties in risk count one half. Two events at the same time
    are not comparable. Equals ``lifelines.utils.concordance_index(time, -risk, event)``. NaN when no pair
    is comparable.
    """
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).reshape(-1).astype(bool)
    r = np.asarray(risk, dtype=float).reshape(-1)
    if not (t.shape == e.shape == r.shape):
        raise ValueError(f"time, event and risk differ in length: {t.shape[0]}, {e.shape[0]}, {r.shape[0]}")
    ok = np.isfinite(t) & np.isfinite(r)
    t, e, r = t[ok], e[ok], r[ok]
    idx = np.flatnonzero(e)
    num = den = 0.0
    for start in range(0, idx.size, _BLOCK):
        i = idx[start:start + _BLOCK]
        comp = (t[i, None] < t[None, :]) | ((t[i, None] == t[None, :]) & ~e[None, :])
        den += comp.sum()
        num += (comp & (r[i, None] > r[None, :])).sum() + 0.5 * (comp & (r[i, None] == r[None, :])).sum()
    return float(num / den) if den > 0 else float("nan")


def ipcw_c_index_detail(train_time, train_event, time, event, risk, tau: float | None = None
                        ) -> tuple[float, str | None]:
    """Uno's IPCW C-index and, when it is NaN, the reason.

    Uses :func:`sksurv.metrics.concordance_index_ipcw` with the censoring distribution estimated
    on the *training* patients. ``tau`` (default: the largest training follow-up time) is clipped
    to the training follow-up, because the censoring survival function is only defined (and
    positive) there; evaluation patients beyond ``tau`` are truncated.
    """
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    tt = np.asarray(train_time, dtype=float).reshape(-1)
    te = np.asarray(train_event).reshape(-1).astype(bool)
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).reshape(-1).astype(bool)
    r = np.asarray(risk, dtype=float).reshape(-1)
    keep_tr = np.isfinite(tt)
    tt, te = tt[keep_tr], te[keep_tr]
    keep = np.isfinite(t) & np.isfinite(r)
    t, e, r = t[keep], e[keep], r[keep]
    if tt.size < 2:
        return float("nan"), "fewer than 2 training patients with survival data"
    if t.size < 2:
        return float("nan"), "fewer than 2 evaluation patients with survival data"
    limit = float(tt.max())
    tau = limit if tau is None else min(float(tau), limit)
    if not np.any(e & (t < tau)):
        return float("nan"), f"no evaluation event before tau={tau:.3g} (training follow-up)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = concordance_index_ipcw(Surv.from_arrays(te, tt), Surv.from_arrays(e, t), r, tau=tau)[0]
    except (ValueError, ZeroDivisionError) as exc:
        return float("nan"), f"IPCW C-index undefined: {exc}"
    value = float(value)
    if not np.isfinite(value):
        return float("nan"), "IPCW C-index undefined (no comparable pair before tau)"
    return value, None


def ipcw_c_index(train_time, train_event, time, event, risk, tau: float | None = None) -> float:
    """Uno's IPCW C-index (NaN when censoring does not allow it; see :func:`ipcw_c_index_detail`)."""
    return ipcw_c_index_detail(train_time, train_event, time, event, risk, tau)[0]
