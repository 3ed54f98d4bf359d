"""Diagnostic: where do the disentangled models look on a focal cohort? (issue 13)

On a subspace cohort written with ``make_subspace_cohort(..., molecular_fraction < 1)`` the slides
carry the molecular state only in a small contiguous focus of tumor patches (``truth_patches/*.h5``:
``molecular_20x``). A slide-only model can only use it if its pooling gives the focus more weight
than its share of the bag; a teacher can only teach the student where the focus is if the teacher
itself looks there. For trained runs this measures, on each run's test patients that have focus
patches (20x, the bag each model reads):

- ``dmsf_student`` / ``dmsf_distill``: the informative-token aggregation's merge weights
  ``omega = exp(w^T LN(z))`` (``weight_ratio``: the share of the total weight on focus tokens over
  the focus share of the tokens; 1 = the focus is pooled like any token), the same within the
  cluster holding most of the focus (``weight_ratio_cluster``), the AUC with which ``omega`` ranks
  focus tokens above the other tumor tokens (``score_auc``), and how linearly separable focus
  tokens are from the other tumor tokens (logistic regression fitted on the training patients'
  tokens, AUC on the test patients'): in the input features (``token_auc_input``) and in the
  tokens the aggregation merges (``token_auc_tokens``);
- ``dmsf_teacher``: the share of the deformable gene-to-histology attention (per subspace, averaged
  over heads and queries, each sampled point assigned to the grid cell it falls in) that lands on
  focus tokens, over the focus share (``attention_ratio_tumor`` / ``attention_ratio_tme``);
- ``abmil_plain`` (and any method with a :class:`PaperABMIL` branch ``wsi``): the attention share
  on focus patches of the full bag over their share (``attention_ratio``).

Usage::

    PYTHONPATH=src python benchmarks/focus_probe.py RAW_DIR RUN_DIR [RUN_DIR ...]

``RAW_DIR`` is the generator's output (for ``truth_patches``); each ``RUN_DIR`` a trained run
(``.../<method>/<site>/fold<k>_seed<s>/<task>``). One JSON line per run.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modaltune.benchmark.compartments import _source_index
from modaltune.data.patient import collate_single, collate_stack
from modaltune.runs.builders import make_dataset
from modaltune.runs.inference import move_to
from modaltune.runs.load import load_run


def _truth(truth_dir: Path, paths: list[str], key: str) -> np.ndarray:
    out = []
    for p in paths:
        with h5py.File(truth_dir / f"{Path(p).stem}.h5", "r") as f:
            out.append(f[key][:])
    return np.concatenate(out)


def _patients(run, part: str, truth_dir: Path, fixed: bool):
    """(index in the dataset, batch, focus mask, tumor mask) per patient of a split part."""
    man = run.cohort.manifest
    grid = int(run.cfg["data"].get("grid", 0))
    ds = make_dataset(run.cohort, run.split[part], run.state, run.cfg, train=False)
    for i, case in enumerate(run.split[part]):
        paths = [p for p in str(man.at[case, "slide_paths"] or "").split(";") if p]
        if not paths:
            continue
        idx = _source_index(paths, grid) if fixed else slice(None)
        focus = _truth(truth_dir, paths, "molecular_20x")[idx].astype(bool)
        tumor = _truth(truth_dir, paths, "tumor_20x")[idx].astype(bool)
        collate = collate_stack if fixed else collate_single
        yield move_to(collate([ds[i]]), run.device), focus, tumor


def _student_tokens(run, part: str, truth_dir: Path) -> list[dict]:
    ex = run.method.experts["m20"]
    captured: dict = {}
    hook = ex.ita.register_forward_hook(lambda m, i, o: captured.update(z=i[0].detach()))
    rows = []
    try:
        for batch, focus, tumor in _patients(run, part, truth_dir, fixed=True):
            with torch.no_grad():
                out = run.method.forward_experts(batch)
                y = ex.ita.norm(captured["z"])[0]
                w = torch.exp(ex.ita.score(y).float()).squeeze(-1)
            rows.append({"x": run.method.bag(batch, "m20")[0].numpy(), "y": y.float().numpy(), "w": w.numpy(),
                         "a": out["m20"]["assignment"][0].numpy(), "focus": focus, "tumor": tumor})
    finally:
        hook.remove()
    return rows


def student_probe(run, truth_dir: Path) -> dict:
    """The ITA weights and token separability of a student run (module docstring)."""
    train, test = _student_tokens(run, "train", truth_dir), _student_tokens(run, "test", truth_dir)
    ratio, ratio_c, scores, labels = [], [], [], []
    for r in test:
        if not r["focus"].any():
            continue
        ratio.append(r["w"][r["focus"]].sum() / r["w"].sum() / r["focus"].mean())
        c = r["a"] == np.bincount(r["a"][r["focus"]]).argmax()
        ratio_c.append(r["w"][r["focus"] & c].sum() / r["w"][c].sum() / (r["focus"] & c).mean() * c.mean())
        scores.append(np.log(r["w"][r["tumor"]]))
        labels.append(r["focus"][r["tumor"]])
    out = {"patients": len(ratio), "focus_share": float(np.mean([r["focus"].mean() for r in test])),
           "weight_ratio": float(np.mean(ratio)), "weight_ratio_cluster": float(np.mean(ratio_c)),
           "score_auc": float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))}
    for key, name in (("x", "token_auc_input"), ("y", "token_auc_tokens")):
        def stack(rows):
            return (np.concatenate([r[key][r["tumor"]] for r in rows]),
                    np.concatenate([r["focus"][r["tumor"]] for r in rows]))
        (xa, ya), (xb, yb) = stack(train), stack(test)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(xa, ya)
        out[name] = float(roc_auc_score(yb, clf.predict_proba(xb)[:, 1]))
    return out


def teacher_probe(run, truth_dir: Path) -> dict:
    """Share of the teacher's 20x deformable attention on focus tokens over their share."""
    ex = run.method.experts["m20"]
    grid = int(run.cfg["data"]["grid"])
    captured: dict = {}
    for s, module in ex.dca.items():
        def forward(q, kv=None, return_attention=False, _s=s, _f=module.forward):
            out = _f(q, kv, return_attention=True)
            captured[_s] = out[1:]
            return out if return_attention else out[0]
        module.forward = forward
    ratios: dict[str, list[float]] = {s: [] for s in ex.dca}
    for batch, focus, _ in _patients(run, "test", truth_dir, fixed=True):
        if not focus.any():
            continue
        with torch.no_grad():
            run.method.forward_experts(batch)
        for s, (att, pos) in captured.items():
            groups = pos.shape[1]
            mass = att[0].float().reshape(groups, -1, *att.shape[2:]).mean(dim=(1, 2)).numpy()  # [G, keys]
            p = pos[0].float().reshape(groups, -1, 2)
            # grid_sample(align_corners=False): cell j spans [2j/W - 1, 2(j+1)/W - 1)
            col = ((p[..., 0] + 1) / 2 * grid).floor().clamp(0, grid - 1).long()
            row = ((p[..., 1] + 1) / 2 * grid).floor().clamp(0, grid - 1).long()
            on = focus[(row * grid + col).numpy()]
            ratios[s].append(float((mass * on).sum() / mass.sum() / focus.mean()))
    return {"patients": len(next(iter(ratios.values()))),
            **{f"attention_ratio_{s}": float(np.mean(v)) for s, v in ratios.items()}}


def abmil_probe(run, truth_dir: Path) -> dict:
    """Share of a plain ABMIL's attention on focus patches over their share."""
    branch = run.method.wsi
    ratios = []
    for batch, focus, _ in _patients(run, "test", truth_dir, fixed=False):
        if not focus.any():
            continue
        with torch.no_grad():
            a = branch.attention_weights(batch["bag"].float()[None])[0].numpy()
        ratios.append(float(a[focus].sum() / focus.mean()))
    return {"patients": len(ratios), "attention_ratio": float(np.mean(ratios))}


def probe(run_dir: str | Path, raw_dir: str | Path) -> dict:
    """The probe that fits the run's method (module docstring)."""
    run = load_run(run_dir)
    truth_dir = Path(raw_dir) / "truth_patches"
    method = run.cfg["method"]
    if method in ("dmsf_student", "dmsf_distill"):
        res = student_probe(run, truth_dir)
    elif method == "dmsf_teacher":
        res = teacher_probe(run, truth_dir)
    elif hasattr(getattr(run.method, "wsi", None), "attention_weights"):
        res = abmil_probe(run, truth_dir)
    else:
        raise SystemExit(f"{run_dir}: no focus probe for method {method!r}")
    return {"run": str(run_dir), "method": method, **res}


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    for rd in sys.argv[2:]:
        print(json.dumps(probe(rd, sys.argv[1])), flush=True)
