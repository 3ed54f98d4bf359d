"""Patient-level splits: stratified holdout (68/12/20) and k-fold, split files in and out.

Stratification: every patient gets a stratum key from the ``stratify`` columns of the manifest
(default site and subtype; a patient without subtype counts as ``rare`` when in the rare set,
else ``none``). Strata too small to be spread over the splits (fewer patients than
``ceil(1 / smallest non-zero fraction)``, e.g. 9 for 68/12/20, or ``k`` for k-fold) are merged
into a per-site remainder stratum (the first stratify column), and a remainder that is still too
small is merged into one global remainder stratum. Within each stratum the cases are shuffled
(seeded) and allocated by largest remainder, carrying each split's rounding deficit over to the next
stratum, so the global proportions are within one patient of the target and each stratum's within
one patient of its share.

Everything is deterministic given ``seed`` (cases are sorted before shuffling, so the manifest's
row order does not matter).

Split files:

* ours: CSV ``case_id,split`` (split in train/val/test);
* SurvPath / CLAM: CSV with columns ``train``, ``val``, ``test`` listing ids (an unnamed index
  column is ignored). Ids may be case ids, TCGA slide or sample barcodes, or slide ids of the
  manifest's ``slides`` column; all are normalised to case ids, and several slides of one case in
  one column collapse to that case.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, warn_input
from .formats import tcga_case_id
from .formats.ids import names

__all__ = ["SPLITS", "make_holdout_split", "make_kfold_splits", "save_split", "load_split", "validate_split",
           "strata_keys"]

SPLITS = ("train", "val", "test")


def _case_index(manifest: pd.DataFrame) -> pd.DataFrame:
    if "case_id" in manifest.columns:
        df = manifest.set_index(manifest["case_id"].astype(str), drop=False)
    else:
        df = manifest.copy()
        df.index = df.index.astype(str)
    if df.index.duplicated().any():
        raise InputError(f"manifest has duplicate case ids {names(sorted(set(df.index[df.index.duplicated()])))}",
                         fix="re-run `modaltune prepare`")
    return df.sort_index()


def strata_keys(manifest: pd.DataFrame, stratify: Sequence[str] = ("site", "subtype")) -> pd.Series:
    """Stratum key per case (sorted by case id): the stratify columns joined by '|'."""
    df = _case_index(manifest)
    parts = []
    for col in stratify:
        if col not in df.columns:
            raise InputError(f"cannot stratify by '{col}': not a manifest column",
                             fix=f"stratify by some of {list(df.columns)}")
        v = df[col].fillna("").astype(str)
        if col == "subtype":
            rare = df["rare"].astype(bool) if "rare" in df.columns else pd.Series(False, index=df.index)
            v = v.where(v != "", np.where(rare, "rare", "none"))
        parts.append(v)
    if not parts:
        return pd.Series("all", index=df.index)
    key = parts[0]
    for p in parts[1:]:
        key = key + "|" + p
    return key


def _merge_small(keys: pd.Series, min_size: int) -> pd.Series:
    """Merge strata smaller than ``min_size`` into their site's remainder, then a global remainder."""
    keys = keys.copy()
    counts = keys.value_counts()
    small = keys.isin(counts.index[counts < min_size])
    keys[small] = keys[small].str.split("|").str[0] + "|*"
    counts = keys.value_counts()
    still = keys.str.endswith("|*") & keys.isin(counts.index[counts < min_size])
    keys[still] = "*"
    return keys


def _allocate(keys: pd.Series, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Part index per case (aligned with ``keys``): stratified largest remainder with carried deficits."""
    f = np.asarray(fractions, dtype=float)
    part = np.full(len(keys), -1, dtype=int)
    pos = {c: i for i, c in enumerate(keys.index)}
    deficit = np.zeros(len(f))
    for key in sorted(keys.unique()):
        members = sorted(keys.index[keys == key])
        members = [members[i] for i in rng.permutation(len(members))]
        n = len(members)
        exact = n * f
        count = np.floor(exact).astype(int)
        score = exact - count + deficit + rng.uniform(0, 1e-6, len(f))  # tiny jitter breaks exact ties
        score[f == 0] = -np.inf
        for j in np.argsort(-score, kind="stable")[: n - count.sum()]:
            count[j] += 1
        deficit += exact - count
        start = 0
        for j, c in enumerate(count):
            for case in members[start:start + c]:
                part[pos[case]] = j
            start += c
    return part


def _ensure_nonempty(part: np.ndarray, keys: pd.Series, fractions: Sequence[float]) -> np.ndarray:
    """Give every part with a non-zero fraction at least one case (tiny cohorts), taken from the largest."""
    for j, fj in enumerate(fractions):
        if fj > 0 and not (part == j).any():
            big = int(np.argmax(np.bincount(part, minlength=len(fractions))))
            if (part == big).sum() > 1:
                part[np.flatnonzero(part == big)[-1]] = j
    return part


def _check_fractions(fractions: Sequence[float]) -> None:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) != 3 or (f < 0).any() or not math.isclose(f.sum(), 1.0, abs_tol=1e-6) or f[0] <= 0:
        raise InputError(f"split fractions must be three non-negative numbers (train > 0) summing to 1, "
                         f"got {list(fractions)}", fix="use e.g. (0.68, 0.12, 0.20)")


def _min_stratum(fractions: Sequence[float]) -> int:
    nz = [x for x in fractions if x > 0]
    return int(math.ceil(1.0 / min(nz) - 1e-9))


def make_holdout_split(manifest: pd.DataFrame, seed: int, fractions: Sequence[float] = (0.68, 0.12, 0.20),
                       stratify: Sequence[str] = ("site", "subtype")) -> dict[str, list[str]]:
    """Stratified patient-level train/val/test split.

    Args:
        manifest: cohort manifest (indexed by case id or with a ``case_id`` column).
        seed: random seed (same seed -> same split).
        fractions: train, val, test fractions (sum 1).
        stratify: manifest columns defining the strata (see the module docstring for the fallback).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` of sorted case ids, disjoint, covering every case.
    """
    _check_fractions(fractions)
    keys = strata_keys(manifest, stratify)
    if len(keys) == 0:
        raise InputError("cannot split an empty manifest", fix="prepare a cohort with patients first")
    keys = _merge_small(keys, _min_stratum(fractions))
    rng = np.random.default_rng(int(seed))
    part = _ensure_nonempty(_allocate(keys, fractions, rng), keys, fractions)
    ids = np.asarray(keys.index)
    return {name: sorted(ids[part == j].tolist()) for j, name in enumerate(SPLITS)}


def make_kfold_splits(manifest: pd.DataFrame, seed: int, k: int = 5, val_fraction: float = 0.12 / 0.80,
                      stratify: Sequence[str] = ("site", "subtype")) -> list[dict[str, list[str]]]:
    """Stratified k-fold: fold i tests on the i-th part; the rest is split into train/val.

    Every case is in exactly one fold's test set. The train/val split of each fold is itself
    stratified (seeded by ``seed`` and the fold index), with ``val_fraction`` of the non-test cases.
    """
    if int(k) < 2:
        raise InputError(f"k-fold needs k >= 2, got {k}", fix="use k=5 (default)")
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}", fix="use e.g. 0.15")
    keys = strata_keys(manifest, stratify)
    if len(keys) < k:
        raise InputError(f"cannot make {k} folds of {len(keys)} patients", fix="use fewer folds")
    keys = _merge_small(keys, int(k))
    rng = np.random.default_rng(int(seed))
    fold = _allocate(keys, [1.0 / k] * k, rng)
    fold = _ensure_nonempty(fold, keys, [1.0 / k] * k)
    ids = np.asarray(keys.index)
    out = []
    for i in range(k):
        rest = keys[fold != i]
        fr = (1.0 - val_fraction, val_fraction, 0.0)
        sub_rng = np.random.default_rng([int(seed), i + 1])
        sub_keys = _merge_small(rest, _min_stratum(fr[:2]))
        part = _allocate(sub_keys, fr, sub_rng)
        if val_fraction > 0:
            part = _ensure_nonempty(part, sub_keys, fr[:2])
        rest_ids = np.asarray(sub_keys.index)
        out.append({"train": sorted(rest_ids[part == 0].tolist()), "val": sorted(rest_ids[part == 1].tolist()),
                    "test": sorted(ids[fold == i].tolist())})
    return out


# ----------------------------------------------------------------------------------------------
# validation and files


def validate_split(split: dict[str, Iterable[str]], manifest: pd.DataFrame, *, file: str | Path | None = None
                   ) -> dict[str, list[str]]:
    """Check a split: known split names, every case in the manifest, no case twice.

    Returns:
        The split with lists of str (train/val/test; missing names become empty lists).

    Raises:
        InputError: naming the file (when given) and the offending cases.
    """
    unknown_names = [s for s in split if s not in SPLITS]
    if unknown_names:
        raise InputError(f"unknown split name(s) {unknown_names}", file=file, fix="use train, val and test")
    out = {s: [str(c) for c in split.get(s, [])] for s in SPLITS}
    known = set(_case_index(manifest).index)
    unknown = sorted({c for ids in out.values() for c in ids if c not in known})
    if unknown:
        raise InputError(f"{len(unknown)} case(s) of the split are not in the cohort: {names(unknown)}", file=file,
                         case=unknown[0], fix="remove them from the split file or prepare a cohort that has them")
    seen: dict[str, str] = {}
    dups = []
    for s in SPLITS:
        for c in out[s]:
            if c in seen:
                dups.append(f"{c} ({seen[c]}/{s})")
            seen[c] = s
    if dups:
        raise InputError(f"{len(dups)} case(s) appear more than once in the split: {names(dups)}", file=file,
                         case=dups[0].split(" ")[0], fix="list each patient once, in a single split")
    return out


def save_split(split: dict[str, Iterable[str]], path: str | Path) -> Path:
    """Write a split as CSV ``case_id,split`` (train, then val, then test; ids sorted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(c, s) for s in SPLITS for c in sorted(split.get(s, []))]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")      # atomic: parallel jobs may write the same split
    pd.DataFrame(rows, columns=["case_id", "split"]).to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)
    return path


def _slide_to_case(manifest: pd.DataFrame) -> dict[str, str]:
    df = _case_index(manifest)
    out: dict[str, str] = {}
    if "slides" in df.columns:
        for case, slides in zip(df.index, df["slides"].fillna("").astype(str)):
            for s in filter(None, slides.split(";")):
                out[s] = case
    return out


def _normalise_id(raw: str, known: set[str], slides: dict[str, str]) -> str:
    raw = str(raw).strip()
    if raw in known:
        return raw
    stem = raw
    for ext in (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".h5", ".pt"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    if stem in slides:
        return slides[stem]
    return tcga_case_id(stem)


def _read_ours(df: pd.DataFrame, path: Path) -> dict[str, list[str]]:
    df = df.copy()
    df["case_id"] = df["case_id"].astype(str).str.strip()
    df["split"] = df["split"].astype(str).str.strip().str.lower()
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"unknown split value(s) {bad}", file=path, fix="use train, val or test in the split column")
    dup = sorted(set(df.loc[df["case_id"].duplicated(), "case_id"]))
    if dup:
        raise InputError(f"{len(dup)} case(s) are listed more than once: {names(dup)}", file=path, case=dup[0],
                         fix="list each patient once")
    return {s: df.loc[df["split"] == s, "case_id"].tolist() for s in SPLITS}


def _read_columns(df: pd.DataFrame, path: Path, manifest: pd.DataFrame) -> dict[str, list[str]]:
    known = set(_case_index(manifest).index)
    slides = _slide_to_case(manifest)
    out = {}
    for s in SPLITS:
        vals = df[s].dropna().astype(str).str.strip() if s in df.columns else pd.Series([], dtype=str)
        out[s] = list(dict.fromkeys(_normalise_id(v, known, slides) for v in vals if v))
    return out


def load_split(path: str | Path, manifest: pd.DataFrame, warn_uncovered: bool = True) -> dict[str, list[str]]:
    """Read a split file (ours or SurvPath/CLAM style) and validate it against the manifest.

    ``warn_uncovered``: warn about patients of the split's sites that no part lists (a user's split
    file that forgets patients); off for a run's own ``split.csv``, which leaves out by design the
    training patients a data-efficiency cut (``data.train_fraction``) removed.

    Raises:
        InputError: unreadable/unknown format, unknown cases, or cases listed twice (naming file and cases).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("split file not found", file=path, fix="check data.split_file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as exc:
        raise InputError(f"cannot read split file ({exc})", file=path, fix="use a CSV file") from exc
    df.columns = [str(c).strip() for c in df.columns]
    cols = {c.lower(): c for c in df.columns}
    if {"case_id", "split"} <= set(cols):
        split = _read_ours(df.rename(columns={cols["case_id"]: "case_id", cols["split"]: "split"}), path)
    elif "train" in cols:
        split = _read_columns(df.rename(columns={v: k for k, v in cols.items() if k in SPLITS}), path, manifest)
    else:
        raise InputError(f"unrecognised split file columns {list(df.columns)}", file=path,
                         fix="use columns case_id,split or SurvPath/CLAM columns train,val,test")
    split = validate_split(split, manifest, file=path)
    if warn_uncovered:
        _warn_uncovered(split, manifest, path)
    return split


def _warn_uncovered(split: dict[str, list[str]], manifest: pd.DataFrame, path: Path) -> None:
    """Warn about patients of the split's sites that the split leaves out (they would silently vanish)."""
    df = _case_index(manifest)
    if "site" not in df.columns:
        return
    used = {c for ids in split.values() for c in ids}
    sites = set(df.loc[sorted(used), "site"]) if used else set()
    left = sorted(c for c in df.index[df["site"].isin(sites)] if c not in used)
    if left:
        warn_input(f"{len(left)} patient(s) of the split's sites are in no split and will not be used: {names(left)}",
                   file=path, fix="add them to the split file if they should be used")
