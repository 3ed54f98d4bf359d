"""Summary statistics over seeds and patient-level bootstrap.

* :func:`mean_std` / :func:`format_mean_std`: mean and sample std (ddof 1) over seeds, NaNs skipped.
* :func:`bootstrap_ci`: percentile confidence interval of a metric; patients are resampled with
  replacement (all ``arrays`` with the same indices); resamples where the metric is undefined
  (NaN, e.g. a resample with one class or no event) are skipped.
* :func:`paired_bootstrap_test`: two methods scored on the *same* patients; the patients are
  resampled jointly and the two-sided p-value is for "the difference of the metric is 0".
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["mean_std", "format_mean_std", "bootstrap_ci", "paired_bootstrap_test", "ConfidenceInterval"]


class ConfidenceInterval(NamedTuple):
    estimate: float
    low: float
    high: float


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for one value) of the finite values; (nan, nan) when none."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"0.812 ± 0.014"`` (``"n/a"`` when there is no finite value)."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _as_arrays(arrays) -> list[np.ndarray]:
    out = [np.asarray(a) for a in arrays]
    if not out:
        raise ValueError("bootstrap needs at least one array")
    n = len(out[0])
    if any(len(a) != n for a in out):
        raise ValueError(f"arrays differ in length: {[len(a) for a in out]}")
    return out


def _resampled(metric_fn: Callable, arrays: list[np.ndarray], idx: np.ndarray) -> float:
    try:
        v = float(metric_fn(*[a[idx] for a in arrays]))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return float("nan")
    return v


def bootstrap_ci(metric_fn: Callable[..., float], *arrays, n: int = 1000, seed: int = 0, alpha: float = 0.05,
                 n_boot: int | None = None) -> ConfidenceInterval:
    """Percentile bootstrap CI of ``metric_fn(*arrays)``, resampling patients (rows).

    Args:
        metric_fn: e.g. ``c_index`` with ``arrays = (time, event, risk)``.
        n / n_boot: number of resamples (``n_boot`` is an alias).
        seed: seed of the resampling.
        alpha: 1 - coverage (0.05 gives a 95% interval).

    Returns:
        ``(estimate, low, high)``; the estimate is the metric on the full data; low/high are NaN
        when fewer than 10 resamples gave a finite metric.
    """
    arrs = _as_arrays(arrays)
    B = int(n_boot if n_boot is not None else n)
    est = _resampled(metric_fn, arrs, np.arange(len(arrs[0])))
    rng = np.random.default_rng(seed)
    m = len(arrs[0])
    vals = np.array([_resampled(metric_fn, arrs, rng.integers(0, m, m)) for _ in range(B)])
    vals = vals[np.isfinite(vals)]
    if vals.size < 10:
        return ConfidenceInterval(est, float("nan"), float("nan"))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return ConfidenceInterval(est, float(lo), float(hi))


def paired_bootstrap_test(metric_fn: Callable[..., float], arrays_a: Sequence, arrays_b: Sequence, *,
                          n: int = 1000, seed: int = 0, n_boot: int | None = None) -> float:
    """Two-sided paired bootstrap p-value for ``metric(a) - metric(b) == 0`` on the same patients.

    ``arrays_a`` and ``arrays_b`` are the argument tuples of ``metric_fn`` for the two methods
    (e.g. ``(time, event, risk_a)`` and ``(time, event, risk_b)``), rows = the same patients.
    ``p = min(1, 2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (B + 1))`` over the B finite resampled
    differences ``d``. Identical methods give p = 1.
    """
    a, b = _as_arrays(arrays_a), _as_arrays(arrays_b)
    if len(a[0]) != len(b[0]):
        raise ValueError("the two methods must be scored on the same patients (same number of rows)")
    B = int(n_boot if n_boot is not None else n)
    rng = np.random.default_rng(seed)
    m = len(a[0])
    diffs = []
    for _ in range(B):
        idx = rng.integers(0, m, m)
        d = _resampled(metric_fn, a, idx) - _resampled(metric_fn, b, idx)
        if np.isfinite(d):
            diffs.append(d)
    if not diffs:
        return float("nan")
    d = np.asarray(diffs)
    le, ge = np.sum(d <= 0) + 1, np.sum(d >= 0) + 1
    return float(min(1.0, 2.0 * min(le, ge) / (d.size + 1)))
