"""Kaplan-Meier curves of predicted high- vs low-risk patients with a log-rank test.

Patients with risk above a threshold are "high risk" (with many ties at the threshold the split is as
even as the ties allow). Two ways to choose the threshold:

* :func:`kaplan_meier_summary` without ``threshold``: the median risk of the plotted (test) patients,
  today's default. The split then uses the test patients' own risks, which is fine for a figure but
  not a rule that a deployed model could apply.
* :func:`kaplan_meier_folds`: MICE's protocol (spec (f), (k) 14): per cross-validation fold the
  threshold is the median risk of that fold's *training* patients (:func:`training_threshold`), the
  test patients of every fold are split with their fold's threshold and then pooled into one curve
  pair and one log-rank test. Test patients never move a threshold.

Figures are drawn on a matplotlib Agg canvas (no pyplot, no display, the global backend untouched)
and written as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["kaplan_meier_plot", "kaplan_meier_summary", "median_split", "training_threshold", "kaplan_meier_folds",
           "KMFold"]


class KMFold(NamedTuple):
    """One fold for :func:`kaplan_meier_folds`: training risks (threshold) and the test patients."""

    train_risk: np.ndarray
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray


def median_split(risk: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the high-risk group.

    Args:
        risk: predicted risk per patient (higher = shorter survival).
        threshold: cut-off; ``None`` uses the median of ``risk`` itself.

    Returns:
        ``risk > threshold``.
    """
    r = np.asarray(risk, dtype=float)
    return r > (np.median(r) if threshold is None else float(threshold))


def training_threshold(train_risk) -> float:
    """The median of the finite training risks of a fold: the KM threshold of MICE's protocol.

    Args:
        train_risk: the fold model's predicted risks of that fold's training patients.

    Returns:
        The median training risk.

    Raises:
        InputError: no finite training risk.
    """
    r = np.asarray(train_risk, dtype=float).reshape(-1)
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise InputError("no finite training risk to take the KM threshold from",
                         fix="predict the risk of the fold's training patients with the fold's model")
    return float(np.median(r))


def _survival_arrays(time, event, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).reshape(-1).astype(bool)
    r = np.asarray(risk, dtype=float).reshape(-1)
    if not (t.size == e.size == r.size):
        raise InputError(f"time, event and risk differ in length: {t.size}, {e.size}, {r.size}",
                         fix="pass one time, event and risk per patient")
    ok = np.isfinite(t) & np.isfinite(r)
    return t[ok], e[ok], r[ok]


def _km_groups(t: np.ndarray, e: np.ndarray, high: np.ndarray, path: str | Path | None, title: str) -> dict:
    """Counts, log-rank p-value (NaN when a group is empty or there is no event) and the optional figure."""
    from lifelines.statistics import logrank_test

    out = {"p_value": float("nan"), "n_high": int(high.sum()), "n_low": int((~high).sum()),
           "events_high": int(e[high].sum()), "events_low": int(e[~high].sum()), "path": None}
    if high.any() and (~high).any() and e.any():
        out["p_value"] = float(logrank_test(t[high], t[~high], e[high], e[~high]).p_value)
    if path is not None:
        out["path"] = _draw(t, e, high, Path(path), title, out["p_value"])
    return out


def _draw(t: np.ndarray, e: np.ndarray, high: np.ndarray, path: Path, title: str, p: float) -> str:
    from lifelines import KaplanMeierFitter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for mask, name, color in ((~high, "low risk", "tab:blue"), (high, "high risk", "tab:red")):
        if mask.any():
            KaplanMeierFitter(label=f"{name} (n={int(mask.sum())})").fit(t[mask], e[mask]).plot_survival_function(
                ax=ax, ci_show=False, color=color, show_censors=True)
    ax.set_title(f"{title}\nlog-rank p = {p:.3g}" if np.isfinite(p) else f"{title}\nlog-rank p = n/a")
    ax.set_xlabel("months")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return str(path)


def kaplan_meier_summary(time, event, risk, path: str | Path | None = None, title: str = "",
                         threshold: float | None = None) -> dict:
    """KM high- vs low-risk summary of one set of patients, with an optional figure.

    Args:
        time: follow-up per patient.
        event: 1 = event observed, 0 = censored.
        risk: predicted risk (higher = shorter survival); patients with non-finite time or risk are dropped.
        path: PNG to write (no figure when None).
        title: figure title.
        threshold: risk cut-off, e.g. :func:`training_threshold` of the training patients; ``None``
            (default, the former behaviour) uses the median risk of these patients.

    Returns:
        ``{"p_value", "n_high", "n_low", "events_high", "events_low", "median_risk", "threshold",
        "threshold_source", "path"}``; ``p_value`` is NaN when a group is empty or there is no event.
    """
    t, e, r = _survival_arrays(time, event, risk)
    median = float(np.median(r)) if r.size else float("nan")
    thr = median if threshold is None else float(threshold)
    source = "median risk of these patients" if threshold is None else "given"
    if r.size == 0:
        return {"p_value": float("nan"), "n_high": 0, "n_low": 0, "events_high": 0, "events_low": 0,
                "median_risk": median, "threshold": thr, "threshold_source": source, "path": None}
    out = _km_groups(t, e, r > thr, path, title)
    return {**out, "median_risk": median, "threshold": thr, "threshold_source": source}


def kaplan_meier_folds(folds: Sequence[KMFold | tuple], path: str | Path | None = None, title: str = "") -> dict:
    """KM summary of pooled test folds, each split at the median risk of its own training patients.

    Args:
        folds: one ``KMFold(train_risk, time, event, risk)`` (or plain 4-tuple) per fold: the fold
            model's risks of its training patients, and its test patients' times, events and risks.
        path: PNG to write (no figure when None).
        title: figure title.

    Returns:
        The keys of :func:`kaplan_meier_summary` for the pooled test patients (``threshold`` = NaN,
        the per-fold values are in ``thresholds``), plus ``n_folds``.

    Raises:
        InputError: no fold, a fold without finite training risks, or test arrays of different lengths.
    """
    if len(folds) == 0:
        raise InputError("kaplan_meier_folds got no fold", fix="pass one (train_risk, time, event, risk) per fold")
    thresholds, ts, es, highs, risks = [], [], [], [], []
    for train_risk, time, event, risk in folds:
        thr = training_threshold(train_risk)
        t, e, r = _survival_arrays(time, event, risk)
        thresholds.append(thr)
        ts.append(t)
        es.append(e)
        highs.append(r > thr)
        risks.append(r)
    t, e, high = np.concatenate(ts), np.concatenate(es), np.concatenate(highs)
    out = _km_groups(t, e, high, path, title)
    r = np.concatenate(risks)
    return {**out, "median_risk": float(np.median(r)) if r.size else float("nan"), "threshold": float("nan"),
            "thresholds": thresholds, "n_folds": len(thresholds),
            "threshold_source": f"median training risk of each fold, {len(thresholds)} test folds pooled"}


def kaplan_meier_plot(time, event, risk, path: str | Path, title: str = "", threshold: float | None = None) -> float:
    """Write the KM plot of the risk groups to ``path`` (PNG) and return the log-rank p-value.

    Args:
        time: follow-up per patient.
        event: 1 = event observed, 0 = censored.
        risk: predicted risk (higher = shorter survival).
        path: PNG to write.
        title: figure title.
        threshold: risk cut-off; ``None`` = median risk of these patients.

    Returns:
        The log-rank p-value (NaN when a group is empty or there is no event).
    """
    return kaplan_meier_summary(time, event, risk, path, title, threshold)["p_value"]
