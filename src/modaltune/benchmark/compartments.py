"""Do the slide-only student's token clusters find the planted tissue compartments? (paper Fig. 7)

The disentangled student groups its patch tokens into two prototypes (DPC-KNN, ITA). On the
synthetic subspace cohort every 20x patch has a known compartment (tumor or microenvironment,
``truth_patches/<slide>.h5``, rows in the feature file's order). For each test patient this module
rebuilds the fixed-size bag exactly as the dataset does (slides concatenated, (y, x) raster order,
the repeat / stride resampling) to know which patch every token came from, asks the run for its
cluster assignment (``method.introspect``), and scores agreement with the truth:

- ``ari``: the adjusted Rand index (0 = chance, 1 = identical partitions; cluster order irrelevant);
- ``accuracy``: the best of the two ways to name the clusters, against ``chance_accuracy``, the same
  quantity for the patient's assignment randomly permuted (mean of 50 permutations, seeded).

A one-sample Wilcoxon test over patients says whether the ARI exceeds 0.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from ..data.cohort import Cohort
from ..data.fixed_bags import fixed_bag
from ..data.patient import collate_stack
from ..data.slides import concat_slides, load_slide
from ..errors import ConfigError, InputError
from ..runs.builders import make_dataset
from ..runs.inference import move_to
from ..runs.load import load_run

__all__ = ["compartment_agreement", "summarise_agreement"]


def _truth_labels(truth_dir: Path, slide_paths: list[str], case: str) -> np.ndarray:
    labels = []
    for p in slide_paths:
        f = truth_dir / f"{Path(p).stem}.h5"
        if not f.exists():
            raise InputError("no compartment truth for a slide", file=f, case=case,
                             fix="pass the truth_patches directory written by make_subspace_cohort")
        with h5py.File(f, "r") as h:
            labels.append(np.asarray(h["tumor_20x"], dtype=np.int64))
    return np.concatenate(labels)


def _source_index(slide_paths: list[str], grid: int) -> np.ndarray:
    feats, coords = concat_slides([load_slide(Path(p)) for p in slide_paths])
    return fixed_bag(np.zeros((len(feats), 1), np.float32), coords, grid)[2]


def compartment_agreement(run_dir: str | Path, truth_dir: str | Path, cohort: Cohort | None = None,
                          n_permutations: int = 50, seed: int = 0) -> pd.DataFrame:
    """Per test patient: ARI and accuracy of the 20x token clusters against the planted compartments.

    Args:
        run_dir: a trained run of ``dmsf_student`` or ``dmsf_distill``.
        truth_dir: ``truth_patches/`` of the synthetic subspace cohort.
        cohort: the cohort (default: the run's).
        n_permutations: permutations of the assignment for the chance level.
        seed: seed of the permutations.

    Returns:
        One row per test patient: ``case_id, ari, accuracy, chance_accuracy, tumor_share`` and
        ``tumor_cluster``, the cluster (prototype index 0 or 1) holding the larger share of tumor
        patches: whether the student's prototype order follows the compartments across patients.
    """
    from sklearn.metrics import adjusted_rand_score

    run = load_run(run_dir, cohort)
    if not hasattr(run.method, "introspect") or "fixed_bags" not in run.declaration.inputs:
        raise ConfigError(f"method '{run.cfg['method']}' has no token clusters to compare (a student run is needed)")
    grid = int(run.cfg["data"]["grid"])
    man = run.cohort.manifest
    ds = make_dataset(run.cohort, run.split["test"], run.state, run.cfg, train=False)
    rng = np.random.default_rng(seed)
    rows = []
    for i, case in enumerate(run.split["test"]):
        paths = [p for p in str(man.at[case, "slide_paths"] or "").split(";") if p]
        if not paths:
            continue
        truth = _truth_labels(Path(truth_dir), paths, case)[_source_index(paths, grid)]
        with torch.no_grad():
            out = run.method.introspect(move_to(collate_stack([ds[i]]), run.device))
        assign = out["assignment_m20"].reshape(-1).cpu().numpy().astype(np.int64)
        acc = float(max(np.mean(assign == truth), np.mean(assign != truth)))
        perm = [max(np.mean(p == truth), np.mean(p != truth)) for p in
                (rng.permutation(assign) for _ in range(n_permutations))]
        share = [float(truth[assign == c].mean()) if np.any(assign == c) else float("nan") for c in (0, 1)]
        rows.append({"case_id": case, "ari": float(adjusted_rand_score(truth, assign)), "accuracy": acc,
                     "chance_accuracy": float(np.mean(perm)), "tumor_share": float(truth.mean()),
                     "tumor_cluster": int(np.nanargmax(share)) if not all(map(np.isnan, share)) else -1})
    return pd.DataFrame(rows)


def summarise_agreement(df: pd.DataFrame) -> dict[str, float]:
    """Mean ARI / accuracy / chance accuracy, the Wilcoxon p-value of ARI > 0, and the share of
    patients whose tumor patches sit mostly in prototype 0 (``tumor_first``)."""
    from scipy.stats import wilcoxon

    ari = df["ari"].to_numpy(float)
    p = float(wilcoxon(ari, alternative="greater").pvalue) if len(ari) > 1 and np.any(ari != 0) else float("nan")
    return {"n": int(len(df)), "ari": float(ari.mean()), "accuracy": float(df["accuracy"].mean()),
            "chance_accuracy": float(df["chance_accuracy"].mean()), "p_ari_above_0": p,
            "tumor_first": float((df["tumor_cluster"] == 0).mean()) if "tumor_cluster" in df else float("nan")}
