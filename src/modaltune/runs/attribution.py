"""Explaining a trained run's predictions: modality contributions and the method's own internals.

- :func:`modality_attribution`: exact Shapley values of each modality for each test patient's
  predicted risk (MICE §2.6 uses SHAP over modalities). A coalition's value is the risk predicted
  with the other modalities *absent* exactly as for a patient who lacks them (the method's own
  missing-modality path, e.g. MICE's synthesised token), so 2^M inference passes give the exact
  values; efficiency holds by construction (sum over modalities = risk with all - risk with none).
  Writes ``attribution_modalities.csv`` (per patient) and returns the per-site mean absolute share.
- :func:`introspection_summary`: for methods that expose ``introspect(batch)`` (MICE: routing
  weights, the specialised expert's gamma), the per-site mean of every vector it returns; writes
  ``introspection.csv``.

Both read the test split only, after training, like every other evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.cohort import Cohort
from ..data.dataset import MODALITIES
from ..data.patient import collate_for
from ..errors import ConfigError
from ..evaluation.attribution import shapley_shares, shapley_values
from .evaluate import run_inference
from .inference import move_to
from .load import load_run

__all__ = ["modality_attribution", "introspection_summary"]


def modality_attribution(run_dir: str | Path, cohort: Cohort | None = None,
                         modalities: Sequence[str] = MODALITIES) -> pd.DataFrame:
    """Per-site mean absolute Shapley share of each modality in the test patients' predicted risk.

    Args:
        run_dir: a trained run of a ``predict`` method that gives a risk.
        cohort: the cohort (default: the run's).
        modalities: the players (``wsi``, ``omics``, ``report``); those the method does not read
            contribute 0.

    Returns:
        One row per site (and ``overall``): ``share_<modality>`` and ``n``.
    """
    run = load_run(run_dir, cohort)
    if run.declaration.evaluation != "predict":
        raise ConfigError("modality attribution explains a method's own risk predictions; "
                          f"'{run.cfg['method']}' is evaluated by probes")
    players = list(modalities)
    test = [c for c in run.split["test"] if str(run.cohort.manifest.at[c, "site"]) not in
            set(run.cfg["data"].get("pretrain_only_sites") or [])]
    cache: dict[frozenset, np.ndarray] = {}

    def value(coalition: frozenset) -> np.ndarray:
        if coalition not in cache:
            res = run_inference(run, test, embed=False, predict=True,
                                absent=[m for m in players if m not in coalition])
            cache[coalition] = np.nan_to_num(res.risk, nan=0.0)
        return cache[coalition]

    phi = shapley_values(players, value)
    shares = shapley_shares(phi)
    sites = run.cohort.manifest.loc[test, "site"].astype(str).to_numpy()
    per_patient = pd.DataFrame({"case_id": test, "site": sites,
                                **{f"phi_{m}": np.asarray(phi[m]) for m in players},
                                **{f"share_{m}": np.asarray(shares[m]) for m in players}})
    per_patient.to_csv(Path(run.run_dir) / "attribution_modalities.csv", index=False)
    cols = [f"share_{m}" for m in players]
    table = per_patient.groupby("site")[cols].mean()
    table.loc["overall"] = per_patient[cols].mean()
    table["n"] = per_patient.groupby("site").size().reindex(table.index).fillna(len(per_patient)).astype(int)
    return table.reset_index()


def introspection_summary(run_dir: str | Path, cohort: Cohort | None = None) -> pd.DataFrame:
    """Per-site means of the vectors a method's ``introspect`` returns for the test patients."""
    run = load_run(run_dir, cohort)
    if not hasattr(run.method, "introspect"):
        raise ConfigError(f"method '{run.cfg['method']}' has no introspect()")
    from ..runs.builders import make_dataset

    ds = make_dataset(run.cohort, run.split["test"], run.state, run.cfg, train=False)
    from .inputs import build_caches, cache_dir_for

    ds.attach_caches(build_caches(run.cfg, run.declaration, [ds], cache_dir_for(run.cohort, run.run_dir)))
    collate = collate_for(run.declaration.batching)
    rows = []
    with torch.no_grad():
        for i in range(len(ds)):
            patient = ds[i]
            out = run.method.introspect(move_to(collate([patient]), run.device))
            row = {"case_id": patient["case_id"], "site": patient["site"]}
            for key, v in out.items():
                arr = np.asarray(v.detach().float().cpu() if isinstance(v, torch.Tensor) else v, dtype=float)
                arr = arr.reshape(-1)
                row.update({f"{key}_{j}": float(x) for j, x in enumerate(arr)} if arr.size > 1
                           else {key: float(arr[0])})
            rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(Path(run.run_dir) / "introspection_patients.csv", index=False)
    table = df.drop(columns="case_id").groupby("site").mean()
    table.to_csv(Path(run.run_dir) / "introspection.csv")
    return table.reset_index()
