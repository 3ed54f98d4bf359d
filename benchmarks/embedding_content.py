"""Diagnostic: which planted risk components a run's embedding carries, epoch by epoch (issue 15).

For a probed run of the synthetic cohort (``modaltune synth`` writes ``truth.csv`` with the planted
per-patient ``morph_fraction`` (slide-visible), ``pathway_activity`` (expression-visible),
``stage_true`` (visible to neither) and ``risk``), this embeds every patient of the run's split with
the weights of each kept epoch (``checkpoints/epoch=*.ckpt``: train with
``--set train.keep_epoch_weights=true``) and with the untrained initialisation (epoch -1), and
reports per epoch, as the mean over sites:

- the Spearman correlation between each planted component and a ridge regression of it on the
  standardised embedding, fitted on the training patients, scored on validation + test patients;
- the C-index of a Cox probe (penalty 0.1 and 1) fitted the same way.

Validation and test patients are pooled to halve the noise of a diagnostic that chooses nothing.
``--modal-check`` also prints, for the selected weights, how far removing the expression moves
the embedding (mean distance over the mean between-patient spread).

Usage::

    PYTHONPATH=src python benchmarks/embedding_content.py RUN_DIR RAW_DIR [--modal-check]

where ``RAW_DIR`` is the ``--out`` of ``modaltune synth``. Writes ``RUN_DIR/embedding_content.csv``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

from modaltune.runs import layout
from modaltune.runs.builders import build_method
from modaltune.runs.evaluate import run_inference
from modaltune.runs.load import load_run
from modaltune.utils import seed_everything

COMPONENTS = ("morph_fraction", "pathway_activity", "stage_true", "risk")


def _epoch_of(path: Path) -> int:
    return int(re.findall(r"epoch=(-?\d+)", path.name)[0])


def _with_epoch(run, path: Path | None):
    """The run's method with the weights of one kept epoch (None: the untrained initialisation)."""
    if path is None:
        seed_everything(int(run.cfg["seed"]))
        run.method = build_method(run.cfg, run.info).to(run.device).eval()
        return run
    sd = layout.read_checkpoint(path)["state_dict"]
    sd = {k[len("method."):]: v for k, v in sd.items() if k.startswith("method.")}
    unexpected = run.method.load_state_dict(sd, strict=False).unexpected_keys
    if unexpected:
        raise SystemExit(f"{path}: keys not in the method: {unexpected[:5]}")
    return run


def _site_scores(emb: dict[str, pd.DataFrame], truth: pd.DataFrame, site: str) -> dict[str, float]:
    def part(name):
        e = emb[name]
        t = truth.loc[e.index]
        keep = (t["site"] == site).to_numpy()
        return e[keep], t[keep]

    x_tr, t_tr = part("train")
    ev = [part("val"), part("test")]
    x_ev, t_ev = pd.concat([e for e, _ in ev]), pd.concat([t for _, t in ev])
    mu, sd = x_tr.mean(), x_tr.std() + 1e-8
    z_tr, z_ev = ((x_tr - mu) / sd).to_numpy(), ((x_ev - mu) / sd).to_numpy()
    out = {}
    for var in COMPONENTS:
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(z_tr, t_tr[var].to_numpy(float))
        out[var] = float(spearmanr(ridge.predict(z_ev), t_ev[var].to_numpy(float))[0])
    df = pd.DataFrame(z_tr)
    df["T"], df["E"] = t_tr["survival_months"].to_numpy(float), t_tr["event"].to_numpy(float)
    for pen in (0.1, 1.0):
        cph = CoxPHFitter(penalizer=pen).fit(df, "T", "E")
        risk = cph.predict_partial_hazard(pd.DataFrame(z_ev)).to_numpy()
        out[f"cox_c_{pen:g}"] = float(concordance_index(t_ev["survival_months"], -risk, t_ev["event"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("raw_dir", type=Path, help="the --out of `modaltune synth` (its truth.csv)")
    ap.add_argument("--modal-check", action="store_true", help="how far removing the expression moves the embedding")
    args = ap.parse_args()
    truth = pd.read_csv(args.raw_dir / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    kept = sorted((args.run_dir / layout.CHECKPOINTS).glob("epoch=*.ckpt"), key=_epoch_of)
    if not kept:
        raise SystemExit(f"{args.run_dir}: no kept epoch weights; train with --set train.keep_epoch_weights=true")
    rows = []
    for path in [None, *kept]:
        run = _with_epoch(load_run(args.run_dir), path)
        emb = {}
        for name in ("train", "val", "test"):
            res = run_inference(run, run.split[name])
            emb[name] = pd.DataFrame(res.embeddings, index=res.ids)
        sites = sorted(set(truth.loc[emb["test"].index, "site"]))
        per_site = pd.DataFrame({s: _site_scores(emb, truth, s) for s in sites}).T
        rows.append({"epoch": -1 if path is None else _epoch_of(path), **per_site.mean().to_dict()})
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    pd.DataFrame(rows).to_csv(args.run_dir / "embedding_content.csv", index=False)
    if args.modal_check:
        run = load_run(args.run_dir)
        ids = run.split["val"]
        a = run_inference(run, ids).embeddings
        b = run_inference(run, ids, absent=["omics"]).embeddings
        spread = np.linalg.norm(a - a.mean(0), axis=1).mean()
        print(f"removing the expression moves the embedding by {np.linalg.norm(a - b, axis=1).mean() / spread:.3f} "
              "of the mean between-patient spread")


if __name__ == "__main__":
    main()
