"""Loading a trained run back: config, cohort, fitted state, CohortInfo, method with its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import deep_merge, load_yaml
from ..data.cohort import Cohort
from ..data.fitted_state import FittedState
from ..data.splits import load_split
from ..errors import InputError
from ..methods.base import CohortInfo, Declaration, Method
from ..training.threads import apply_threads
from ..utils import read_json, seed_everything
from . import layout
from .builders import build_method, declaration, device_of, method_class, resolve_precision

__all__ = ["LoadedRun", "load_run", "read_run_config", "run_split"]


@dataclass
class LoadedRun:
    """A trained run, rebuilt (the method in eval mode on the run's device, selected weights)."""

    run_dir: Path
    cfg: dict
    cohort: Cohort
    state: FittedState
    info: CohortInfo
    method: Method
    split: dict[str, list[str]]
    declaration: Declaration
    device: torch.device
    precision: str


def read_run_config(run_dir: str | Path) -> tuple[dict, str | None]:
    """The run's resolved config and the cohort directory it records."""
    run_dir = Path(run_dir)
    if not (run_dir / layout.CONFIG).exists():
        raise InputError("not a run directory (no config.yaml)", file=run_dir, fix="pass the --out of `modaltune train`")
    cfg = load_yaml(run_dir / layout.CONFIG)
    cohort_dir = cfg.pop("cohort", None)
    legacy = getattr(method_class(cfg), "stored_defaults", None) if cfg.get("method") else None
    if legacy:   # keys the run was written without keep the value it was trained with
        cfg = deep_merge(legacy, cfg, strict=False)
    return cfg, cohort_dir


def run_split(run_dir: str | Path, cohort: Cohort) -> dict[str, list[str]]:
    """The split a run used (``split.csv``), validated against ``cohort``."""
    return load_split(Path(run_dir) / layout.SPLIT, cohort.manifest, warn_uncovered=False)


def load_run(run_dir: str | Path, cohort: Cohort | None = None, weights: str = layout.BEST) -> LoadedRun:
    """Rebuild a trained run: config, cohort, fitted state, method with the selected weights.

    Frozen runs the method held while training (a teacher) are not rebuilt: inference never needs them.
    """
    run_dir = Path(run_dir)
    cfg, cohort_dir = read_run_config(run_dir)
    if cohort is None:
        if not cohort_dir:
            raise InputError("the run does not record its cohort", file=run_dir / layout.CONFIG, fix="pass --cohort")
        cohort = Cohort.load(cohort_dir)
    cohort = cohort.with_endpoints(cfg["data"].get("endpoint"))
    state = FittedState.from_dict(read_json(run_dir / layout.STATE))
    info = layout.read_info(run_dir / layout.INFO)
    seed_everything(int(cfg["seed"]))
    method = build_method(cfg, info)
    apply_threads(cfg, method)
    layout.load_weights(method, run_dir / weights)
    device = device_of(cfg)
    method.to(device)
    method.eval()
    return LoadedRun(run_dir, cfg, cohort, state, info, method, run_split(run_dir, cohort), declaration(cfg), device,
                     resolve_precision(cfg))
