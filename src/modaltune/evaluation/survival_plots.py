"""Kaplan-Meier curves of predicted high- vs low-risk patients with a log-rank test.

Patients are split at the median predicted risk (risk > median = high risk; with many ties at the
median the split is as even as the ties allow). The figure is drawn on a matplotlib Agg canvas
(no pyplot, no display, the global backend untouched) and written as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["kaplan_meier_plot", "kaplan_meier_summary", "median_split"]


def median_split(risk: np.ndarray) -> np.ndarray:
    """Boolean mask of the high-risk group (risk above the median)."""
    r = np.asarray(risk, dtype=float)
    return r > np.median(r)


def kaplan_meier_summary(time, event, risk, path: str | Path | None = None, title: str = "") -> dict:
    """Draw the KM plot (when ``path`` is given) and return ``{"p_value", "n_high", "n_low",
    "events_high", "events_low", "median_risk", "path"}``; ``p_value`` is NaN when a group is empty."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).reshape(-1).astype(bool)
    r = np.asarray(risk, dtype=float).reshape(-1)
    ok = np.isfinite(t) & np.isfinite(r)
    t, e, r = t[ok], e[ok], r[ok]
    out = {"p_value": float("nan"), "n_high": 0, "n_low": 0, "events_high": 0, "events_low": 0,
           "median_risk": float(np.median(r)) if r.size else float("nan"), "path": None}
    if r.size == 0:
        return out
    high = median_split(r)
    out.update(n_high=int(high.sum()), n_low=int((~high).sum()), events_high=int(e[high].sum()),
               events_low=int(e[~high].sum()))
    if high.any() and (~high).any() and e.any():
        out["p_value"] = float(logrank_test(t[high], t[~high], e[high], e[~high]).p_value)
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(5, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for mask, name, color in ((~high, "low risk", "tab:blue"), (high, "high risk", "tab:red")):
            if mask.any():
                KaplanMeierFitter(label=f"{name} (n={int(mask.sum())})").fit(t[mask], e[mask]).plot_survival_function(
                    ax=ax, ci_show=False, color=color, show_censors=True)
        p = out["p_value"]
        ax.set_title(f"{title}\nlog-rank p = {p:.3g}" if np.isfinite(p) else f"{title}\nlog-rank p = n/a")
        ax.set_xlabel("months")
        ax.set_ylabel("survival probability")
        ax.set_ylim(0, 1.05)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        out["path"] = str(path)
    return out


def kaplan_meier_plot(time, event, risk, path: str | Path, title: str = "") -> float:
    """Write the KM plot of the median-split risk groups to ``path`` (PNG); return the log-rank p-value."""
    return kaplan_meier_summary(time, event, risk, path, title)["p_value"]
