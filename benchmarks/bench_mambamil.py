"""Benchmark: MICE's MambaMIL (pure-torch Mamba) against ABMIL on one large bag, CPU or GPU.

Measures, in one run and on the same random bag (``--patches`` x ``--in-dim``, default
10,000 x 1,024, UNI-sized):

- **time**: forward + backward (``forward_features(bag).sum().backward()``, train mode) of
  ``MambaMIL(in_dim, 256)`` (MICE's widths) and of ``ABMIL(in_dim)`` at MambaMIL's widths
  (dim 256, attention 64: the same pooling without the Mamba block) and at its default widths
  (512 / 256, CLAM "small"). ``--warmup`` untimed calls, then ``--repeats`` timed ones with the
  models interleaved (so load from other processes hits all of them alike); the median is
  reported and the ratio MambaMIL / ABMIL of medians.
- **peak memory** of one forward + backward at ``--memory-patches`` (default 2,500 / 5,000 /
  10,000) from the **torch profiler** (``profile_memory=True``): allocations and frees recorded
  per op, replayed in time order; the peak of the running total is the memory the step adds on
  top of the model and the bag (activations, saved tensors, work buffers, gradients).
  ``tracemalloc`` is not used: it does not see torch's CPU allocator. On CUDA,
  ``torch.cuda.max_memory_allocated`` is used instead. A linear model ``peak = a + b * N`` is
  fitted; memory linear in patches shows as a constant ``peak / N`` at large N.

Usage::

    PYTHONPATH=src python benchmarks/bench_mambamil.py --out /tmp/bench_mambamil.json
    PYTHONPATH=src python benchmarks/bench_mambamil.py --patches 500 --memory-patches 250 500 --repeats 2

Timings on a shared or busy machine are indicative only: compare models interleaved in one run
(as here), and prefer ``--threads 1`` for stable ratios. The scan's chunk loop runs with one
intra-op thread whatever ``--threads`` says (see :mod:`modaltune.encoders.ssm_scan`: its ~25 small
ops per chunk would each wait for a descheduled OpenMP worker when another process holds a core),
so multi-threaded runs speed up only the GEMMs and bulk ops of MambaMIL, as for ABMIL.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from modaltune.encoders.mambamil import MambaMIL
from modaltune.encoders.mil import ABMIL


def build_models(in_dim: int, device: torch.device, chunk_size: int | None = None) -> dict[str, torch.nn.Module]:
    """The compared aggregators, in train mode (dropout on, as in a training step)."""
    torch.manual_seed(0)
    models = {
        "mambamil": MambaMIL(in_dim=in_dim, dim=256, attn_dim=64, dropout=0.2, mamba={"chunk_size": chunk_size}),
        "abmil_256": ABMIL(in_dim, dim=256, attn_dim=64, dropout=0.25),
        "abmil_512": ABMIL(in_dim, dim=512, attn_dim=256, dropout=0.25),
    }
    return {k: m.to(device).train() for k, m in models.items()}


def step(model: torch.nn.Module, bag: torch.Tensor) -> None:
    """One forward + backward on ``bag [1, N, D]``."""
    model.zero_grad(set_to_none=True)
    model.forward_features(bag).sum().backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_models(models, bag, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per forward + backward, models interleaved within each repeat."""
    for _ in range(warmup):
        for m in models.values():
            step(m, bag)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for name, m in models.items():
            _sync(bag.device)
            t0 = time.perf_counter()
            step(m, bag)
            _sync(bag.device)
            times[name].append(time.perf_counter() - t0)
    return times


def peak_memory_bytes(model: torch.nn.Module, bag: torch.Tensor) -> int:
    """Peak memory added by one forward + backward (torch profiler on CPU, CUDA stats on GPU)."""
    step(model, bag)  # warm-up: parameter gradients and allocator caches exist before measuring
    model.zero_grad(set_to_none=True)
    if bag.device.type == "cuda":
        torch.cuda.synchronize(bag.device)
        base = torch.cuda.memory_allocated(bag.device)
        torch.cuda.reset_peak_memory_stats(bag.device)
        step(model, bag)
        torch.cuda.synchronize(bag.device)
        return torch.cuda.max_memory_allocated(bag.device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, bag)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                    if e.self_cpu_memory_usage)
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def linear_fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patches", type=int, default=10_000)
    ap.add_argument("--in-dim", type=int, default=1024)
    ap.add_argument("--memory-patches", type=int, nargs="*", default=[2_500, 5_000, 10_000])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--chunk-size", type=int, default=None, help="Mamba scan chunk length (default: cache-sized)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = build_models(args.in_dim, device, args.chunk_size)
    gen = torch.Generator().manual_seed(0)
    bag = torch.randn(1, args.patches, args.in_dim, generator=gen).to(device)

    times = time_models(models, bag, args.warmup, args.repeats)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"forward + backward, bag {args.patches} x {args.in_dim}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'model':<10} {'median s':>9} {'min s':>8} {'max s':>8} {'MambaMIL / this':>16}")
    for k, v in times.items():
        print(f"{k:<10} {median[k]:9.3f} {min(v):8.3f} {max(v):8.3f} {median['mambamil'] / median[k]:16.2f}")

    memory: dict[str, dict[int, int]] = {k: {} for k in models}
    for n in args.memory_patches:
        b = torch.randn(1, n, args.in_dim, generator=gen).to(device)
        for k, m in models.items():
            memory[k][n] = peak_memory_bytes(m, b)
    fits = {k: linear_fit(list(v), [float(x) for x in v.values()]) for k, v in memory.items() if len(v) > 1}
    if memory["mambamil"]:
        how = "CUDA max_memory_allocated" if device.type == "cuda" else "torch profiler"
        print(f"\npeak memory added by forward + backward, MB ({how})")
        print(f"{'patches':>8} " + " ".join(f"{k:>12}" for k in models) + f" {'MambaMIL kB/patch':>18}")
        for n in args.memory_patches:
            row = " ".join(f"{memory[k][n] / 2**20:12.1f}" for k in models)
            print(f"{n:>8} {row} {memory['mambamil'][n] / n / 1024:18.1f}")
        for k, (a, b) in fits.items():
            print(f"fit {k}: {a / 2**20:.1f} MB + {b / 1024:.2f} kB x patches")

    result = {
        "benchmark": "bench_mambamil", "patches": args.patches, "in_dim": args.in_dim,
        "warmup": args.warmup, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "chunk_size": args.chunk_size,
        "device": str(device), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "time_s": times, "median_s": median,
        "ratio_mambamil_over": {k: median["mambamil"] / median[k] for k in models if k != "mambamil"},
        "memory_method": "cuda_max_memory_allocated" if device.type == "cuda" else "torch_profiler",
        "peak_memory_bytes": {k: {str(n): v for n, v in d.items()} for k, d in memory.items()},
        "memory_fit_bytes": {k: {"intercept": a, "per_patch": b} for k, (a, b) in fits.items()},
        "note": "indicative on a shared machine; models interleaved per repeat",
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
