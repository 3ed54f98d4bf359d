"""Train-fitted state and the patient dataset.

:class:`FittedState` holds everything fitted on data (omics scaler, survival bin edges). It is
fitted on the **training patients only** (``FittedState.fit(cohort, split["train"])``) and saved
with the run, so validation/test/OOD patients never influence it.

:class:`PatientDataset` yields one patient dict (see docs/architecture.md):

* Slides of one patient are concatenated. The first slide keeps its coordinates; each next slide is
  shifted in x so that its smallest x lies one tile beyond the largest x so far
  (``x' = x - min(x) + prev_max_x + tile``), so slides never overlap. The tile size is the file's
  ``patch_size_level0`` attribute, else the smallest x step of its coordinates, else 256.
* A feature file without coordinates gets grid coordinates (row-major on a square-ish grid of
  ``ceil(sqrt(N))`` columns, tile-sized steps); this is warned once per dataset.
* Training mode subsamples bags above ``bag_cap`` (without replacement, order kept) with a generator
  seeded by (seed, epoch, patient index); call :meth:`PatientDataset.set_epoch` every epoch to get a
  new subsample. Evaluation never subsamples unless ``eval_bag_cap`` is set (then deterministically,
  independent of the epoch).
* Loaded files are kept in an LRU cache keyed by path (``cache_size`` files), so each file is read
  (opened once) only when it falls out of the cache.
* ``magnification``: ``"primary"`` (bag from the primary files), ``"secondary"`` (bag from the
  second magnification), ``"both"`` (primary bag plus ``bag_secondary``/``coords_secondary`` when the
  cohort has a second magnification).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, InputError, warn_input
from .formats import read_features
from .labels import assign_bins, fit_survival_bins
from .prompts import TASKS, build_prompts

__all__ = ["FittedState", "PatientDataset", "collate_single", "POOLED", "DEFAULT_TILE"]

POOLED = "pooled"  # key of the pooled (all training patients) bin edges in FittedState.bin_edges
DEFAULT_TILE = 256
_MAGNIFICATIONS = ("primary", "secondary", "both")


# ----------------------------------------------------------------------------------------------
# fitted state


@dataclass
class FittedState:
    """Quantities fitted on the training patients only.

    Attributes:
        genes: gene order of the omics vector.
        omics_mean, omics_std: per-gene scaler from training patients with omics (std 0 -> 1);
            None when the cohort has no expression.
        bin_edges: survival bin edges per site, plus ``POOLED`` over all training patients. Every
            site of the cohort has an entry: its own edges when it has at least ``n_bins`` training
            patients with survival, else the pooled edges (``bin_source`` says which).
        bin_source: site -> "site" | "pooled".
        n_bins: number of survival bins.
        train_ids: the training case ids the state was fitted on.
    """

    genes: list[str] = field(default_factory=list)
    omics_mean: np.ndarray | None = None
    omics_std: np.ndarray | None = None
    bin_edges: dict[str, np.ndarray] = field(default_factory=dict)
    bin_source: dict[str, str] = field(default_factory=dict)
    n_bins: int = 4
    train_ids: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, cohort, train_ids: Sequence[str], n_bins: int = 4) -> "FittedState":
        """Fit the omics scaler and survival bins on ``train_ids`` only.

        Raises:
            InputError: ``train_ids`` contains cases that are not in the cohort.
        """
        man = cohort.manifest
        ids = [str(c) for c in train_ids]
        unknown = [c for c in ids if c not in man.index]
        if unknown:
            raise InputError(f"training ids not in the cohort: {unknown[:10]}", file=getattr(cohort, "root", None),
                             fix="use a split made for this cohort")
        train = man.loc[ids]
        mean, std = _fit_scaler(cohort, train)
        edges, source = _fit_bins(man, train, int(n_bins))
        return cls(genes=list(cohort.genes), omics_mean=mean, omics_std=std, bin_edges=edges, bin_source=source,
                   n_bins=int(n_bins), train_ids=sorted(ids))

    def edges_for(self, site: str) -> np.ndarray | None:
        """Bin edges of a site (pooled edges for a site unseen at fitting time; None if none)."""
        return self.bin_edges.get(site, self.bin_edges.get(POOLED))

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std with the train-fitted scaler."""
        if self.omics_mean is None:
            return np.asarray(x, dtype=np.float32)
        return ((np.asarray(x, dtype=np.float32) - self.omics_mean) / self.omics_std).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-serialisable form (``inf`` edges are written as the string "inf")."""
        return {
            "genes": list(self.genes),
            "omics_mean": None if self.omics_mean is None else self.omics_mean.astype(float).tolist(),
            "omics_std": None if self.omics_std is None else self.omics_std.astype(float).tolist(),
            "bin_edges": {k: [_enc(x) for x in np.asarray(v, dtype=float)] for k, v in self.bin_edges.items()},
            "bin_source": dict(self.bin_source),
            "n_bins": self.n_bins,
            "train_ids": list(self.train_ids),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FittedState":
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(genes=list(d.get("genes", [])), omics_mean=arr(d.get("omics_mean")),
                   omics_std=arr(d.get("omics_std")),
                   bin_edges={k: np.asarray([float(x) for x in v], dtype=float)
                              for k, v in (d.get("bin_edges") or {}).items()},
                   bin_source=dict(d.get("bin_source") or {}), n_bins=int(d.get("n_bins", 4)),
                   train_ids=list(d.get("train_ids", [])))


def _enc(x: float):
    return "inf" if np.isposinf(x) else float(x)


def _fit_scaler(cohort, train) -> tuple[np.ndarray | None, np.ndarray | None]:
    if cohort.expression is None:
        return None, None
    ids = [c for c in train.index[train["has_omics"].to_numpy(bool)] if c in cohort.expression.index]
    g = len(cohort.genes)
    if not ids:
        warn_input("no training patient has omics; the omics scaler is the identity (mean 0, std 1)",
                   file=getattr(cohort, "root", None), fix="check the split and the expression matrix")
        return np.zeros(g, np.float32), np.ones(g, np.float32)
    x = cohort.expression.loc[ids, list(cohort.genes)].to_numpy(dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)  # zero-std guard (constant genes)
    return mean.astype(np.float32), std.astype(np.float32)


def _fit_bins(man, train, n_bins: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    surv = train[train["has_survival"].to_numpy(bool)]
    edges: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    if len(surv):
        edges[POOLED] = np.asarray(fit_survival_bins(surv["survival_months"].to_numpy(float),
                                                     surv["event"].to_numpy(float), n_bins=n_bins), dtype=float)
    for site in sorted(man["site"].unique()):
        s = surv[surv["site"] == site]
        if len(s) >= n_bins:
            edges[site] = np.asarray(fit_survival_bins(s["survival_months"].to_numpy(float),
                                                       s["event"].to_numpy(float), n_bins=n_bins), dtype=float)
            source[site] = "site"
        elif POOLED in edges:
            edges[site] = edges[POOLED]
            source[site] = "pooled"
    return edges, source


# ----------------------------------------------------------------------------------------------
# slide loading


@dataclass
class _Slide:
    features: np.ndarray  # float32 [N, D]
    coords: np.ndarray    # float64 [N, 2]
    tile: float
    generated: bool       # coords were missing and generated on a grid


def _tile_size(coords: np.ndarray | None, attrs: Mapping) -> float:
    for key in ("patch_size_level0", "patch_size_lv0"):
        v = attrs.get(key) if attrs else None
        if v is not None:
            try:
                v = float(np.asarray(v).reshape(-1)[0])
            except (TypeError, ValueError):
                continue
            if v > 0:
                return v
    if coords is not None and len(coords) > 1:
        steps = np.diff(np.unique(coords[:, 0]))
        steps = steps[steps > 0]
        if steps.size:
            return float(steps.min())
    return float(DEFAULT_TILE)


def _grid_coords(n: int, tile: float) -> np.ndarray:
    cols = max(1, int(math.ceil(math.sqrt(n))))
    i = np.arange(n)
    return np.stack([(i % cols) * tile, (i // cols) * tile], axis=1).astype(np.float64)


def _load_slide(path: Path) -> _Slide:
    ff = read_features(path)  # opens the file once
    feats = np.asarray(ff.features, dtype=np.float32)
    tile = _tile_size(ff.coords, ff.attrs or {})
    if ff.coords is None:
        return _Slide(feats, _grid_coords(len(feats), tile), tile, True)
    return _Slide(feats, np.asarray(ff.coords, dtype=np.float64).reshape(-1, 2), tile, False)


class _LRU:
    """Tiny LRU cache path -> loaded slide."""

    def __init__(self, size: int):
        self.size = max(0, int(size))
        self.data: OrderedDict[str, _Slide] = OrderedDict()

    def get(self, key: str, load) -> _Slide:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        value = load()
        if self.size:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


def concat_slides(slides: Sequence[_Slide]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate slides; slide k's x is shifted past the previous slides' max x plus one tile."""
    feats, coords = [], []
    max_x = None
    for s in slides:
        c = s.coords.copy()
        if max_x is not None and len(c):
            c[:, 0] = c[:, 0] - c[:, 0].min() + max_x + s.tile
        if len(c):
            max_x = float(c[:, 0].max()) if max_x is None else max(max_x, float(c[:, 0].max()))
        feats.append(s.features)
        coords.append(c)
    return np.concatenate(feats, axis=0), np.concatenate(coords, axis=0)


# ----------------------------------------------------------------------------------------------
# dataset


class PatientDataset(Dataset):
    """One item per patient (see the module docstring and docs/architecture.md).

    Args:
        cohort: a loaded :class:`~modaltune.data.cohort.Cohort`.
        case_ids: patients of this dataset (e.g. ``split["train"]``).
        state: :class:`FittedState` fitted on the training split.
        train: training mode (bag subsampling above ``bag_cap``).
        bag_cap: maximum patches per patient in training (None = no cap).
        text_cache: prompt string -> embedding [Dt]; when given, items carry ``text_emb`` [3, Dt].
        magnification: "primary", "secondary" or "both".
        seed: base seed of the subsampling.
        eval_bag_cap: optional cap in evaluation mode (deterministic subsample).
        cache_size: number of loaded feature files kept in memory.
    """

    def __init__(self, cohort, case_ids: Sequence[str], state: FittedState, *, train: bool,
                 bag_cap: int | None = None, text_cache: Mapping[str, Any] | None = None,
                 magnification: str = "primary", seed: int = 0, eval_bag_cap: int | None = None,
                 cache_size: int = 16):
        if magnification not in _MAGNIFICATIONS:
            raise ConfigError(f"magnification must be one of {_MAGNIFICATIONS}, not '{magnification}'")
        if magnification == "secondary" and not cohort.feature_dim_secondary:
            raise ConfigError("magnification 'secondary' but the cohort has no second magnification")
        ids = [str(c) for c in case_ids]
        unknown = [c for c in ids if c not in cohort.manifest.index]
        if unknown:
            raise InputError(f"case ids not in the cohort: {unknown[:10]}", file=getattr(cohort, "root", None),
                             fix="use a split made for this cohort")
        if state.genes and list(state.genes) != list(cohort.genes):
            raise InputError("the fitted state's genes differ from the cohort's", file=getattr(cohort, "root", None),
                             fix="fit the state on this cohort (FittedState.fit)")
        self.cohort, self.case_ids, self.state = cohort, ids, state
        self.train, self.bag_cap, self.eval_bag_cap = bool(train), bag_cap, eval_bag_cap
        self.text_cache, self.magnification, self.seed = text_cache, magnification, int(seed)
        self.epoch = 0
        self._cache = _LRU(cache_size)
        self._warned_coords = False
        self._rows = cohort.manifest.loc[ids].to_dict(orient="records")
        self._prompts = [self._build_prompts(r) for r in self._rows]

    # -- public helpers ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.case_ids)

    def set_epoch(self, epoch: int) -> None:
        """Change the training subsample (call once per epoch)."""
        self.epoch = int(epoch)

    def prompts(self, index: int) -> list[str]:
        """The prompts of item ``index`` in ``TASKS`` order (no file access)."""
        return list(self._prompts[index])

    def prompt_texts(self) -> list[str]:
        """Every distinct prompt of the dataset (to fill a ``text_cache``)."""
        return sorted({p for ps in self._prompts for p in ps})

    # -- item --------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self._rows[index]
        case = row["case_id"]
        item: dict[str, Any] = {"case_id": case, "site": row["site"], "index": int(index)}
        first = "secondary" if self.magnification == "secondary" else "primary"
        item["bag"], item["coords"] = self._bag(row, first, index)
        if self.magnification == "both" and self.cohort.feature_dim_secondary:
            item["bag_secondary"], item["coords_secondary"] = self._bag(row, "secondary", index)
        item["omics"] = self._omics(case, row)
        item["has_wsi"] = torch.tensor(bool(row["has_wsi_secondary"] if first == "secondary" else row["has_wsi"]))
        item["has_omics"] = torch.tensor(bool(row["has_omics"]) and self.cohort.expression is not None)
        item["has_report"] = torch.tensor(bool(row["has_report"]))
        item["subtype"] = torch.tensor(int(row["subtype_index"]) if not row["rare"] else -1, dtype=torch.long)
        item.update(self._survival(row))
        item["prompts"] = list(self._prompts[index])
        if self.text_cache is not None:
            item["text_emb"] = self._text_emb(item["prompts"], case)
        item["report"] = self.cohort.report_text(case) if row["has_report"] else ""
        return item

    def _bag(self, row: Mapping, which: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        col = "slide_paths" if which == "primary" else "slide_paths_secondary"
        dim = self.cohort.feature_dim if which == "primary" else self.cohort.feature_dim_secondary
        paths = [p for p in str(row.get(col) or "").split(";") if p]
        if not paths:
            return torch.zeros(0, dim), torch.zeros(0, 2)
        slides = [self._slide(p, row["case_id"]) for p in paths]
        feats, coords = concat_slides(slides)
        keep = self._subsample(len(feats), index)
        if keep is not None:
            feats, coords = feats[keep], coords[keep]
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), \
            torch.from_numpy(np.ascontiguousarray(coords, dtype=np.float32))

    def _slide(self, path: str, case: str) -> _Slide:
        def load() -> _Slide:
            if not Path(path).exists():
                raise InputError("feature file listed in the manifest is missing", file=path, case=case,
                                 fix="restore the file or re-run `modaltune prepare`")
            return _load_slide(Path(path))

        slide = self._cache.get(path, load)
        if slide.generated and not self._warned_coords:
            self._warned_coords = True
            warn_input("feature file has no coordinates; grid coordinates were generated (warned once per dataset)",
                       file=path, case=case, fix="extract features with TRIDENT/CLAM to keep patch coordinates")
        return slide

    def _subsample(self, n: int, index: int) -> np.ndarray | None:
        cap = self.bag_cap if self.train else self.eval_bag_cap
        if cap is None or n <= int(cap):
            return None
        key = [self.seed, self.epoch, index] if self.train else [self.seed, index]
        rng = np.random.default_rng(key)
        return np.sort(rng.choice(n, size=int(cap), replace=False))

    def _omics(self, case: str, row: Mapping) -> torch.Tensor:
        expr = self.cohort.expression
        g = len(self.cohort.genes) if expr is not None else 0
        if expr is None or not row["has_omics"] or case not in expr.index:
            return torch.zeros(g)
        return torch.from_numpy(self.state.standardise(expr.loc[case].to_numpy(dtype=np.float32)))

    def _survival(self, row: Mapping) -> dict[str, torch.Tensor]:
        has = bool(row["has_survival"])
        months = float(row["survival_months"]) if has else 0.0
        event = float(row["event"]) if has else 0.0
        edges = self.state.edges_for(row["site"])
        b = int(assign_bins(np.asarray([months]), edges)[0]) if has and edges is not None else -1
        return {"survival_months": torch.tensor(months, dtype=torch.float32),
                "event": torch.tensor(event, dtype=torch.float32),
                "has_survival": torch.tensor(has), "survival_bin": torch.tensor(b, dtype=torch.long)}

    def _build_prompts(self, row: Mapping) -> list[str]:
        clean = {k: (None if (isinstance(v, str) and v == "") or (isinstance(v, float) and np.isnan(v)) else v)
                 for k, v in row.items()}
        if not row["has_survival"]:
            clean["survival_months"] = clean["event"] = None
        p = build_prompts(clean, self.state.edges_for(row["site"]))
        return [p[t] for t in TASKS]

    def _text_emb(self, prompts: list[str], case: str) -> torch.Tensor:
        missing = [p for p in prompts if p not in self.text_cache]
        if missing:
            raise KeyError(f"text_cache lacks the prompt(s) {missing} of case {case}; fill it from "
                           "PatientDataset.prompt_texts()")
        return torch.stack([torch.as_tensor(np.asarray(self.text_cache[p]), dtype=torch.float32) for p in prompts])


def collate_single(batch_list: Sequence[dict]) -> dict:
    """Collate for batch size 1: the only patient dict, unchanged."""
    if len(batch_list) != 1:
        raise ValueError(f"collate_single expects batch size 1, got {len(batch_list)} (use batch_size=1)")
    return batch_list[0]
