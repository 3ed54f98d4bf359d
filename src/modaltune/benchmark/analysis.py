"""Patient-level analyses of a benchmark's test predictions.

Every function reads ``RUN_DIR/predictions.csv`` (columns ``case_id, site, split, risk,
pred_class, subtype, survival_months, event, has_survival``) of the cells collected by the
runner, keyed ``(method label, site, unit, metric)`` (a unit is ``seedS`` or ``foldF_seedS``), and
writes one file beside the tables:

- :func:`km_figures`: ``figures/km_<method>_<site>.png`` and ``km.csv`` -- test patients split at
  the median predicted risk, Kaplan-Meier curves and the log-rank p-value (ModalTune supp. Fig. 6);
- :func:`confidence_intervals`: ``confidence_intervals.csv`` -- percentile bootstrap 95 % CI of
  every test metric of every cell (patients resampled);
- :func:`paired_tests`: ``paired_tests.csv`` -- per site and metric, the best method (by mean over
  units) against every other: a paired bootstrap over the first unit's common test patients, and a
  two-sided Wilcoxon signed-rank test over the units' scores (paired by fold and seed); a row
  ``site = Overall`` pairs the per-site scores over sites x units (MICE's overall comparison).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.metrics import balanced_accuracy, c_index
from ..evaluation.stats import bootstrap_ci, paired_bootstrap_test, wilcoxon_paired
from ..evaluation.survival_plots import kaplan_meier_summary

PredictionMap = dict[tuple[str, str, str, str], Path]


def unit_seed(unit: str) -> int:
    """The seed of a unit name (``seed3`` or ``fold1_seed3`` -> 3), used to seed its bootstraps."""
    return int(str(unit).rsplit("seed", 1)[-1])


def slug(text: str) -> str:
    """A file-name-safe lower-case slug."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _test_predictions(run_dir: Path, site: str) -> pd.DataFrame:
    path = Path(run_dir) / "predictions.csv"
    if not path.exists():
        return pd.DataFrame()
    df = pd.read_csv(path, dtype={"case_id": str, "site": str})
    if "split" in df:
        df = df[df["split"] == "test"]
    return df[df["site"] == site].set_index("case_id")


def _arrays(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, ...] | None:
    """The argument arrays of the metric over the patients it is defined for."""
    if metric == "c_index":
        ok = df["has_survival"].astype(bool) & np.isfinite(df["risk"].astype(float))
        d = df[ok]
        return d["survival_months"].to_numpy(float), d["event"].to_numpy(int), d["risk"].to_numpy(float)
    if metric == "balanced_accuracy":
        d = df[(df["subtype"] >= 0) & df["pred_class"].notna()]
        return d["subtype"].to_numpy(int), d["pred_class"].to_numpy(int)
    return None


METRIC_FN = {"c_index": c_index, "balanced_accuracy": balanced_accuracy}


def km_figures(predictions: PredictionMap, out: Path, unit: str) -> pd.DataFrame:
    """One KM figure per method and site (the given unit's run); returns and writes ``km.csv``."""
    rows = []
    for (label, site, u, metric), run_dir in sorted(predictions.items(), key=lambda kv: kv[0][:3]):
        if metric != "c_index" or u != unit:
            continue
        df = _test_predictions(run_dir, site)
        if df.empty:
            continue
        df = df[df["has_survival"].astype(bool) & np.isfinite(df["risk"].astype(float))]
        if len(df) < 2:
            continue
        path = Path(out) / "figures" / f"km_{slug(label)}_{site}.png"
        km = kaplan_meier_summary(df["survival_months"].to_numpy(float), df["event"].to_numpy(int),
                                  df["risk"].to_numpy(float), path, title=f"{label}, {site} (test, {unit})")
        rows.append({"method": label, "site": site, "unit": unit, **km, "run_dir": str(run_dir)})
    table = pd.DataFrame(rows)
    table.to_csv(Path(out) / "km.csv", index=False)
    return table


def confidence_intervals(predictions: PredictionMap, out: Path, n_boot: int = 1000) -> pd.DataFrame:
    """Bootstrap 95 % CI of every (method, site, unit, metric) cell; writes ``confidence_intervals.csv``."""
    rows = []
    for (label, site, unit, metric), run_dir in sorted(predictions.items()):
        df = _test_predictions(run_dir, site)
        arrays = _arrays(df, metric) if not df.empty else None
        if arrays is None or len(arrays[0]) < 2:
            continue
        est, lo, hi = bootstrap_ci(METRIC_FN[metric], *arrays, n=n_boot, seed=unit_seed(unit))
        rows.append({"method": label, "site": site, "unit": unit, "metric": metric, "estimate": est,
                     "ci_low": lo, "ci_high": hi, "n": len(arrays[0]), "run_dir": str(run_dir)})
    table = pd.DataFrame(rows, columns=["method", "site", "unit", "metric", "estimate", "ci_low", "ci_high", "n",
                                        "run_dir"])
    table.to_csv(Path(out) / "confidence_intervals.csv", index=False)
    return table


PAIRED_COLUMNS = ["site", "metric", "best", "other", "best_mean", "other_mean", "unit", "n", "p_bootstrap",
                  "n_pairs", "p_wilcoxon", "wilcoxon_method", "best_run", "other_run"]


def _bootstrap_pair(predictions: PredictionMap, best: str, other: str, site: str, unit: str, metric: str,
                    n_boot: int) -> tuple[int, float]:
    ra, rb = predictions.get((best, site, unit, metric)), predictions.get((other, site, unit, metric))
    if ra is None or rb is None:
        return 0, float("nan")
    a, b = _test_predictions(ra, site), _test_predictions(rb, site)
    common = a.index.intersection(b.index)
    aa, bb = _arrays(a.loc[common], metric), _arrays(b.loc[common], metric)
    if aa is None or bb is None or len(aa[0]) != len(bb[0]) or len(aa[0]) < 2:
        return 0, float("nan")
    return len(aa[0]), paired_bootstrap_test(METRIC_FN[metric], aa, bb, n=n_boot, seed=unit_seed(unit))


def _wilcoxon(g: pd.DataFrame, best: str, other: str, keys: list[str]) -> tuple[int, float, str]:
    wide = g.pivot_table(index=keys, columns="method", values="value", aggfunc="mean")
    if best not in wide or other not in wide:
        return 0, float("nan"), ""
    pair = wide[[best, other]].dropna()
    res = wilcoxon_paired(pair[best].to_numpy(), pair[other].to_numpy())
    return int(res.n_pairs), float(res.p_value), str(res.method or res.reason or "")


def paired_tests(results: pd.DataFrame, predictions: PredictionMap, out: Path, unit: str,
                 n_boot: int = 1000) -> pd.DataFrame:
    """Per site and metric, the best method (by mean over units) against every other method.

    ``p_bootstrap``: paired bootstrap over the test patients both were scored on in ``unit``;
    ``p_wilcoxon``: Wilcoxon signed-rank over the units both were scored in (paired by fold and
    seed). The ``Overall`` rows pair per-site scores over sites x units. Writes ``paired_tests.csv``.
    """
    rows = []
    if not results.empty:
        df = results.copy()
        if "unit" not in df:
            df["unit"] = "seed" + df["seed"].astype(str)
        for (site, metric), g in list(df.groupby(["site", "metric"])) + [
                (("Overall", m), gm) for m, gm in df.groupby("metric")]:
            means = g.groupby("method")["value"].mean().sort_values(ascending=False)
            if len(means) < 2:
                continue
            best = means.index[0]
            keys = ["unit"] if site != "Overall" else ["site", "unit"]
            for other in means.index[1:]:
                n, p_boot = (0, float("nan")) if site == "Overall" else _bootstrap_pair(
                    predictions, best, other, site, unit, metric, n_boot)
                n_pairs, p_w, how = _wilcoxon(g, best, other, keys)
                rows.append({"site": site, "metric": metric, "best": best, "other": other,
                             "best_mean": float(means[best]), "other_mean": float(means[other]), "unit": unit,
                             "n": n, "p_bootstrap": p_boot, "n_pairs": n_pairs, "p_wilcoxon": p_w,
                             "wilcoxon_method": how,
                             "best_run": str(predictions.get((best, site, unit, metric))),
                             "other_run": str(predictions.get((other, site, unit, metric)))})
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    table.to_csv(Path(out) / "paired_tests.csv", index=False)
    return table
