"""Benchmark: ModalTune training step and slide embedding with the paper-size LongNet encoder.

Measures, for bags of ``--sizes`` patches (default 1k, 4k, 16k) with GigaPath-size encoder
(in_dim 1536, 12 x 768, 16 heads, FFN 3072, GigaPath's segment lengths):

- ``embed``: a no-grad forward of the slide encoder (one slide embedding, B = 1);
- ``encoder_train``: the frozen encoder run forward and backward through its activations for
  the 3 task passes (B = 3, gradients w.r.t. the input tokens only): the part that dominates a
  ModalTune step;
- ``modaltune_train``: a full ModalTune training step (``model.loss(batch).backward()``, 3 tasks,
  64 pathway tokens, 331 pathways over 4,987 genes, 512-d text targets), when
  ``modaltune.methods.modaltune`` can be built. Activation checkpointing of the frozen layers is
  switched on from ``--checkpoint-from`` patches (default 8,000) so the 16k step fits in memory.

Each (kind, size) runs in its own subprocess, so ``ru_maxrss`` is that measurement's peak
resident memory (tracemalloc does not see torch's allocations). FLOPs are counted analytically
for the encoder (linear layers + the dilated-attention blocks as executed, including padded
tokens; backward of a frozen layer = input gradients only, flash-attention backward = 2.5 x its
forward); the adapter's own FLOPs (a few % of the step) are *not* counted, so the ModalTune
fraction is a lower bound. The dense fp32 matmul rate is measured in the same run (best of
several 2048^3 ``torch.mm``, same thread count) and achieved FLOP/s is reported as a fraction of
it. On GPU, peak memory comes from ``torch.cuda.max_memory_allocated`` and bf16 autocast is used.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_modaltune.py            # all
    PYTHONPATH=src python benchmarks/bench_modaltune.py --sizes 1000 4000 --kinds embed

Writes ``benchmarks/results/bench_modaltune_<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("embed", "encoder_train", "modaltune_train")


# ------------------------------------------------------------------------------------------------
# analytic FLOPs
# ------------------------------------------------------------------------------------------------
def attention_flops(length: int, dim: int, heads: int, segs, ratios) -> float:
    """Forward FLOPs of the dilated attention kernels (QK^T and PV) as executed, per sequence."""
    d = dim // heads
    total = 0.0
    for w, r in zip(segs, ratios):
        w = min(w, length)
        nseg = math.ceil(length / w)
        m = math.ceil(w / r)
        total += 4.0 * heads * nseg * m * m * d
    return total


def encoder_flops(n_patches: int, batch: int, cfg, train: bool) -> float:
    """FLOPs of the LongNet encoder for ``batch`` sequences of ``n_patches + 1`` tokens."""
    length = n_patches + 1
    lin = 2.0 * length * (4 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.ffn_dim)          # per layer
    att = attention_flops(length, cfg.dim, cfg.heads, cfg.segment_lengths, cfg.dilated_ratios)
    embed = 2.0 * n_patches * cfg.in_dim * cfg.dim
    fwd = batch * (cfg.depth * (lin + att)) + embed          # embedding computed once
    if not train:
        return fwd
    bwd = batch * cfg.depth * (lin + 2.5 * att)              # input grads only (frozen weights)
    return fwd + bwd


# ------------------------------------------------------------------------------------------------
# measurements (worker side)
# ------------------------------------------------------------------------------------------------
def matmul_rate(device: str = "cpu", n: int = 2048, reps: int = 5) -> float:
    import torch
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for i in range(reps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if i >= 2:
            best = min(best, dt)
    return 2.0 * n ** 3 / best


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _paper_info(rng):
    import numpy as np

    from modaltune.methods.base import CohortInfo
    n_genes, n_path = 4987, 331
    pathways = [np.sort(rng.choice(n_genes, int(rng.integers(5, 40)), replace=False)) for _ in range(n_path)]
    return CohortInfo(feature_dim=1536, n_genes=n_genes, pathways=pathways, n_classes=4, n_bins=4,
                      text_dim=512, task="multi")


def worker(kind: str, n: int, reps: int, warmup: int, checkpointing: bool, device: str) -> dict:
    import warnings

    import numpy as np
    import torch

    from modaltune.encoders.slide.longnet import LongNetConfig, LongNetSlideEncoder

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = LongNetConfig.gigapath()
    dev = torch.device(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else None
    bag = torch.randn(n, cfg.in_dim, device=dev)
    coords = torch.from_numpy(rng.integers(0, 200_000, size=(n, 2))).float().to(dev)
    out: dict = {"kind": kind, "n_patches": n, "device": device}

    if kind == "modaltune_train":
        from modaltune.methods.modaltune import ModalTune
        info = _paper_info(rng)
        mcfg = {"model": {"encoder_size": "gigapath", "checkpoint": None, "checkpointing": checkpointing}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ModalTune(mcfg, info).to(dev)
        model.train()
        batch = {"case_id": "bench", "bag": bag, "coords": coords,
                 "omics": torch.randn(info.n_genes, device=dev), "has_omics": torch.tensor(True),
                 "text_emb": torch.randn(3, info.text_dim, device=dev), "subtype": torch.tensor(1),
                 "survival_bin": torch.tensor(2), "event": torch.tensor(1.0),
                 "has_survival": torch.tensor(True)}
        trainable = [p for p in model.parameters() if p.requires_grad]
        out["trainable_params"] = int(sum(p.numel() for p in trainable))
        out["checkpointing"] = checkpointing

        def step():
            for p in trainable:
                p.grad = None
            if amp is not None:
                with amp:
                    loss, _ = model.loss(batch)
            else:
                loss, _ = model.loss(batch)
            loss.backward()
        flops = encoder_flops(n, 3, cfg, train=True)
        if checkpointing:
            flops += 3 * cfg.depth * (2.0 * (n + 1) * (4 * cfg.dim ** 2 + 2 * cfg.dim * cfg.ffn_dim)
                                      + attention_flops(n + 1, cfg.dim, cfg.heads, cfg.segment_lengths,
                                                        cfg.dilated_ratios))    # recomputed forward
    else:
        enc = LongNetSlideEncoder(cfg).to(dev).eval()
        for p in enc.parameters():
            p.requires_grad_(False)
        x, c = bag[None], coords[None]
        if kind == "embed":
            def step():
                with torch.no_grad():
                    if amp is not None:
                        with amp:
                            enc(x, c)
                    else:
                        enc(x, c)
            flops = encoder_flops(n, 1, cfg, train=False)
        else:   # encoder_train: 3 task passes, gradient through the activations
            from torch.utils.checkpoint import checkpoint
            out["checkpointing"] = checkpointing

            def step():
                ctx = amp if amp is not None else _null()
                with ctx:
                    h = enc.embed_tokens(x, c).expand(3, -1, -1).clone().requires_grad_(True)
                    z = h
                    for layer in enc.layers:
                        z = checkpoint(layer, z, use_reentrant=False) if checkpointing else layer(z)
                    y = enc.final_norm(z[:, :1])[:, 0]
                y.float().square().sum().backward()
            flops = encoder_flops(n, 3, cfg, train=True)
            if checkpointing:
                flops += encoder_flops(n, 3, cfg, train=False)
    out["rss_before_mb"] = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out["seconds"] = times
    out["best_seconds"] = min(times)
    out["flops"] = flops
    out["achieved_flops_per_s"] = flops / min(times)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    out["threads"] = torch.get_num_threads()
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
def modaltune_available() -> tuple[bool, str]:
    code = ("import warnings, numpy as np; warnings.simplefilter('ignore');"
            "from modaltune.methods.modaltune import ModalTune;"
            "from modaltune.methods.base import CohortInfo;"
            "info=CohortInfo(feature_dim=8,n_genes=12,pathways=[np.arange(4),np.arange(4,9)],text_dim=6);"
            "m=ModalTune({'model':{'encoder_size':'small','encoder':{'dim':32,'depth':3,'heads':4,'ffn_dim':64},"
            "'n_tokens':4,'omics':{'dim':16,'depth':1},'adapter_heads':2,'d_final':8}},info)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    return res.returncode == 0, res.stderr.strip().splitlines()[-1] if res.returncode else ""


#: glibc malloc settings for the worker: keep freed blocks instead of returning every large
#: tensor to the OS (which makes each step page-fault and zero gigabytes again: ~20 % of a CPU
#: training step at 4k patches). Disable with --no-malloc-tuning.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736",
              "MALLOC_TOP_PAD_": "1073741824"}
_TUNE_MALLOC = True


def _env() -> dict:
    env = dict(os.environ)
    if _TUNE_MALLOC:
        for k, v in MALLOC_ENV.items():
            env.setdefault(k, v)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions per measurement")
    ap.add_argument("--warmup-below", type=int, default=2000,
                    help="one untimed warm-up step for bags smaller than this")
    ap.add_argument("--checkpoint-from", type=int, default=8000,
                    help="activation checkpointing of the frozen layers from this bag size on")
    ap.add_argument("--skip-encoder-train-from", type=int, default=8000,
                    help="skip the encoder-only training step from this size (the ModalTune step covers it)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--no-malloc-tuning", action="store_true", help="run workers with default glibc malloc")
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "N", "REPS", "WARMUP"), help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        kind, n, reps, warm = args.worker
        res = worker(kind, int(n), int(reps), int(warm), args.ckpt, args.device)
        print("RESULT " + json.dumps(res))
        return 0

    global _TUNE_MALLOC
    _TUNE_MALLOC = not args.no_malloc_tuning
    import torch
    threads = torch.get_num_threads()
    rate0 = matmul_rate(args.device)
    print(f"dense fp32 matmul: {rate0 / 1e9:.1f} GFLOP/s ({threads} threads)", flush=True)
    kinds = list(args.kinds)
    note = None
    if "modaltune_train" in kinds:
        ok, why = modaltune_available()
        if not ok:
            kinds.remove("modaltune_train")
            note = f"ModalTune model not available ({why}); benchmarked the encoder only"
            print(note, flush=True)
    results = []
    for n in args.sizes:
        for kind in kinds:
            if kind == "encoder_train" and n >= args.skip_encoder_train_from and "modaltune_train" in kinds:
                continue
            warm = 1 if n < args.warmup_below else 0
            cmd = [sys.executable, str(Path(__file__).resolve()), "--device", args.device,
                   "--worker", kind, str(n), str(args.reps), str(warm)]
            ckpt = kind != "embed" and n >= args.checkpoint_from
            if ckpt:
                cmd.append("--ckpt")
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{kind:16s} n={n:6d}  FAILED: {err}", flush=True)
                results.append({"kind": kind, "n_patches": n, "error": err, "returncode": proc.returncode})
                continue
            res = json.loads(line[0][len("RESULT "):])
            res["wall_with_setup_s"] = time.perf_counter() - t
            results.append(res)
            print(f"{kind:16s} n={n:6d}  {res['best_seconds']:8.2f} s  {res['flops'] / 1e12:7.2f} TFLOP  "
                  f"{res['achieved_flops_per_s'] / 1e9:6.1f} GFLOP/s = {res['achieved_flops_per_s'] / rate0:5.1%} "
                  f"of matmul  peak RSS {res['peak_rss_mb'] / 1024:6.2f} GB"
                  + ("  (checkpointing)" if res.get("checkpointing") else ""), flush=True)
    rate1 = matmul_rate(args.device)
    rate = max(rate0, rate1)
    for r in results:
        if "achieved_flops_per_s" in r:
            r["fraction_of_matmul"] = r["achieved_flops_per_s"] / rate
    print(f"dense fp32 matmul at the end: {rate1 / 1e9:.1f} GFLOP/s; fractions in the JSON use the max "
          f"({rate / 1e9:.1f})", flush=True)
    payload = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
                    "device": args.device},
        "matmul_fp32_flops_per_s": {"start": rate0, "end": rate1, "used": rate},
        "encoder": "LongNetConfig.gigapath() (in_dim 1536, 12 x 768, 16 heads, FFN 3072)",
        "note": note,
        "malloc_tuning": MALLOC_ENV if _TUNE_MALLOC else None,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_modaltune_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
