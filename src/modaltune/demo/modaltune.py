"""``modaltune demo`` (ModalTune): the whole pipeline on the built-in synthetic cohort, on a CPU, in minutes.

Steps (each writes its files under ``--out``):

1. ``raw/``: the synthetic cohort in standard formats (TRIDENT-style h5 features at two
   magnifications, GDC clinical TSV, Xena expression, GMT, reports) with its true risk;
2. ``cohort/``: ``modaltune prepare`` of those files (validation, alignment, summary);
3. ``benchmark/``: ModalTune (CPU-small config) per site and pan-cancer, and -- unless
   ``--no-benchmark`` -- a few label-trained baselines, all on the same split; in-domain test
   metrics (Table 2 style) and out-of-distribution linear probing on the held-out site
   (Table 3 style), Kaplan-Meier curves, bootstrap CIs and paired tests;
4. ``demo_results.md`` / ``demo_results.json``: the tables with the oracle C-index (the true
   risk scored on the same test patients: the ceiling any model can reach) beside them.

Re-running into the same ``--out`` resumes: finished runs are not redone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import write_json
from .common import check_settings, with_oracle

#: WSI-only, genomics-only and multi-modal representatives, each a few seconds per run on a CPU.
DEMO_BASELINES = ("abmil", "snn", "abmil_cat")
QUICK_PATIENTS = 40          # per site, for --quick (tests)
QUICK_OVERRIDES = ("train.epochs=3", "train.warmup_epochs=1")


def _synthesize(raw: Path, seed: int, quick: bool) -> dict:
    from ..synthetic import make_synthetic

    truth = raw / "truth.json"
    if truth.exists():
        return json.loads(truth.read_text())
    return make_synthetic(raw, seed=seed, patients=QUICK_PATIENTS if quick else None)


def _prepare(raw: Path, cohort_dir: Path, ood_sites) -> None:
    from ..data.prepare import prepare_cohort

    if (cohort_dir / "manifest.csv").exists():
        return
    prepare_cohort(cohort_dir, features=raw / "features_20x", features_secondary=raw / "features_10x",
                   clinical=raw / "clinical.tsv", expression=raw / "expression.tsv", gene_sets=raw / "pathways.gmt",
                   reports=raw / "reports.csv", ood_sites=tuple(ood_sites))
    print((cohort_dir / "summary.txt").read_text())


def oracle_c_index(raw: Path, cohort_dir: Path, seed: int, sites) -> dict[str, float]:
    """Harrell's C-index of the planted true risk on each site's test patients of the demo split."""
    from ..evaluation.metrics import c_index

    truth = pd.read_csv(raw / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    split = pd.read_csv(cohort_dir / "splits" / f"holdout_seed{seed}.csv", dtype=str)
    test = [c for c in split.loc[split["split"] == "test", "case_id"] if c in truth.index]
    t = truth.loc[test]
    out = {}
    for site in sites:
        g = t[t["site"] == site]
        out[site] = c_index(g["survival_months"].to_numpy(float), g["event"].to_numpy(int), g["risk"].to_numpy(float))
    out["Overall"] = float(np.nanmean([out[s] for s in sites])) if sites else float("nan")
    return out


def ood_note(cohort_dir: Path, seed: int, sites) -> str:
    """One sentence on the size of the OOD test sets: with a dozen patients and a few events a
    C-index is noise, and the table says so rather than letting a value below 0.5 read as a result."""
    man = pd.read_csv(cohort_dir / "manifest.csv", dtype={"case_id": str}).set_index("case_id")
    split = pd.read_csv(cohort_dir / "splits" / f"holdout_seed{seed}.csv", dtype=str)
    test = [c for c in split.loc[split["split"] == "test", "case_id"] if c in man.index]
    parts = []
    for site in sites:
        g = man.loc[test][man.loc[test, "site"] == site]
        parts.append(f"{site} {len(g)} test patients, {int(pd.to_numeric(g['event'], errors='coerce').fillna(0).sum())} "
                     "events")
    return (f"Out-of-distribution test sets: {'; '.join(parts)}. A C-index from this few events is mostly "
            "noise (its bootstrap interval, in the benchmark's confidence_intervals.csv, spans tenths), so an "
            "OOD value below 0.5 here is not evidence of a failure; benchmarks/README.md has larger cohorts.\n")


def run_demo(out: str | Path = "modaltune_demo", *, quick: bool = False, seed: int = 0, benchmark: bool = True,
             methods=None, jobs: int = 1) -> dict:
    """Run the demo; returns the results dict also written to ``OUT/demo_results.json``."""
    from ..benchmark.runner import Benchmark

    t0 = time.time()
    out = Path(out)
    check_settings(out, {"quick": bool(quick), "seed": int(seed)})
    raw, cohort_dir, bench_dir = out / "raw", out / "cohort", out / "benchmark"
    print(f"[1/3] synthetic cohort -> {raw}")
    info = _synthesize(raw, seed, quick)
    print(f"[2/3] prepare cohort -> {cohort_dir}")
    _prepare(raw, cohort_dir, info["ood_sites"])
    if methods is None:
        methods = ["modaltune", "modaltune:pan"] + (list(DEMO_BASELINES) if benchmark else [])
    print(f"[3/3] train and evaluate {', '.join(methods)} -> {bench_dir}")
    bench = Benchmark(cohort_dir, methods, seeds=[seed], config="cpu_small",
                      overrides=list(QUICK_OVERRIDES) if quick else [], out=bench_dir, ood=True,
                      ood_supervised=[m for m in methods if m in ("abmil_cat",)][:1])
    bench.train_parallel(jobs)       # independent cells in parallel processes (same results)
    bench.run_in_domain()
    bench.run_ood()
    paths = bench.write()

    oracle = oracle_c_index(raw, cohort_dir, seed, bench.sites)
    oracle_ood = oracle_c_index(raw, cohort_dir, seed, bench.ood_sites) if bench.ood_sites else {}
    md = with_oracle(Path(paths["markdown"]).read_text(), oracle, bench.sites)
    if "ood_markdown" in paths:
        md += "\n" + with_oracle(Path(paths["ood_markdown"]).read_text(), oracle_ood, bench.ood_sites)
        md += "\n" + ood_note(cohort_dir, seed, bench.ood_sites)
    minutes = (time.time() - t0) / 60
    md += (f"\nSynthetic cohort (seed {seed}), one seed, CPU-small config; oracle = the planted true risk on the "
           f"same test patients. Test sets this small (about 20 patients and a handful of events per "
           f"site) make single C-index values noisy; benchmarks/README.md compares the methods on 180 "
           f"patients per site over 3 seeds. {minutes:.1f} min. Runs: {bench_dir / 'runs'}\n")
    (out / "demo_results.md").write_text(md)
    results = pd.read_csv(bench_dir / "results.csv")
    summary = {
        "seed": seed, "quick": quick, "minutes": round(minutes, 2), "methods": methods,
        "sites": bench.sites, "ood_sites": bench.ood_sites,
        "oracle_c_index": oracle, "oracle_c_index_ood": oracle_ood,
        "results": results.to_dict(orient="records"),
        "files": {k: str(v) for k, v in paths.items()},
    }
    write_json(out / "demo_results.json", summary)
    print()
    print(md)
    print(f"demo finished in {minutes:.1f} min; results in {out / 'demo_results.md'} and {out / 'demo_results.json'}")
    return summary
