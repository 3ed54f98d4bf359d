"""``modaltune demo``: each system of the package end to end on its synthetic cohort, on a CPU.

- ``modaltune`` (default): ModalTune per site and pan-cancer against label-trained baselines, in-domain
  and out of distribution (:mod:`.modaltune`);
- ``mice``: MICE's pan-cancer pre-training and per-site fine-tuning against its baselines over k folds,
  with a modality removed at test and Shapley modality shares (:mod:`.mice`);
- ``disentangled``: the tumor / microenvironment teacher, the slide-only student and its
  distillation against their baselines over folds x seeds (:mod:`.disentangled`).

Each writes under ``--out`` and resumes when re-run into the same directory. ``jobs`` > 1 trains the
benchmark's independent cells in that many processes first (:meth:`~modaltune.benchmark.runner.Benchmark.train_parallel`:
the same results as one job, in less time on a machine with several cores; ``modaltune demo`` uses one job
per core).
"""

from __future__ import annotations

from pathlib import Path

from .modaltune import run_demo as run_modaltune_demo

__all__ = ["run_demo", "SYSTEMS"]

SYSTEMS = ("modaltune", "mice", "disentangled")


def run_demo(out: str | Path = "modaltune_demo", *, system: str = "modaltune", quick: bool = False, seed: int = 0,
             benchmark: bool = True, methods=None, jobs: int = 1) -> dict:
    """Run one system's demo into ``out`` (see the module docstring); returns its results.

    ``methods`` replaces the system's default list of methods (tests use a short one).
    """
    kw = {"jobs": int(jobs), **({} if methods is None else {"methods": list(methods)})}
    if system == "modaltune":
        return run_modaltune_demo(out, quick=quick, seed=seed, benchmark=benchmark, **kw)
    if system == "mice":
        from .mice import run_mice_demo

        return run_mice_demo(out, quick=quick, seed=seed, **kw)
    if system == "disentangled":
        from .disentangled import run_disentangled_demo

        return run_disentangled_demo(out, quick=quick, seed=seed, **kw)
    from ..errors import ConfigError

    raise ConfigError(f"unknown demo system '{system}'; known: {list(SYSTEMS)}")
