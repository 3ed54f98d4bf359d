"""Orchestration shared by the CLI, the demo and the benchmark runner.

It answers three questions the same way everywhere: which patients a run sees (sites
and split), where split files live (beside the cohort, so every method of a benchmark
uses the same split), and how per-site versus pan-cancer runs are laid out on disk.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .data.cohort import Cohort
from .data.splits import load_split, make_holdout_split, make_kfold_splits, save_split
from .errors import ConfigError

SPLIT_NAMES = ("train", "val", "test")


def split_seed(cfg: dict) -> int:
    s = cfg["data"].get("split_seed")
    return int(cfg["seed"] if s is None else s)


def resolve_split(cfg: dict, cohort: Cohort) -> dict[str, list[str]]:
    """Return the patient split the config asks for, creating and saving it beside the cohort.

    Split files are written once under ``COHORT/splits/`` and re-read afterwards, so that
    every method and every re-run with the same seed sees exactly the same patients.
    """
    data = cfg["data"]
    kind = data["split"]
    manifest = cohort.manifest
    if kind == "file":
        if not data.get("split_file"):
            raise ConfigError("data.split is 'file' but data.split_file is not set")
        return load_split(data["split_file"], manifest)
    seed = split_seed(cfg)
    split_dir = Path(cohort.root) / "splits"
    if kind == "holdout":
        path = split_dir / f"holdout_seed{seed}.csv"
        if path.exists():
            return load_split(path, manifest)
        split = make_holdout_split(manifest, seed)
        save_split(split, path)
        return split
    if kind == "kfold":
        k, fold = int(data["n_folds"]), int(data["fold"])
        if not 0 <= fold < k:
            raise ConfigError(f"data.fold={fold} must be in [0, {k - 1}] for data.n_folds={k}")
        path = split_dir / f"kfold{k}_seed{seed}_fold{fold}.csv"
        if path.exists():
            return load_split(path, manifest)
        folds = make_kfold_splits(manifest, seed, k=k)
        for i, f in enumerate(folds):
            save_split(f, split_dir / f"kfold{k}_seed{seed}_fold{i}.csv")
        return folds[fold]
    raise ConfigError(f"data.split must be holdout, kfold or file, not '{kind}'")


def in_domain_sites(cohort: Cohort) -> list[str]:
    ood = set(cohort.ood_sites)
    return [s for s in cohort.sites if s not in ood]


def select_sites(cfg: dict, cohort: Cohort) -> list[str]:
    sites = cfg["data"].get("sites")
    if sites is None:
        return in_domain_sites(cohort)
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    unknown = [s for s in sites if s not in cohort.sites]
    if unknown:
        raise ConfigError(f"unknown site(s) {unknown}; the cohort has {list(cohort.sites)}")
    return list(sites)


def restrict_split(split: dict[str, list[str]], cohort: Cohort, sites: list[str]) -> dict[str, list[str]]:
    site_of = cohort.manifest["site"]
    keep = set(site_of.index[site_of.isin(sites)])
    return {name: [c for c in split[name] if c in keep] for name in SPLIT_NAMES}


def plan_runs(cfg: dict, cohort: Cohort, out: str | Path) -> list[tuple[dict, Path]]:
    """Expand a config into (config, run directory) pairs: one pooled run, or one per site."""
    out = Path(out)
    sites = select_sites(cfg, cohort)
    if cfg["data"]["pan_cancer"] or len(sites) == 1:
        c = copy.deepcopy(cfg)
        c["data"]["sites"] = sites
        return [(c, out)]
    plans = []
    for site in sites:
        c = copy.deepcopy(cfg)
        c["data"]["sites"] = [site]
        plans.append((c, out / site))
    return plans


def train(cfg: dict, cohort: Cohort, out: str | Path, *, resume: bool = False) -> list[Path]:
    """Train every run the config implies; returns the run directories."""
    from .training.engine import train_method

    runs = []
    split = resolve_split(cfg, cohort)
    for run_cfg, run_dir in plan_runs(cfg, cohort, out):
        sub = restrict_split(split, cohort, run_cfg["data"]["sites"])
        train_method(run_cfg, cohort, sub, run_dir, resume=resume)
        runs.append(run_dir)
    return runs
