"""Summary statistics over seeds and patient-level bootstrap.

* :func:`mean_std` / :func:`format_mean_std`: mean and sample std (ddof 1) over seeds, NaNs skipped.
* :func:`bootstrap_ci`: percentile confidence interval of a metric; patients are resampled with
  replacement (all ``arrays`` with the same indices); resamples where the metric is undefined
  (NaN, e.g. a resample with one class or no event) are skipped.
* :func:`paired_bootstrap_test`: two methods scored on the *same* patients; the patients are
  resampled jointly and the two-sided p-value is for "the difference of the metric is 0".

Fold-level protocol (MICE spec (f)): table entries are mean +/- std over test folds, so we also need
statistics of fold scores. :func:`fold_summary` keeps the std with ddof 1 and 0 (the papers do not
say which). :func:`wilcoxon_paired` tests paired fold scores (or sites x folds) and returns the
method behind its p-value (five folds alone cannot reach p < 0.05: exact minimum 0.0625).
:func:`fold_bootstrap_ci` gives both the mean of fold-wise percentile bounds (what the MICE paper's
widths suggest) and a pooled out-of-fold bootstrap, each labelled; resamples are redrawn until they
hold an event, as in the official code, but seeded (own Generator, never the global RNG).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..errors import InputError
from .metrics import c_index

__all__ = ["mean_std", "format_mean_std", "bootstrap_ci", "paired_bootstrap_test", "ConfidenceInterval",
           "fold_summary", "FoldSummary", "wilcoxon_paired", "WilcoxonResult", "fold_bootstrap_ci",
           "FoldBootstrapCI", "LabelledCI"]


class ConfidenceInterval(NamedTuple):
    """A metric on the full data (``estimate``) and its percentile interval ``[low, high]``."""

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
    """``"0.812 ± 0.014"`` (``"n/a"`` when there is no finite value; the value alone, without a
    meaningless ``± 0.000``, when there is one)."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "n/a"
    if int(np.isfinite(np.asarray(values, dtype=float)).sum()) == 1:
        return f"{m:.{digits}f}"
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


# -- fold-level statistics ----------------------------------------------------------------------

class FoldSummary(NamedTuple):
    """Mean and spread of per-fold scores; ``n`` counts the finite scores used."""

    mean: float
    std: float
    std_ddof0: float
    n: int


def fold_summary(values: Sequence[float], ddof: int = 1) -> FoldSummary:
    """Mean, std with ``ddof`` and std with ddof 0 of the finite per-fold scores.

    Args:
        values: one score per fold (NaN folds, e.g. a fold without a comparable pair, are skipped
            and show up as a smaller ``n``).
        ddof: delta degrees of freedom of ``std`` (1 = sample std, our default for tables).

    Returns:
        ``FoldSummary(mean, std, std_ddof0, n)``; every number is NaN when no score is finite, and
        ``std`` is NaN when ``n <= ddof`` (one fold has no sample std).
    """
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return FoldSummary(float("nan"), float("nan"), float("nan"), 0)
    std = float(v.std(ddof=ddof)) if v.size > ddof else float("nan")
    return FoldSummary(float(v.mean()), std, float(v.std(ddof=0)), int(v.size))


class WilcoxonResult(NamedTuple):
    """Wilcoxon test result; ``method``: ``"exact"``, ``"permutation"`` (all 2^n sign flips, exact
    with tied differences) or ``"approx"`` (normal, continuity and tie corrected); ``reason``: why NaN."""

    statistic: float
    p_value: float
    n_pairs: int
    n_nonzero: int
    method: str
    reason: str | None


def wilcoxon_paired(a: Sequence[float], b: Sequence[float], method: str = "auto") -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of ``a - b`` (scipy), e.g. fold-level scores of two methods.

    Pairs with a non-finite score are dropped; zero differences are dropped (Wilcoxon's rule) before
    ranking. Arrays of any shape are flattened, so a sites x folds matrix pairs site-fold cells.
    Swapping ``a`` and ``b`` gives the same statistic (``min(W+, W-)``) and p-value.

    Args:
        a: scores of method A, one per pairing unit (fold, or site x fold).
        b: scores of method B on the same units, in the same order/shape.
        method: ``"auto"`` (exact when at most 50 non-zero differences without ties; all 2^n sign
            flips when there are ties and at most 13 differences; otherwise the normal approximation),
            ``"exact"`` (as auto, but never the approximation) or ``"approx"``.

    Returns:
        ``WilcoxonResult(statistic, p_value, n_pairs, n_nonzero, method, reason)``; statistic and
        p-value are NaN, with the reason, when fewer than 2 differences are non-zero.

    Raises:
        InputError: ``a`` and ``b`` differ in shape, ``method`` is unknown, or ``"exact"`` was asked
            for more than 13 tied differences.
    """
    from scipy.stats import PermutationMethod, wilcoxon

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise InputError(f"paired scores differ in shape: {x.shape} vs {y.shape}",
                         fix="pass the two methods' scores on the same folds (and sites), in the same order")
    if method not in ("auto", "exact", "approx"):
        raise InputError(f"unknown Wilcoxon method {method!r}", fix="use 'auto', 'exact' or 'approx'")
    x, y = x.reshape(-1), y.reshape(-1)
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    d = d[d != 0]
    n_pairs, n_nz = int(ok.sum()), int(d.size)
    if n_nz < 2:
        return WilcoxonResult(float("nan"), float("nan"), n_pairs, n_nz, "n/a",
                              f"{n_nz} non-zero paired difference(s) among {n_pairs} finite pairs; need 2")
    ties = np.unique(np.abs(d)).size < n_nz
    if method == "approx" or (method == "auto" and (n_nz > 50 or (ties and n_nz > 13))):
        used, scipy_method = "approx", "asymptotic"
    elif not ties:
        used, scipy_method = "exact", "exact"
    elif n_nz <= 13:
        used, scipy_method = "permutation", PermutationMethod(n_resamples=2 ** n_nz)
    else:
        raise InputError(f"no exact Wilcoxon p-value for {n_nz} differences with tied absolute values",
                         fix="use method='auto' or 'approx' (normal approximation with tie correction)")
    res = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=scipy_method)
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n_pairs, n_nz, used, None)


class LabelledCI(NamedTuple):
    """A confidence interval and the words that say how it was obtained."""

    estimate: float
    low: float
    high: float
    label: str


class FoldBootstrapCI(NamedTuple):
    """The two CIs of :func:`fold_bootstrap_ci` and the per-fold intervals behind ``fold_mean``."""

    fold_mean: LabelledCI
    pooled: LabelledCI
    per_fold: list[ConfidenceInterval]


def _event_resample(rng: np.random.Generator, event: np.ndarray) -> np.ndarray:
    """Indices of one bootstrap resample, redrawn until it holds an event (P(no event) <= 1/e per draw)."""
    while True:
        idx = rng.integers(0, event.size, event.size)
        if event[idx].any():
            return idx


def _percentile_ci(metric: Callable[..., float], t, e, r, B: int, rng, alpha: float) -> ConfidenceInterval:
    est = _resampled(metric, [t, e, r], np.arange(t.size))
    vals = np.array([_resampled(metric, [t, e, r], idx) for idx in (_event_resample(rng, e) for _ in range(B))])
    vals = vals[np.isfinite(vals)]
    if vals.size < 10:
        return ConfidenceInterval(est, float("nan"), float("nan"))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return ConfidenceInterval(est, float(lo), float(hi))


def fold_bootstrap_ci(per_fold: Sequence[tuple], n: int = 1000, seed: int = 0, alpha: float = 0.05,
                      metric: Callable[..., float] = c_index) -> FoldBootstrapCI:
    """Bootstrap CIs of a survival metric over cross-validation test folds, two ways, both labelled.

    * ``fold_mean`` (paper-like): per fold, ``n`` resamples of its test patients (with replacement,
      each redrawn until it holds >= 1 event), percentile bounds; the estimate and both bounds are
      the means over folds of the fold estimates and bounds.
    * ``pooled``: all folds' out-of-fold predictions concatenated and resampled together (same
      redraw rule); the estimate is the metric on the pooled patients. It compares risks of
      different fold models, which is only meaningful when their risk scales agree.

    Every fold and the pooled set draw from their own child of ``numpy.random.SeedSequence(seed)``,
    so a fold's interval does not depend on the other folds. Resamples where the metric is NaN are
    skipped; bounds are NaN when fewer than 10 resamples are finite.

    Args:
        per_fold: one ``(time, event, risk)`` tuple of arrays per test fold.
        n: resamples per fold and for the pooled set.
        seed: seed of the resampling.
        alpha: 1 - coverage (0.05 gives 95 % intervals).
        metric: ``metric(time, event, risk) -> float``; Harrell's C-index by default.

    Returns:
        ``FoldBootstrapCI(fold_mean, pooled, per_fold)``.

    Raises:
        InputError: no fold, arrays of a fold that differ in length, or a fold without any event.
    """
    if len(per_fold) == 0:
        raise InputError("fold_bootstrap_ci got no fold", fix="pass one (time, event, risk) tuple per test fold")
    folds = []
    for k, fold in enumerate(per_fold):
        t, e, r = (np.asarray(x).reshape(-1) for x in fold)
        if not (t.size == e.size == r.size):
            raise InputError(f"fold {k}: time, event and risk differ in length: {t.size}, {e.size}, {r.size}",
                             fix="pass one time, event and risk per test patient")
        e = e.astype(bool)
        if not e.any():
            raise InputError(f"fold {k} has no event among its {t.size} test patients; its metric is undefined",
                             fix="use event-stratified folds, or leave this fold out and say so")
        folds.append((t.astype(float), e, r.astype(float)))
    B = int(n)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(folds) + 1)]
    per = [_percentile_ci(metric, t, e, r, B, rng, alpha) for (t, e, r), rng in zip(folds, rngs)]
    pct, K = f"{100 * (1 - alpha):g} % percentile bootstrap", len(folds)
    means = np.mean(np.array(per, dtype=float), axis=0)
    fold_mean = LabelledCI(*map(float, means), f"mean over {K} folds of fold-wise {pct} bounds "
                                               f"({B} resamples per fold, redrawn until >= 1 event)")
    t, e, r = (np.concatenate([f[i] for f in folds]) for i in range(3))
    pooled = LabelledCI(*_percentile_ci(metric, t, e, r, B, rngs[-1], alpha),
                        f"pooled out-of-fold {pct} ({t.size} test patients of {K} folds, {B} resamples, "
                        "redrawn until >= 1 event)")
    return FoldBootstrapCI(fold_mean, pooled, per)
