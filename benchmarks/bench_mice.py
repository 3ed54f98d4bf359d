"""Benchmark: one MICE pre-training epoch over the synthetic pan-cancer cohort.

Writes the synthetic pan-cancer cohort (:func:`modaltune.synthetic.make_pan_cancer`, default sizes:
8 sites, 980 patients, 64-d patch features, 32-128 patches per patient), prepares it (one site per
TCGA project), and times a one-epoch pre-training run of ``mice`` (the pooled ``pretrain`` stage:
batches of 4 patients, survival + multi-view contrastive loss) with the paper widths (``--config``
none) or the CPU-small widths (``--config cpu_small``), on the first fold's training patients.
Reports the wall time of the epoch (the engine's ``train_time_s``, validation scoring excluded) and
patients per second.

Usage::

    PYTHONPATH=src python benchmarks/bench_mice.py --work /tmp/bench_mice          # paper widths
    PYTHONPATH=src python benchmarks/bench_mice.py --work /tmp/bench_mice --config cpu_small

Prints a line and writes JSON to ``--out`` (default ``benchmarks/results/bench_mice_<time>.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    """Build the cohort once, train one pre-training epoch, report its time."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="directory for the cohort and the run")
    p.add_argument("--config", default=None, help="a config file or shipped name (default: the paper widths)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import pandas as pd

    from modaltune.chains import Resolver, plan_chain
    from modaltune.data.cohort import Cohort
    from modaltune.data.prepare import prepare_cohort
    from modaltune.pipeline import resolve_split, restrict_split
    from modaltune.synthetic import make_pan_cancer
    from modaltune.training.engine import train_method

    raw, cohort_dir = args.work / "raw", args.work / "cohort"
    if not (raw / "truth.csv").exists():
        make_pan_cancer(raw, seed=0)
    if not (cohort_dir / "manifest.csv").exists():
        prepare_cohort(cohort_dir, features=raw / "features_20x", clinical=raw / "clinical.tsv",
                       expression=raw / "expression.tsv", gene_sets=raw / "pathways.gmt", reports=raw / "reports.csv",
                       site_scheme="tcga_project")
    cohort = Cohort.load(cohort_dir)
    over = ["data.split=kfold", "data.n_folds=5", "data.fold=0", "train.progress_bar=false",
            "stages.pretrain.train.epochs=1"]
    plan = plan_chain("mice", cohort, Resolver(args.config, over), lambda s, w, f, o: args.work / "runs" / s.name / w)
    pre = plan[0]
    split = restrict_split(resolve_split(pre.cfg, cohort), cohort, pre.sites)
    t0 = time.time()
    train_method(pre.cfg, cohort, split, pre.run_dir)
    wall = time.time() - t0
    hist = pd.read_csv(pre.run_dir / "history.csv")
    epoch = float(hist["train_time_s"].iloc[0])
    n = len(split["train"])
    row = {"config": args.config or "paper widths", "patients": n, "sites": len(pre.sites),
           "epoch_s": epoch, "patients_per_s": n / epoch, "run_wall_s": wall,
           "batch_size": pre.cfg["train"]["batch_size"], "model": pre.cfg["model"]}
    print(f"MICE pre-training epoch ({row['config']}): {n} patients over {row['sites']} sites in {epoch:.1f} s "
          f"({row['patients_per_s']:.1f} patients/s; whole run incl. caches and validation {wall:.1f} s)")
    out = args.out or HERE / "results" / f"bench_mice_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"row": row, "machine": platform.platform(), "processor": platform.processor()},
                              indent=2, default=str))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
