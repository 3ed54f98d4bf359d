"""Intra-op CPU threads of a training or evaluation process (``train.threads``).

Per-patient models are small: a patient's bag is a few thousand patch vectors through a few linear
layers, so torch's intra-op threads gain little, while two processes that each take every core
(torch's default) contend for them and can each run many times slower. The rule:

* an integer ``train.threads`` is used as given;
* ``auto`` (default): the ``OMP_NUM_THREADS`` environment variable when it is set; otherwise
  1 thread for models under :data:`SMALL_MODEL` parameters (trainable and frozen), else
  ``min(4, cores)``, where ``cores`` is the CPUs this process may use divided by the parallel jobs
  of a benchmark (``modaltune benchmark --jobs N`` sets ``MODALTUNE_CORES`` for each job).

Only CPU threads are set; GPU kernels are unaffected.
"""

from __future__ import annotations

import os

from ..errors import ConfigError

__all__ = ["SMALL_MODEL", "MAX_AUTO_THREADS", "available_cores", "resolve_threads", "apply_threads"]

#: Models with fewer parameters train on one thread under ``train.threads: auto``.
SMALL_MODEL = 2_000_000
#: Upper bound of ``auto`` threads for larger models.
MAX_AUTO_THREADS = 4


def available_cores() -> int:
    """CPUs this process may use (``MODALTUNE_CORES`` when a benchmark job set it)."""
    env = os.environ.get("MODALTUNE_CORES")
    if env and env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(setting, n_params: int) -> int:
    """The number of intra-op threads for ``train.threads`` = ``setting`` and a model of ``n_params``."""
    if setting is None or str(setting).strip().lower() == "auto":
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        if n_params < SMALL_MODEL:
            return 1
        return max(1, min(MAX_AUTO_THREADS, available_cores()))
    try:
        n = int(setting)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(setting).strip() != str(n):
        raise ConfigError(f"train.threads must be 'auto' or a positive integer, not {setting!r}")
    return n


def apply_threads(cfg: dict, module) -> int:
    """Set torch's intra-op threads for ``module`` by ``cfg["train"]["threads"]``; returns the number."""
    import torch

    n_params = sum(p.numel() for p in module.parameters()) if module is not None else 0
    n = resolve_threads((cfg.get("train") or {}).get("threads", "auto"), n_params)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
