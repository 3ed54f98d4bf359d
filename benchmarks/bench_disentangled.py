"""Benchmark: one training step of the disentangled teacher and student (batch 8, 50 x 50 grid).

Times an optimiser step (forward, backward, AdamW step) of ``dmsf_teacher`` (genes + slides at 20x
and 10x, DEV on, CGC applied by the method's gradient hook) and ``dmsf_student`` (slides only,
deformable self-attention + DPC-KNN aggregation) on a stacked batch of ``--batch`` patients whose
bags are ``grid^2`` patches of ``--dim``-d features at both magnifications (the paper: 1,024-d
ResNet-50 features, 2,500 patches), with the paper-size model widths (128 hidden, 8 heads of 64).

Each method runs in its own subprocess so that, on CPU, ``ru_maxrss`` is that method's peak resident
memory; the peak is reported as the increase over the worker's resident memory after building the
inputs (on CUDA: ``torch.cuda.max_memory_allocated``). ``--warmup`` untimed steps, then the median of
``--reps`` timed steps.

Usage::

    PYTHONPATH=src python benchmarks/bench_disentangled.py                      # paper size
    PYTHONPATH=src python benchmarks/bench_disentangled.py --grid 8 --reps 1 --warmup 0 --dim 32

Prints a table and writes JSON to ``--out`` (default ``benchmarks/results/bench_disentangled_<time>.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("dmsf_teacher", "dmsf_student")


def _batch(args, n_genes: int):
    import torch

    g = torch.Generator().manual_seed(0)
    n = args.grid ** 2
    b = args.batch
    return {"bag": torch.randn(b, n, args.dim, generator=g), "coords": torch.zeros(b, n, 2),
            "bag_secondary": torch.randn(b, n, args.dim, generator=g), "coords_secondary": torch.zeros(b, n, 2),
            "omics": torch.randn(b, n_genes, generator=g), "subtype": torch.arange(b) % 4,
            "survival_bin": torch.zeros(b, dtype=torch.long), "event": torch.zeros(b),
            "has_survival": torch.ones(b, dtype=torch.bool), "has_wsi": torch.ones(b, dtype=torch.bool),
            "has_wsi_secondary": torch.ones(b, dtype=torch.bool), "has_omics": torch.ones(b, dtype=torch.bool),
            "site": ["GBMLGG"] * b, "case_id": [f"P{i}" for i in range(b)]}


def worker(args) -> dict:
    """Time one method in this process (see the module docstring)."""
    import numpy as np
    import torch

    from modaltune.config import resolve_config
    from modaltune.methods.base import CohortInfo, GradientContext
    from modaltune.registry import METHODS as REGISTRY
    from modaltune.registry import load_builtin

    torch.manual_seed(0)
    load_builtin()
    n_genes, sets = 400, 8
    rng = np.random.default_rng(0)
    names = [f"TUMOR_{i}" for i in range(sets // 2)] + [f"TME_{i}" for i in range(sets // 2)]
    info = CohortInfo(feature_dim=args.dim, feature_dim_secondary=args.dim, n_genes=n_genes,
                      pathways=[np.sort(rng.choice(n_genes, 50, replace=False)) for _ in names], pathway_names=names,
                      n_classes=4, class_counts={"GBMLGG": 4}, class_offsets={"GBMLGG": 0}, sites=["GBMLGG"],
                      task="subtype", train_class_counts={"GBMLGG": [10, 10, 10, 10]},
                      gene_variance=list(rng.uniform(0.5, 2.0, n_genes)))
    cfg = resolve_config(args.method, overrides=[f"data.grid={args.grid}"])
    device = torch.device(args.device)
    method = REGISTRY.get(args.method)(cfg, info).to(device)
    method.train()
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in _batch(args, n_genes).items()}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = method.loss(batch)
        sum(out.terms.values()).backward()
        ctx = GradientContext(params=dict(method.named_parameters()), stats={k: v.detach() for k, v in out.stats.items()})
        method.adjust_gradients(ctx)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"method": args.method, "median_s": statistics.median(times), "times_s": times, "peak_mb": peak_mb,
            "params": sum(p.numel() for p in method.parameters())}


def main(argv=None) -> int:
    """Run every method in a subprocess, print the table, write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.method:
        print(json.dumps(worker(args)))
        return 0
    rows = []
    for method in METHODS:
        cmd = [sys.executable, __file__, "--method", method, "--grid", str(args.grid), "--batch", str(args.batch),
               "--dim", str(args.dim), "--warmup", str(args.warmup), "--reps", str(args.reps), "--device", args.device,
               *(["--amp"] if args.amp else [])]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"batch {args.batch}, grid {args.grid} x {args.grid}, {args.dim}-d features, device {args.device}"
          f"{' bf16' if args.amp else ''}")
    print(f"{'method':14s} {'step (s)':>9s} {'peak (MB)':>10s} {'params':>10s}")
    for r in rows:
        print(f"{r['method']:14s} {r['median_s']:9.2f} {r['peak_mb']:10.0f} {r['params']:10d}")
    out = args.out or HERE / "results" / f"bench_disentangled_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
                               "machine": platform.platform(), "processor": platform.processor()}, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
