"""Diagnostic: where MICE's survival signal is, and where it is lost (issue 12).

For a MICE run of a cohort written by ``modaltune.synthetic.make_pan_cancer`` (its ``truth.csv``
holds each patient's planted risk components: ``risk_shared`` read from the expression,
``risk_site`` from the slides' site-specific morphology, ``risk_report`` from the report's grade and
stage words, and their sum ``risk``), this runs the run's selected weights over every patient of its
split and reads each internal representation:

- the three modality tokens (pathology, genomics, report; synthesised where a modality is missing)
  and their concatenation, the pre-expert summary ``u``, the three expert groups and the fused ``h``;
- *content*: the Spearman correlation, within each site and averaged over sites, between a planted
  component and a ridge regression of it on the standardised representation, fitted on the training
  patients **with the planted value as target** (an upper bound on what the representation carries,
  not something a model trained on survival could reach);
- *readout*: the C-index against the written overall survival of a site-stratified Cox model on the
  representation's first 4 / 8 / 16 principal components, fitted on the training patients' survival
  (what a simple label-trained readout of the representation reaches);
- the C-index of the model's own risk on the training and on the held-out patients.

Validation and test patients are pooled as "held out" to halve the noise of a diagnostic that
chooses nothing (the test split chose no epoch and no setting of the run).

Usage::

    PYTHONPATH=src python benchmarks/mice_content.py RUN_DIR RAW_DIR

where ``RUN_DIR`` is one MICE run (e.g. ``BENCH/runs/mice@pretrain/pan/fold0_seed0/multi``) and
``RAW_DIR`` the generator's output directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV

from modaltune.methods.losses import survival_risk
from modaltune.runs.builders import make_dataset
from modaltune.runs.inputs import build_caches, cache_dir_for
from modaltune.runs.load import load_run

COMPONENTS = ("risk_shared", "risk_site", "risk_report", "risk")
TOKENS = ("pathology", "genomics", "report")
GROUPS = ("u", "consensual", "specialized", "overlapping", "h")


def representations(run_dir: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[str]]]:
    """``{name: {case_id: vector}}`` for every representation (and ``risk``), and the run's split."""
    run = load_run(run_dir)
    method = run.method.eval()
    reps: dict[str, dict[str, np.ndarray]] = {}
    for part in ("train", "val", "test"):
        ds = make_dataset(run.cohort, run.split[part], run.state, run.cfg, train=False)
        ds.attach_caches(build_caches(run.cfg, run.declaration, [ds], cache_dir_for(run.cohort, run.run_dir)))
        with torch.no_grad():
            for i in range(len(ds)):
                patient = ds[i]
                case = str(patient["case_id"])
                out = method([patient])
                tokens = out["tokens"][0].float()
                for j, name in enumerate(TOKENS):
                    reps.setdefault(f"token_{name}", {})[case] = tokens[j].numpy()
                reps.setdefault("tokens_concatenated", {})[case] = tokens.reshape(-1).numpy()
                for name in GROUPS:
                    reps.setdefault(name, {})[case] = out[name][0].float().numpy()
                reps.setdefault("risk", {})[case] = survival_risk(out["logits"][0:1].float()).reshape(1).numpy()
    return reps, {k: list(v) for k, v in run.split.items()}


def _site_mean(ids: list[str], truth: pd.DataFrame, score) -> float:
    sites = truth.loc[ids, "site"].to_numpy()
    vals = [score(np.asarray(ids)[sites == s]) for s in sorted(set(sites))]
    return float(np.nanmean(vals))


def c_index(ids, risk: dict[str, float], truth: pd.DataFrame) -> float:
    """Mean over sites of the C-index of ``risk`` against the written OS (sites without a usable pair skipped)."""
    def one(sub):
        t = truth.loc[sub]
        try:
            return concordance_index(t["os_months"], -np.array([risk[c] for c in sub]), t["os_event"])
        except ZeroDivisionError:
            return float("nan")
    return _site_mean(list(ids), truth, one)


def content(rep: dict[str, np.ndarray], tr: list[str], ev: list[str], truth: pd.DataFrame) -> dict[str, float]:
    """Ridge (planted target) Spearman per component and stratified-Cox readout C-index on 4 / 8 / 16 PCs."""
    x_tr, x_ev = np.stack([rep[c] for c in tr]), np.stack([rep[c] for c in ev])
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    z_tr, z_ev = (x_tr - mu) / sd, (x_ev - mu) / sd
    out: dict[str, float] = {}
    for comp in COMPONENTS:
        pred = RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(z_tr, truth.loc[tr, comp].to_numpy(float)).predict(z_ev)
        by_case = dict(zip(ev, pred))
        out[comp] = _site_mean(ev, truth, lambda sub, comp=comp: spearmanr(
            [by_case[c] for c in sub], truth.loc[sub, comp])[0] if len(sub) > 2 else float("nan"))
    for k in (4, 8, 16):
        if k > min(z_tr.shape):
            continue
        pca = PCA(k, random_state=0).fit(z_tr)
        df = pd.DataFrame(pca.transform(z_tr))
        df["T"], df["E"] = truth.loc[tr, "os_months"].to_numpy(float), truth.loc[tr, "os_event"].to_numpy(float)
        df["S"] = truth.loc[tr, "site"].to_numpy()
        cph = CoxPHFitter(penalizer=1.0).fit(df, "T", "E", strata=["S"])
        risk = cph.predict_partial_hazard(pd.DataFrame(pca.transform(z_ev))).to_numpy().ravel()
        out[f"cox_{k}pc"] = c_index(ev, dict(zip(ev, risk)), truth)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("raw_dir", type=Path, help="the directory make_pan_cancer wrote (its truth.csv)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    truth = pd.read_csv(args.raw_dir / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    reps, split = representations(args.run_dir)
    tr, ev = split["train"], split["val"] + split["test"]
    rows = {name: content(rep, tr, ev, truth) for name, rep in reps.items() if name != "risk"}
    print("content (ridge to the planted value; Spearman within site, held-out patients) and readout "
          "(site-stratified Cox on PCs, C-index vs written OS):")
    print(pd.DataFrame(rows).T.round(3).to_string())
    risk = {c: float(v[0]) for c, v in reps["risk"].items()}
    planted = {c: float(truth.loc[c, "risk"]) for c in ev}
    print(f"model's own risk: C-index training {c_index(tr, risk, truth):.3f}, held out {c_index(ev, risk, truth):.3f}; "
          f"planted risk (oracle), held out {c_index(ev, planted, truth):.3f}")


if __name__ == "__main__":
    main()
