"""Patient-level analyses of a benchmark's test predictions.

Every function reads ``RUN_DIR/predictions.csv`` (columns ``case_id, site, split, risk,
pred_class, subtype, survival_months, event, has_survival``) of the cells collected by the
runner, keyed ``(method label, site, seed, metric)``, and writes one file beside the tables:

- :func:`km_figures`: ``figures/km_<method>_<site>.png`` and ``km.csv`` -- test patients split at
  the median predicted risk, Kaplan-Meier curves and the log-rank p-value (ModalTune supp. Fig. 6);
- :func:`confidence_intervals`: ``confidence_intervals.csv`` -- percentile bootstrap 95 % CI of
  every test metric of every cell (patients resampled);
- :func:`paired_tests`: ``paired_tests.csv`` -- per site and metric, the best and second-best
  methods (by mean over seeds) compared on the same test patients with a paired bootstrap.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.metrics import balanced_accuracy, c_index
from ..evaluation.stats import bootstrap_ci, paired_bootstrap_test
from ..evaluation.survival_plots import kaplan_meier_summary

PredictionMap = dict[tuple[str, str, int, str], Path]


def slug(text: str) -> str:
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


def km_figures(predictions: PredictionMap, out: Path, seed: int) -> pd.DataFrame:
    """One KM figure per method and site (the given seed's run); returns and writes ``km.csv``."""
    rows = []
    for (label, site, s, metric), run_dir in sorted(predictions.items(), key=lambda kv: kv[0][:3]):
        if metric != "c_index" or s != seed:
            continue
        df = _test_predictions(run_dir, site)
        if df.empty:
            continue
        df = df[df["has_survival"].astype(bool) & np.isfinite(df["risk"].astype(float))]
        if len(df) < 2:
            continue
        path = Path(out) / "figures" / f"km_{slug(label)}_{site}.png"
        km = kaplan_meier_summary(df["survival_months"].to_numpy(float), df["event"].to_numpy(int),
                                  df["risk"].to_numpy(float), path, title=f"{label}, {site} (test, seed {seed})")
        rows.append({"method": label, "site": site, "seed": seed, **km, "run_dir": str(run_dir)})
    table = pd.DataFrame(rows)
    table.to_csv(Path(out) / "km.csv", index=False)
    return table


def confidence_intervals(predictions: PredictionMap, out: Path, n_boot: int = 1000) -> pd.DataFrame:
    """Bootstrap 95 % CI of every (method, site, seed, metric) cell; writes ``confidence_intervals.csv``."""
    rows = []
    for (label, site, seed, metric), run_dir in sorted(predictions.items()):
        df = _test_predictions(run_dir, site)
        arrays = _arrays(df, metric) if not df.empty else None
        if arrays is None or len(arrays[0]) < 2:
            continue
        est, lo, hi = bootstrap_ci(METRIC_FN[metric], *arrays, n=n_boot, seed=seed)
        rows.append({"method": label, "site": site, "seed": seed, "metric": metric, "estimate": est,
                     "ci_low": lo, "ci_high": hi, "n": len(arrays[0]), "run_dir": str(run_dir)})
    table = pd.DataFrame(rows, columns=["method", "site", "seed", "metric", "estimate", "ci_low", "ci_high", "n",
                                        "run_dir"])
    table.to_csv(Path(out) / "confidence_intervals.csv", index=False)
    return table


def paired_tests(results: pd.DataFrame, predictions: PredictionMap, out: Path, seed: int,
                 n_boot: int = 1000) -> pd.DataFrame:
    """Best vs second-best method per site and metric (ranked by mean over seeds), paired bootstrap
    over the test patients both were scored on (the given seed's runs); writes ``paired_tests.csv``."""
    rows = []
    if not results.empty:
        means = results.groupby(["site", "metric", "method"])["value"].mean().reset_index()
        for (site, metric), g in means.groupby(["site", "metric"]):
            ranked = g.sort_values("value", ascending=False)["method"].tolist()
            if len(ranked) < 2:
                continue
            best, second = ranked[:2]
            ra, rb = predictions.get((best, site, seed, metric)), predictions.get((second, site, seed, metric))
            row = {"site": site, "metric": metric, "best": best, "second": second,
                   "best_mean": float(g.set_index("method").at[best, "value"]),
                   "second_mean": float(g.set_index("method").at[second, "value"]),
                   "seed": seed, "n": 0, "p_value": float("nan"), "best_run": str(ra), "second_run": str(rb)}
            if ra is not None and rb is not None:
                a, b = _test_predictions(ra, site), _test_predictions(rb, site)
                common = a.index.intersection(b.index)
                aa, bb = _arrays(a.loc[common], metric), _arrays(b.loc[common], metric)
                if aa is not None and bb is not None and len(aa[0]) == len(bb[0]) and len(aa[0]) >= 2:
                    row["n"] = len(aa[0])
                    row["p_value"] = paired_bootstrap_test(METRIC_FN[metric], aa, bb, n=n_boot, seed=seed)
            rows.append(row)
    table = pd.DataFrame(rows, columns=["site", "metric", "best", "second", "best_mean", "second_mean", "seed", "n",
                                        "p_value", "best_run", "second_run"])
    table.to_csv(Path(out) / "paired_tests.csv", index=False)
    return table
