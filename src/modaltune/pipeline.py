"""Orchestration shared by the CLI, the demo and the benchmark runner: which patients a run sees.

It answers the same way everywhere: which sites (names as the cohort has them, or the TCGA project
ids users have in their tables), which split (written once beside the cohort, so every method of a
benchmark sees the same patients; k-fold with a validation part carved from each training fold),
which fraction of the training part (data-efficiency studies: nested, stratified by site and event,
validation and test parts untouched), and how per-site versus pooled runs are laid out on disk.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.cohort import Cohort
from .data.labels import SITE_OF_PROJECT
from .data.splits import load_split, make_holdout_split, make_kfold_splits, save_split
from .errors import ConfigError

__all__ = ["SPLIT_NAMES", "split_seed", "resolve_split", "subsample_train", "in_domain_sites", "resolve_site_names",
           "select_sites", "restrict_split", "plan_runs"]

SPLIT_NAMES = ("train", "val", "test")


def split_seed(cfg: dict) -> int:
    """``data.split_seed``, or the run's seed when it is unset."""
    s = cfg["data"].get("split_seed")
    return int(cfg["seed"] if s is None else s)


def resolve_split(cfg: dict, cohort: Cohort) -> dict[str, list[str]]:
    """Return the patient split the config asks for, creating and saving it beside the cohort.

    Split files are written once under ``COHORT/splits/`` and re-read afterwards, so that every
    method and every re-run with the same seed sees exactly the same patients. ``data.train_fraction``
    below 1 keeps a nested, stratified part of the training patients (:func:`subsample_train`).
    """
    data = cfg["data"]
    kind = data["split"]
    manifest = cohort.manifest
    if kind == "file":
        if not data.get("split_file"):
            raise ConfigError("data.split is 'file' but data.split_file is not set")
        split = load_split(data["split_file"], manifest)
    elif kind == "holdout":
        path = Path(cohort.root) / "splits" / f"holdout_seed{split_seed(cfg)}.csv"
        if path.exists():
            split = load_split(path, manifest)
        else:
            split = make_holdout_split(manifest, split_seed(cfg))
            save_split(split, path)
    elif kind == "kfold":
        split = _kfold(cfg, cohort)
    else:
        raise ConfigError(f"data.split must be holdout, kfold or file, not '{kind}'")
    fraction = float(data.get("train_fraction") if data.get("train_fraction") is not None else 1.0)
    return subsample_train(split, cohort, fraction, split_seed(cfg)) if fraction < 1.0 else split


def _kfold(cfg: dict, cohort: Cohort) -> dict[str, list[str]]:
    data, seed = cfg["data"], split_seed(cfg)
    k, fold = int(data["n_folds"]), int(data["fold"])
    if not 0 <= fold < k:
        raise ConfigError(f"data.fold={fold} must be in [0, {k - 1}] for data.n_folds={k}")
    split_dir = Path(cohort.root) / "splits"
    path = split_dir / f"kfold{k}_seed{seed}_fold{fold}.csv"
    if path.exists():
        return load_split(path, cohort.manifest)
    folds = make_kfold_splits(cohort.manifest, seed, k=k)
    for i, f in enumerate(folds):
        save_split(f, split_dir / f"kfold{k}_seed{seed}_fold{i}.csv")
    return folds[fold]


def subsample_train(split: dict[str, list[str]], cohort: Cohort, fraction: float, seed: int) -> dict[str, list[str]]:
    """Keep ``fraction`` of the training patients, per site and event status (at least one each).

    The draw is one seeded permutation per stratum, so smaller fractions are subsets of larger ones
    (nested) and validation / test patients are untouched.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.train_fraction must be in (0, 1], got {fraction}")
    man = cohort.manifest
    train = sorted(split["train"])
    strata: dict[tuple, list[str]] = {}
    for c in train:
        strata.setdefault((str(man.at[c, "site"]), bool(man.at[c, "event"] > 0.5 if man.at[c, "has_survival"]
                                                        else False)), []).append(c)
    keep: list[str] = []
    for key in sorted(strata):
        ids = strata[key]
        order = np.random.default_rng([int(seed), len(ids), sum(map(ord, key[0]))]).permutation(len(ids))
        n = max(1, int(round(fraction * len(ids))))
        keep += [ids[i] for i in order[:n]]
    return {"train": sorted(keep), "val": list(split["val"]), "test": list(split["test"])}


def in_domain_sites(cohort: Cohort) -> list[str]:
    """The cohort's sites that are not held out for out-of-distribution evaluation."""
    ood = set(cohort.ood_sites)
    return [s for s in cohort.sites if s not in ood]


def resolve_site_names(names: Sequence[str], cohort: Cohort) -> list[str]:
    """Map user site names onto the cohort's sites.

    A name is accepted as the cohort has it, in another case, or as a TCGA project id whose site is
    unambiguous (``TCGA-BRCA`` -> ``BRCA``; ``TCGA-LUAD`` -> ``NSCLC`` with ModalTune's grouping, or
    ``LUAD`` with the per-project scheme).

    Raises:
        ConfigError: naming the unknown or ambiguous name and the cohort's sites.
    """
    sites = list(cohort.sites)
    lower = {s.lower(): s for s in sites}
    man = cohort.manifest
    out = []
    for raw in names:
        name = str(raw).strip()
        if name in sites:
            out.append(name)
            continue
        if name.lower() in lower:
            out.append(lower[name.lower()])
            continue
        candidates = set()
        up = name.upper()
        if up in SITE_OF_PROJECT and SITE_OF_PROJECT[up] in sites:
            candidates.add(SITE_OF_PROJECT[up])
        if up.startswith("TCGA-") and up[5:] in sites:
            candidates.add(up[5:])
        if "project_id" in man.columns:
            candidates |= set(man.loc[man["project_id"].astype(str).str.upper() == up, "site"].astype(str))
        if len(candidates) == 1:
            out.append(candidates.pop())
            continue
        why = f"'{name}' could be any of {sorted(candidates)}" if candidates else f"unknown site '{name}'"
        raise ConfigError(f"{why}; the cohort's sites are {sites} (TCGA project ids are accepted when they map to "
                          "one site)")
    return list(dict.fromkeys(out))


def select_sites(cfg: dict, cohort: Cohort) -> list[str]:
    """``data.sites`` mapped onto the cohort's sites (default: every in-domain site)."""
    sites = cfg["data"].get("sites")
    if sites is None:
        return in_domain_sites(cohort)
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    return resolve_site_names(sites, cohort)


def restrict_split(split: dict[str, list[str]], cohort: Cohort, sites: Sequence[str]) -> dict[str, list[str]]:
    """The split's patients of ``sites`` only."""
    site_of = cohort.manifest["site"]
    keep = set(site_of.index[site_of.isin(list(sites))])
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
