"""Diagnostic: other survival readouts of a ModalTune run's selected weights (issue 15).

ModalTune is scored by a per-site Cox probe on the general-task output (the paper's protocol, with
the penalty chosen on validation). This asks whether another readout of the *same* weights would
rank patients better, scoring each on the run's validation and test patients, per site:

- ``general``: the default probe (reproduces the run's ``metrics.json``);
- ``survival``: the same probe on the survival-task output;
- ``concat``: on both outputs concatenated;
- ``head``: the survival head's own risk (``model.survival_head``), no probe;
- ``probe+head``: the sum of the probe's and the head's risk, each z-scored with the site's
  training patients.

The test split is scored for the diagnosis only; a readout would be chosen on the validation rows.

Usage::

    PYTHONPATH=src python benchmarks/readouts.py RUN_DIR [RUN_DIR ...]

Prints one table per run and writes ``RUN_DIR/readouts.csv``.
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from modaltune.evaluation.metrics import c_index
from modaltune.evaluation.per_site import probe_metrics, survival_arrays
from modaltune.methods.losses import survival_risk
from modaltune.runs.builders import manifest_rows
from modaltune.runs.evaluate import run_inference
from modaltune.runs.load import load_run

warnings.simplefilter("ignore")


def outputs(run, ids):
    """Per readout, ``[n, d]`` features of ``ids`` (one forward pass per patient)."""
    m = run.method

    def embed(batch):
        with m._eval_mode():
            z = m.forward(batch)
            g, s = z[m.general_index], z[m._task_index("survival")]
            head = survival_risk(m.survival_head(g)).reshape(1)
        return torch.cat([g, s, head])
    m.embed = embed
    res = run_inference(run, ids)
    e = np.asarray(res.embeddings)
    d = (e.shape[1] - 1) // 2
    return {"general": e[:, :d], "survival": e[:, d:2 * d], "concat": e[:, :2 * d], "head": e[:, 2 * d:]}, res.ids


def site_c(df, risk):
    """C-index of ``risk`` per site."""
    t, e, has = survival_arrays(df)
    out = {}
    for s in sorted(set(df["site"].astype(str))):
        k = (df["site"].astype(str).to_numpy() == s) & has
        out[s] = c_index(t[k], e[k], risk[k])
    return out


def main(run_dir: str) -> None:
    """Score every readout of one run on its validation and test patients."""
    run = load_run(run_dir)
    if getattr(run.method, "survival_head", None) is None or not hasattr(run.method, "general_index"):
        raise SystemExit(f"{run_dir}: not a ModalTune run with a survival head (model.survival_head: true)")
    sp = run.split
    dfs = {k: manifest_rows(run.cohort, sp[k]) for k in ("train", "val", "test")}
    outs = {k: outputs(run, sp[k])[0] for k in ("train", "val", "test")}
    rows = {}
    probe_risk = {}
    for name in ("general", "survival", "concat"):
        for part in ("val", "test"):
            met, pr = probe_metrics(outs["train"][name], outs[part][name], dfs["train"], dfs[part], cfg=run.cfg,
                                    return_predictions=True, val=(outs["val"][name], dfs["val"]))
            rows[(name, part)] = {s: met[s]["c_index"] for s in met}
            if name == "general":
                probe_risk[part] = pr["risk"].to_numpy(float)
    met, pr = probe_metrics(outs["train"]["general"], outs["train"]["general"], dfs["train"], dfs["train"],
                            cfg=run.cfg, return_predictions=True, val=(outs["val"]["general"], dfs["val"]))
    probe_risk["train"] = pr["risk"].to_numpy(float)
    for part in ("val", "test"):
        head = outs[part]["head"][:, 0]
        rows[("head", part)] = site_c(dfs[part], head)
        ens = np.zeros(len(head))
        for s in set(dfs[part]["site"].astype(str)):
            kt = dfs["train"]["site"].astype(str).to_numpy() == s
            kp = dfs[part]["site"].astype(str).to_numpy() == s
            zs = []
            for r_tr, r in ((probe_risk["train"][kt], probe_risk[part][kp]),
                            (outs["train"]["head"][kt, 0], head[kp])):
                zs.append((r - r_tr.mean()) / (r_tr.std() + 1e-12))
            ens[kp] = zs[0] + zs[1]
        rows[("probe+head", part)] = site_c(dfs[part], ens)
    df = pd.DataFrame(rows).T
    df["mean"] = df.mean(axis=1)
    print(run_dir)
    print(df.round(3).to_string())
    df.to_csv(Path(run_dir) / "readouts.csv")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for r in sys.argv[1:]:
        main(r)
