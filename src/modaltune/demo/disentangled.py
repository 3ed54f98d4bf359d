"""``modaltune demo --system disentangled``: the tumor / microenvironment teacher, the slide-only
student and its distillation, on the synthetic subspace cohort, on a CPU.

Steps (each writes under ``--out``; a re-run resumes):

1. ``raw/``: :func:`~modaltune.synthetic.make_subspace_cohort` -- tumor and microenvironment gene
   sets driven by their own latent factors, slides with spatially separate tumor and TME regions
   whose morphology follows those factors at 20x and 10x, a WHO-2021 diagnosis, survival, and the
   compartment of every patch;
2. ``cohort/``: ``prepare`` with both magnifications and the shipped WHO-2021 grouping;
3. ``benchmark/``: k-fold cross-validation (the paper's 3 folds) of the teacher (genes + slides), the
   student (slides), the distilled student (slides at test), and baselines (ABMIL, SNN, ABMIL + SNN,
   LM / AE): diagnosis (AUC, accuracy, F1) and survival (C-index);
4. the student's token clusters against the planted compartments (adjusted Rand index);
5. ``demo_results.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..utils import write_json
from .common import check_settings

__all__ = ["run_disentangled_demo", "DISENTANGLED_DEMO_METHODS"]

#: the teacher, student and distillation, and the baselines of the paper's Tables I-II
DISENTANGLED_DEMO_METHODS = ("dmsf_teacher", "dmsf_student", "dmsf_distill", "abmil_plain", "snn", "abmil_snn_cat",
                             "abmil_lm", "abmil_ae")
QUICK_PATIENTS = 48
QUICK_OVERRIDES = ("train.epochs=2",)   # every stage of a chain is resolved with it
#: every model of the tables trains with the class-weighted cross-entropy, as the paper's trainer does,
#: and chooses its epoch on validation AUC (classification) or C-index (survival), as the DMSF methods
#: do (elsewhere the label-trained baselines' ``model.class_weights`` is ``none`` and their
#: classification epoch is chosen on validation balanced accuracy)
TABLE_OVERRIDES = ("model.class_weights=balanced", "train.select_metric={subtype: val_auc, survival: val_c_index}")


def run_disentangled_demo(out: str | Path = "modaltune_demo_disentangled", *, quick: bool = False, seed: int = 0,
                          folds: int = 3, methods=DISENTANGLED_DEMO_METHODS, jobs: int = 1) -> dict:
    """Run the disentangled-framework demo; returns the results also written to ``OUT/demo_results.json``."""
    from ..benchmark.compartments import compartment_agreement, summarise_agreement
    from ..benchmark.runner import Benchmark
    from ..config import resolve_config
    from ..data.prepare import prepare_cohort
    from ..synthetic import SUBSPACE_GROUPINGS, make_subspace_cohort

    t0 = time.time()
    out = Path(out)
    check_settings(out, {"system": "disentangled", "quick": bool(quick), "seed": int(seed), "folds": int(folds)})
    raw, cohort_dir, bench_dir = out / "raw", out / "cohort", out / "benchmark"
    print(f"[1/4] synthetic subspace cohort (tumor / microenvironment) -> {raw}")
    if not (raw / "truth.csv").exists():
        make_subspace_cohort(raw, seed=seed, **({"patients": QUICK_PATIENTS} if quick else {}))
    print(f"[2/4] prepare cohort (20x + 10x, WHO-2021 classes) -> {cohort_dir}")
    if not (cohort_dir / "manifest.csv").exists():
        prepare_cohort(cohort_dir, features=raw / "features_20x", features_secondary=raw / "features_10x",
                       clinical=raw / "clinical.tsv", expression=raw / "expression.tsv",
                       gene_sets=raw / "pathways.gmt", grouping=SUBSPACE_GROUPINGS["who2021"])
        print((cohort_dir / "summary.txt").read_text())
    print(f"[3/4] {folds}-fold cross-validation of {', '.join(methods)} -> {bench_dir}")
    bench = Benchmark(cohort_dir, list(methods), seeds=[seed], folds=folds, config="cpu_small",
                      overrides=[*TABLE_OVERRIDES, *(QUICK_OVERRIDES if quick else ())], out=bench_dir, ood=False,
                      metrics=["auc", "accuracy", "f1", "c_index"])
    bench.train_parallel(jobs)       # independent cells in parallel processes (same results)
    bench.run_in_domain()
    paths = bench.write()
    md = Path(paths["markdown"]).read_text()
    print("[4/4] the student's token clusters against the planted tissue compartments")
    rows = []
    for spec in bench.specs:
        if spec.name not in ("dmsf_student", "dmsf_distill"):
            continue
        for unit in bench.units:
            run = next(r for r in bench.plan(spec, unit, "subtype", bench.sites) if r.final)
            summary = summarise_agreement(compartment_agreement(run.run_dir, raw / "truth_patches", bench.cohort))
            rows.append({"method": spec.label, "unit": unit.name, **summary})
    if rows:
        agree = pd.DataFrame(rows)
        agree.to_csv(bench_dir / "compartments.csv", index=False)
        md += "\n**Student token clusters vs planted compartments (20x, test patients; ARI 0 = chance)**\n\n"
        md += ("| Method | ARI | accuracy | chance accuracy | p (ARI > 0) | tumor in prototype 0 |\n"
               "|---|---|---|---|---|---|\n")
        for method, g in agree.groupby("method"):
            md += (f"| {method} | {g['ari'].mean():.3f} | {g['accuracy'].mean():.3f} | "
                   f"{g['chance_accuracy'].mean():.3f} | {g['p_ari_above_0'].max():.2g} | "
                   f"{g['tumor_first'].mean():.0%} |\n")
    minutes = (time.time() - t0) / 60
    grid = resolve_config("dmsf_teacher", file="cpu_small")["data"]["grid"]
    md += (f"\nSynthetic subspace cohort (seed {seed}), {folds} folds, CPU-small config (bags resampled to "
           f"{grid} x {grid} patches). {minutes:.1f} min. Runs: {bench_dir / 'runs'}\n")
    (out / "demo_results.md").write_text(md)
    summary = {"system": "disentangled", "seed": seed, "quick": quick, "folds": folds, "minutes": round(minutes, 2),
               "methods": list(methods), "results": pd.read_csv(bench_dir / "results.csv").to_dict(orient="records")}
    write_json(out / "demo_results.json", summary)
    print()
    print(md)
    print(f"demo finished in {minutes:.1f} min; results in {out / 'demo_results.md'}")
    return summary
