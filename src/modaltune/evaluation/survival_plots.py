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

Figures carry the numbers at risk of both groups under the curves, the log-rank p-value and the
C-index of the plotted risks, and say where the threshold comes from. They are drawn on a matplotlib Agg canvas (no pyplot, no display, the global backend untouched)
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


def _km_groups(t: np.ndarray, e: np.ndarray, high: np.ndarray, path: str | Path | None, title: str,
               r: np.ndarray | None = None, threshold_note: str = "") -> dict:
    """Counts, log-rank p-value (NaN when a group is empty or there is no event), the C-index of the
    risks and the optional figure (with numbers at risk, the C-index and where the threshold comes from)."""
    from lifelines.statistics import logrank_test

    from .metrics import c_index as harrell

    c_index = float("nan")
    if r is not None and e.any() and r.size > 1:
        try:
            c_index = float(harrell(t, e.astype(int), r))
        except Exception:  # noqa: BLE001 - a figure never fails on a degenerate C-index
            c_index = float("nan")
    out = {"p_value": float("nan"), "n_high": int(high.sum()), "n_low": int((~high).sum()),
           "events_high": int(e[high].sum()), "events_low": int(e[~high].sum()), "c_index": c_index, "path": None}
    if high.any() and (~high).any() and e.any():
        out["p_value"] = float(logrank_test(t[high], t[~high], e[high], e[~high]).p_value)
    if path is not None:
        out["path"] = _draw(t, e, high, Path(path), title, out["p_value"], c_index, threshold_note)
    return out


def at_risk_counts(t: np.ndarray, mask: np.ndarray, times: Sequence[float]) -> list[int]:
    """Numbers at risk (follow-up >= each time) of the patients in ``mask``."""
    return [int((t[mask] >= x).sum()) for x in times]


def _draw(t: np.ndarray, e: np.ndarray, high: np.ndarray, path: Path, title: str, p: float,
          c_index: float = float("nan"), threshold_note: str = "") -> str:
    from lifelines import KaplanMeierFitter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.5, 5.2))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.18, 0.36, 0.78, 0.50))
    groups = ((~high, "low risk", "tab:blue"), (high, "high risk", "tab:red"))
    for mask, name, color in groups:
        if mask.any():
            KaplanMeierFitter(label=f"{name} (n={int(mask.sum())})").fit(t[mask], e[mask]).plot_survival_function(
                ax=ax, ci_show=False, color=color, show_censors=True)
    stats = [f"log-rank p = {p:.3g}" if np.isfinite(p) else "log-rank p = n/a",
             f"C-index = {c_index:.3f}" if np.isfinite(c_index) else "C-index = n/a"]
    ax.set_title(f"{title}\n{', '.join(stats)}", fontsize=10)
    ax.set_xlabel("months")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    # numbers at risk under the curves, at the x ticks
    ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
    table = fig.add_axes((0.18, 0.07, 0.78, 0.12), sharex=ax)
    table.set_xlim(ax.get_xlim())
    table.set_ylim(-0.5, 1.5)
    table.axis("off")
    span = ax.get_xlim()[1] - ax.get_xlim()[0]
    table.text(ax.get_xlim()[0], 1.7, "numbers at risk", fontsize=8, ha="left", va="center",
               style="italic")
    for row, (mask, name, color) in enumerate(reversed(groups)):
        for x, n in zip(ticks, at_risk_counts(t, mask, ticks)):
            table.text(x, row, str(n), color=color, fontsize=8, ha="center", va="center")
        table.text(ax.get_xlim()[0] - 0.06 * span, row, name, color=color,
                   fontsize=8, ha="right", va="center")
    if threshold_note:
        fig.text(0.5, 0.005, f"high risk: {threshold_note}", fontsize=7, ha="center", va="bottom")
    fig.savefig(path, dpi=120)
    return str(path)


def kaplan_meier_summary(time, event, risk, path: str | Path | None = None, title: str = "",
                         threshold: float | None = None, threshold_source: str | None = None) -> dict:
    """KM high- vs low-risk summary of one set of patients, with an optional figure.

    Args:
        time: follow-up per patient.
        event: 1 = event observed, 0 = censored.
        risk: predicted risk (higher = shorter survival); patients with non-finite time or risk are dropped.
        path: PNG to write (no figure when None).
        title: figure title.
        threshold: risk cut-off, e.g. :func:`training_threshold` of the training patients; ``None``
            (default, the former behaviour) uses the median risk of these patients.
        threshold_source: where a given ``threshold`` comes from (printed under the figure and
            returned), e.g. ``"median training risk"``.

    Returns:
        ``{"p_value", "n_high", "n_low", "events_high", "events_low", "c_index", "median_risk",
        "threshold", "threshold_source", "path"}``; ``p_value`` is NaN when a group is empty or there
        is no event. The figure shows the numbers at risk of both groups under the curves, the
        log-rank p-value and the C-index in its title, and the threshold's origin under it.
    """
    t, e, r = _survival_arrays(time, event, risk)
    median = float(np.median(r)) if r.size else float("nan")
    thr = median if threshold is None else float(threshold)
    source = "median risk of these patients" if threshold is None else "given"
    if r.size == 0:
        return {"p_value": float("nan"), "n_high": 0, "n_low": 0, "events_high": 0, "events_low": 0,
                "median_risk": median, "threshold": thr, "threshold_source": source, "path": None}
    note = (f"risk > {thr:.3g}, the median risk of these (test) patients" if threshold is None
            else f"risk > {thr:.3g} ({threshold_source or 'given threshold'})")
    out = _km_groups(t, e, r > thr, path, title, r, note)
    return {**out, "median_risk": median, "threshold": thr,
            "threshold_source": source if threshold is None else (threshold_source or source)}


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
    r = np.concatenate(risks)
    out = _km_groups(t, e, high, path, title, r, f"risk > the median training risk of each fold "
                                                 f"({len(thresholds)} test folds pooled)")
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
