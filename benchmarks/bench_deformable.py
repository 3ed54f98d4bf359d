"""Benchmark: deformable attention vs dense multi-head attention over one patch grid.

Times a training step (forward + backward) of

- ``deformable``: :class:`modaltune.encoders.deformable.DeformableAttention2D` as the student's
  H-to-H self-attention (paper setting: dim 128, 8 heads of 64, offset groups 8, r = 4; a 50 x 50
  grid has a 12 x 12 lattice, so every query attends to 144 sampled keys);
- ``dense``: the same projections (dim -> 8 x 64 for Q, K, V, 8 x 64 -> dim out) around
  ``torch.nn.functional.scaled_dot_product_attention`` over all ``grid^2`` tokens (2,500 keys),

on the same input ``[batch, grid^2, dim]`` (default batch 8, grid 50), both in train mode with
attention dropout 0.1, side by side in one run: ``--warmup`` untimed steps, then the median of
``--reps`` timed steps. Each kind runs in its own subprocess so that, on CPU, ``ru_maxrss`` is
that kind's peak resident memory (tracemalloc does not see torch's allocations); the peak is
reported as the increase over the worker's resident memory after building the inputs. On CUDA
the peak is ``torch.cuda.max_memory_allocated`` above the memory held before the first step.

Note where the deformable layer spends its time: the continuous position bias evaluates a
2 -> 32 -> 32 -> 1 MLP for every (query, sampled key, group) pair, i.e. B x 8 x 2,500 x 144
rows, kept in fp32 even under ``--amp`` (see the module docstring); it is computed separably over
the grid's rows and columns with a tiled hand-written backward (:mod:`modaltune.encoders.position_bias`).

Usage::

    PYTHONPATH=src python benchmarks/bench_deformable.py                         # paper size
    PYTHONPATH=src python benchmarks/bench_deformable.py --grid 8 --batch 2 --reps 2 --warmup 1
    PYTHONPATH=src python benchmarks/bench_deformable.py --device cuda --amp

Prints a table and writes JSON to ``--out`` (default
``benchmarks/results/bench_deformable_<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("deformable", "dense")


def build(kind: str, dim: int, heads: int, dim_head: int, dropout: float):
    """The module for ``kind``; both map [B, N, dim] tokens to [B, N, dim]."""
    import torch
    from torch import nn

    from modaltune.encoders.deformable import DeformableAttention2D

    if kind == "deformable":
        return DeformableAttention2D(dim=dim, dim_head=dim_head, heads=heads, offset_groups=heads, dropout=dropout)

    class DenseAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
            self.out = nn.Linear(heads * dim_head, dim)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, heads, dim_head).permute(2, 0, 3, 1, 4)
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0)
            return self.out(o.transpose(1, 2).reshape(b, n, heads * dim_head))

    return DenseAttention()


def worker(args) -> dict:
    """Time one kind in this process and return its measurements."""
    import torch

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build(args.kind, args.dim, args.heads, args.dim_head, args.dropout).to(device).train()
    x = torch.randn(args.batch, args.grid * args.grid, args.dim, device=device, requires_grad=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model(x)
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        x.grad = None

    sync()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.reps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    res = {"kind": args.kind, "median_s": statistics.median(times), "times_s": times,
           "params": sum(p.numel() for p in model.parameters()),
           "keys_per_query": _keys_per_query(model, args.grid),
           "peak_rss_increase_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base_rss}
    if device.type == "cuda":
        res["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return res


def _keys_per_query(model, grid: int) -> int:
    if not hasattr(model, "to_offsets"):
        return grid * grid
    conv = model.to_offsets[0]
    side = (grid + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    return side * side


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=50, help="grid side (tokens = grid^2)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim-head", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    ap.add_argument("--reps", type=int, default=5, help="timed steps (the median is reported)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for both kinds")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write")
    ap.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)  # worker mode
    args = ap.parse_args(argv)

    if args.kind:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    import torch

    passthrough = ["--grid", args.grid, "--batch", args.batch, "--dim", args.dim, "--heads", args.heads,
                   "--dim-head", args.dim_head, "--dropout", args.dropout, "--warmup", args.warmup,
                   "--reps", args.reps, "--device", args.device] + (["--amp"] if args.amp else [])
    results = []
    for kind in args.kinds:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--kind", kind] + [str(a) for a in passthrough]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            results.append({"kind": kind, "error": err, "returncode": proc.returncode})
            continue
        results.append(json.loads(line[0][len("RESULT "):]))

    mem_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_increase_mb"
    print(f"batch {args.batch}, {args.grid}x{args.grid} = {args.grid ** 2} tokens, dim {args.dim}, "
          f"{args.heads} heads x {args.dim_head}, device {args.device}{' bf16 autocast' if args.amp else ''}, "
          f"median of {args.reps} fwd+bwd steps after {args.warmup} warm-up")
    print(f"{'kind':12s} {'keys/query':>10s} {'params':>8s} {'median s':>10s} {'peak MB':>10s}")
    for r in results:
        if "error" in r:
            print(f"{r['kind']:12s} FAILED: {r['error']}")
        else:
            print(f"{r['kind']:12s} {r['keys_per_query']:10d} {r['params']:8d} {r['median_s']:10.4f} "
                  f"{r[mem_key]:10.1f}")
    payload = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": args.device},
        "settings": {k: getattr(args, k) for k in ("grid", "batch", "dim", "heads", "dim_head", "dropout", "warmup",
                                                   "reps", "amp")},
        "memory_metric": mem_key,
        "results": results,
    }
    out = args.out or HERE / "results" / f"bench_deformable_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
