"""Diagnostic: how much of a subspace cohort's diagnosis the slides carry at all (issue 13).

A distilled slide-only student can only beat a label-only one if the slides hold label
information that training on the labels alone does not extract. This measures the slide-only
ceiling of a cohort written by ``modaltune.synthetic.make_subspace_cohort(raw_dir)`` (the
disentangled demo's generator), using the generator's truth files, with simple probes that need
no training of a network:

- *slide pool*: the mean 20x and 10x patch feature of each patient (what an attention pool sees
  when its attention is uniform);
- *slide pool + spread*: with per-feature standard deviation and 10 / 90 % quantiles;
- *compartment oracle*: the mean 20x feature over the patient's true tumor patches and over its
  other patches (``truth_patches/*.h5``: ``tumor_20x``), the tumor fraction, the mean 10x feature;
- *slide pool + upper tail*: the slide pool with per-feature 90 / 95 / 99 % quantiles (a probe that
  can see a small focus of distinct patches without knowing where it is);
- *focus oracle* (cohorts written with ``molecular_fraction < 1``): the slide pool with the mean 20x
  feature over the patient's true molecular-hint patches and their share (``molecular_20x``): what
  a model that finds the focus could read (uses the truth, so an upper bound);
- *expression*: all genes (what the teacher reads);
- *latents*: the planted slide-level tumor / microenvironment factors and the molecular status
  (the label's own ceiling under the written labels' noise).

Each is a standardised multinomial logistic regression (penalty chosen by inner 3-fold CV) in
stratified 3-fold cross-validation x 3 seeds (the benchmark's 3 folds: ~160 training patients);
the macro one-vs-rest AUC is reported against the written labels (what the models are scored on)
and against the true classes.

Usage::

    PYTHONPATH=src python benchmarks/slide_ceiling.py RAW_DIR [--label who_written]

where ``RAW_DIR`` is the directory the subspace generator wrote.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _read(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][:]


def patient_features(raw: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per patient: pooled slide features and compartment means from the generator's truth."""
    slides = pd.read_csv(raw / "truth_slides.csv")
    out: dict[str, dict[str, np.ndarray]] = {}
    for case, group in slides.groupby("case_id"):
        tumor, other, f10, focus = [], [], [], []
        for sid in group["slide_id"]:
            f20 = _read(raw / "features_20x" / f"{sid}.h5", "features")
            mask = _read(raw / "truth_patches" / f"{sid}.h5", "tumor_20x").astype(bool)
            tumor.append(f20[mask])
            other.append(f20[~mask])
            f10.append(_read(raw / "features_10x" / f"{sid}.h5", "features"))
            with h5py.File(raw / "truth_patches" / f"{sid}.h5", "r") as f:
                hint = f["molecular_20x"][:].astype(bool) if "molecular_20x" in f else np.zeros(len(f20), bool)
            focus.append(f20[hint])
        tumor, other, f10, focus = (np.concatenate(tumor), np.concatenate(other), np.concatenate(f10),
                                    np.concatenate(focus))
        all20 = np.concatenate([tumor, other])
        dim = all20.shape[1]
        out[str(case)] = {
            "mean20": all20.mean(0), "std20": all20.std(0), "q20": np.quantile(all20, [0.1, 0.9], axis=0).ravel(),
            "mean10": f10.mean(0), "std10": f10.std(0),
            "tumor": tumor.mean(0) if len(tumor) else np.zeros(dim),
            "other": other.mean(0) if len(other) else np.zeros(dim),
            "fraction": np.array([len(tumor) / len(all20)]),
            "tail20": np.quantile(all20, [0.9, 0.95, 0.99], axis=0).ravel(),
            "focus": focus.mean(0) if len(focus) else np.zeros(dim),
            "focus_share": np.array([len(focus) / len(all20)]),
        }
    return out


def cv_auc(X: np.ndarray, y: np.ndarray, y_true: np.ndarray, seeds: int = 3, folds: int = 3) -> tuple:
    """Mean and std of the macro OvR AUC over ``folds`` x ``seeds``, against ``y`` and ``y_true``."""
    against, true = [], []
    for seed in range(seeds):
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            clf = make_pipeline(StandardScaler(),
                                LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), max_iter=3000, cv=3))
            p = clf.fit(X[tr], y[tr]).predict_proba(X[te])
            against.append(roc_auc_score(y[te], p, multi_class="ovr", average="macro"))
            true.append(roc_auc_score(y_true[te], p, multi_class="ovr", average="macro"))
    return float(np.mean(against)), float(np.std(against)), float(np.mean(true))


def main() -> None:
    """See the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw", type=Path)
    ap.add_argument("--label", default="who_written", help="truth.csv column of the written label")
    ap.add_argument("--true-label", default="who_class", help="truth.csv column of the true label")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    truth = pd.read_csv(args.raw / "truth.csv").set_index("case_id")
    feats = patient_features(args.raw)
    cases = sorted(feats)
    y = truth.loc[cases, args.label].to_numpy()
    y_true = truth.loc[cases, args.true_label].to_numpy()
    expr = pd.read_csv(args.raw / "expression.tsv", sep="\t", index_col=0)
    expr.columns = [str(c)[:12] for c in expr.columns]          # sample barcodes -> cases
    expr = expr.T.reindex(cases)

    def stack(keys):
        return np.stack([np.concatenate([feats[c][k] for k in keys]) for c in cases])

    rows = {
        "slide pool (mean 20x + 10x)": stack(["mean20", "mean10"]),
        "slide pool + spread (std, q10 / q90)": stack(["mean20", "std20", "q20", "mean10", "std10"]),
        "compartment oracle (true tumor / other means, fraction, 10x)": stack(["tumor", "other", "fraction",
                                                                               "mean10"]),
        "slide pool + upper tail (q90 / q95 / q99)": stack(["mean20", "tail20", "mean10"]),
        "expression (all genes)": expr.to_numpy(float),
        "latents (slide factors + molecular status)": truth.loc[
            cases, ["z_tumor_slide", "z_tme_slide", "idh_mutant", "codel", "cdkn2a"]].to_numpy(float),
    }
    meta = json.loads((args.raw / "truth.json").read_text())
    if float(meta.get("molecular_fraction", 1.0)) < 1.0:
        rows["focus oracle (true molecular-hint patches' mean and share, + slide pool)"] = stack(
            ["mean20", "mean10", "focus", "focus_share"])
    print(f"{len(cases)} patients; macro AUC, stratified 3-fold x 3 seeds")
    print("| inputs | AUC vs written labels | AUC vs true classes |")
    print("|---|---:|---:|")
    for name, X in rows.items():
        if np.isnan(X).any():
            print(f"| {name} | (missing values: skipped) | |")
            continue
        m, s, t = cv_auc(X, y, y_true)
        print(f"| {name} | {m:.3f} ± {s:.3f} | {t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
