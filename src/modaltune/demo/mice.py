"""``modaltune demo --system mice``: MICE on the synthetic pan-cancer cohort, on a CPU.

Steps (each writes under ``--out``; a re-run resumes):

1. ``raw/``: :func:`~modaltune.synthetic.make_pan_cancer` -- sites sharing an expression risk
   program, site-specific morphology, reports whose grade and stage words carry risk, patients
   without expression or a report kept;
2. ``cohort/``: ``prepare`` with the per-project site scheme (LUAD / LUSC, KIRC / KIRP apart);
3. ``benchmark/``: k-fold cross-validation of MICE (pan-cancer pre-training on every site's training
   part, then per-site fine-tuning) against MICE trained per site from scratch and its baselines,
   genomics removed from every test patient (MICE's missing-modality path), the training parts cut
   to 25 % (pre-training helps most where data are scarce), and Shapley modality shares;
4. ``demo_results.md``: the tables with the oracle C-index (the planted risk on the same test folds).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import write_json
from .common import check_settings, with_oracle

__all__ = ["run_mice_demo", "MICE_DEMO_METHODS", "fold_oracle"]

#: MICE, its per-site reference and the baselines of its tables (fast enough for a CPU demo)
MICE_DEMO_METHODS = ("mice", "mice_scratch", "mice_report", "mice_path", "mice_gene", "mice_early", "mice_late")
QUICK_PATIENTS = 24
#: patients per site of the demo cohort: the generator's sites at 60 (two small sites at 25), so 5-fold
#: cross-validation of every method fits in about an hour of one CPU core
DEMO_PATIENTS = {"BRCA": 60, "LUAD": 60, "LUSC": 60, "KIRC": 60, "KIRP": 25, "COAD": 60, "STAD": 25, "HNSC": 60}
QUICK_OVERRIDES = ("stages.pretrain.train.epochs=2", "stages.finetune.train.epochs=1", "train.epochs=2")


def fold_oracle(truth: Path, cohort_dir: Path, n_folds: int, split_seed: int, sites) -> dict[str, float]:
    """Mean over folds of the planted risk's C-index on each fold's test patients, per site."""
    from ..synthetic import oracle_c_index

    per_site: dict[str, list[float]] = {s: [] for s in sites}
    for f in range(n_folds):
        split = pd.read_csv(cohort_dir / "splits" / f"kfold{n_folds}_seed{split_seed}_fold{f}.csv", dtype=str)
        res = oracle_c_index(truth, split.loc[split["split"] == "test", "case_id"])
        for s in sites:
            per_site[s].append(res["sites"].get(s, float("nan")))
    out = {s: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for s, v in per_site.items()}
    out["Overall"] = float(np.nanmean([out[s] for s in sites])) if sites else float("nan")
    return out


def run_mice_demo(out: str | Path = "modaltune_demo_mice", *, quick: bool = False, seed: int = 0, folds: int = 3,
                  methods=MICE_DEMO_METHODS, jobs: int = 1) -> dict:
    """Run the MICE demo; returns the results dict also written to ``OUT/demo_results.json``."""
    from ..benchmark.runner import Benchmark
    from ..data.prepare import prepare_cohort
    from ..synthetic import make_pan_cancer

    t0 = time.time()
    out = Path(out)
    check_settings(out, {"system": "mice", "quick": bool(quick), "seed": int(seed), "folds": int(folds)})
    raw, cohort_dir, bench_dir = out / "raw", out / "cohort", out / "benchmark"
    print(f"[1/3] synthetic pan-cancer cohort -> {raw}")
    if not (raw / "truth.csv").exists():
        make_pan_cancer(raw, seed=seed, patients=QUICK_PATIENTS if quick else DEMO_PATIENTS)
    print(f"[2/3] prepare cohort (one site per TCGA project) -> {cohort_dir}")
    if not (cohort_dir / "manifest.csv").exists():
        prepare_cohort(cohort_dir, features=raw / "features_20x", clinical=raw / "clinical.tsv",
                       expression=raw / "expression.tsv", gene_sets=raw / "pathways.gmt", reports=raw / "reports.csv",
                       site_scheme="tcga_project")
        print((cohort_dir / "summary.txt").read_text())
    print(f"[3/3] {folds}-fold cross-validation of {', '.join(methods)} -> {bench_dir}")
    bench = Benchmark(cohort_dir, list(methods), seeds=[seed], folds=folds, config="cpu_small",
                      overrides=list(QUICK_OVERRIDES) if quick else [], out=bench_dir, ood=False,
                      metrics=["c_index"], drop_at_test=["omics"], train_fractions=[0.25], attribution=True)
    bench.train_parallel(jobs)       # independent cells in parallel processes (same results)
    bench.run_in_domain()
    paths = bench.write()
    oracle = fold_oracle(raw / "truth.csv", cohort_dir, folds, bench.split_seed, bench.sites)
    md = with_oracle(Path(paths["markdown"]).read_text(), oracle, bench.sites)
    for key in ("missing_markdown", "efficiency"):
        if key in paths:
            md += "\n" + Path(paths[key]).read_text()
    if (bench_dir / "attribution.csv").exists():
        att = pd.read_csv(bench_dir / "attribution.csv")
        cols = [c for c in att if c.startswith("share_")]
        shares = att[att["site"] == "overall"].groupby("method")[cols].mean()
        md += "\n**Shapley share of each modality in the predicted risk (test patients, mean over folds)**\n\n"
        md += "| Method | " + " | ".join(c.removeprefix("share_") for c in cols) + " |\n"
        md += "|---|" + "---|" * len(cols) + "\n"
        for method, row in shares.iterrows():
            md += f"| {method} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |\n"
    minutes = (time.time() - t0) / 60
    md += (f"\nSynthetic pan-cancer cohort (seed {seed}), {folds} folds, CPU-small config; oracle = the planted "
           f"risk on the same test folds. {minutes:.1f} min. Runs: {bench_dir / 'runs'}\n")
    (out / "demo_results.md").write_text(md)
    summary = {"system": "mice", "seed": seed, "quick": quick, "folds": folds, "minutes": round(minutes, 2),
               "methods": list(methods), "sites": bench.sites, "oracle_c_index": oracle,
               "results": pd.read_csv(bench_dir / "results.csv").to_dict(orient="records")}
    write_json(out / "demo_results.json", summary)
    print()
    print(md)
    print(f"demo finished in {minutes:.1f} min; results in {out / 'demo_results.md'}")
    return summary
