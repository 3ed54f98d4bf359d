"""The patient dataset: one :class:`~modaltune.data.patient.Patient` per case, built from what the
method declares.

* Labels and availability flags are always present; bags, omics, text targets and report vectors
  only when declared (``inputs``, see :data:`~modaltune.data.patient.INPUTS`).
* Slides of one patient are concatenated (:mod:`modaltune.data.slides`).
* Training mode subsamples bags above ``bag_cap`` (without replacement, order kept) with a generator
  seeded by (seed, epoch, patient index); call :meth:`PatientDataset.set_epoch` every epoch to get a
  new subsample. Evaluation never subsamples unless ``eval_bag_cap`` is set (then deterministically,
  independent of the epoch).
* ``fixed_bags``: every bag is put in (y, x) raster order and resampled to ``grid**2`` patches with
  the disentangled framework's repeat / stride rule (:mod:`modaltune.data.fixed_bags`),
  deterministically and at both magnifications, so bags stack into batches.
* ``magnification``: which files feed ``bag`` for single-magnification methods: ``"primary"`` or
  ``"secondary"``; ``"both"`` (or declaring ``bag_secondary``) adds ``bag_secondary`` /
  ``coords_secondary`` from the second magnification.
* Text targets and report vectors come from caches built once per cohort and text encoder
  (:mod:`modaltune.runs.inputs`); the dataset only looks them up, so nothing is re-encoded per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, InputError, warn_input
from .fitted_state import FittedState
from .labels import assign_bins
from .patient import INPUTS, Patient
from .prompts import PROMPT_ITEMS, TASKS, build_prompts
from .slides import Slide, SlideCache, concat_slides, load_slide

__all__ = ["PatientDataset", "LEGACY_INPUTS", "MODALITIES"]

_MAGNIFICATIONS = ("primary", "secondary", "both")
#: modalities a patient may lack (and a study may remove)
MODALITIES = ("wsi", "omics", "report")
#: What a dataset built without an ``inputs`` declaration provides.
LEGACY_INPUTS = frozenset({"bag", "omics", "report_text"})


_FLAGS = {"wsi": ("has_wsi", "has_wsi_secondary"), "omics": ("has_omics",), "report": ("has_report",)}


class PatientDataset(Dataset):
    """One item per patient (see the module docstring and :class:`~modaltune.data.patient.Patient`).

    Args:
        cohort: a loaded :class:`~modaltune.data.cohort.Cohort`.
        case_ids: patients of this dataset (e.g. ``split["train"]``).
        state: :class:`FittedState` fitted on the training split.
        train: training mode (bag subsampling above ``bag_cap``).
        inputs: the declared inputs (default :data:`LEGACY_INPUTS`, plus ``bag_secondary`` with
            ``magnification="both"`` and ``text_targets`` when a ``text_cache`` is given).
        bag_cap: maximum patches per patient in training (None = no cap).
        text_cache: prompt string -> embedding [Dt] (``text_targets``).
        report_cache: report string -> embedding [Dr] (``report_embedding``).
        report_token_cache: report string -> token states [L, Dr] (``report_tokens``).
        magnification: "primary", "secondary" or "both".
        seed: base seed of the subsampling.
        eval_bag_cap: optional cap in evaluation mode (deterministic subsample).
        grid: side of the fixed-size bags (``fixed_bags``).
        absent: modalities treated as missing for every patient (``wsi``, ``omics``, ``report``):
            their flags are false and their inputs empty or zero, as for a patient who lacks them
            (missing-modality studies at test time).
        cache_size: number of loaded feature files kept in memory.
        prompt_omit: prompt items left out of every patient's text prompts (``text.omit``; names in
            :data:`~modaltune.data.prompts.PROMPT_ITEMS`), e.g. the stage items for the paper's
            Table 7 "w/o stage" setting.
    """

    def __init__(self, cohort, case_ids: Sequence[str], state: FittedState, *, train: bool,
                 inputs: frozenset[str] | set[str] | None = None, bag_cap: int | None = None,
                 text_cache: Mapping[str, Any] | None = None, report_cache: Mapping[str, Any] | None = None,
                 report_token_cache: Mapping[str, Any] | None = None, magnification: str = "primary",
                 seed: int = 0, eval_bag_cap: int | None = None, grid: int | None = None,
                 absent: Sequence[str] = (), cache_size: int = 16, prompt_omit: Sequence[str] = ()):
        bad_items = sorted(set(prompt_omit) - set(PROMPT_ITEMS))
        if bad_items:
            raise ConfigError(f"text.omit names unknown prompt item(s) {bad_items}; known: {list(PROMPT_ITEMS)}")
        self.prompt_omit = frozenset(prompt_omit)
        if magnification not in _MAGNIFICATIONS:
            raise ConfigError(f"magnification must be one of {_MAGNIFICATIONS}, not '{magnification}'")
        if inputs is None:
            inputs = set(LEGACY_INPUTS) | ({"bag_secondary"} if magnification == "both" else set())
            inputs |= {"text_targets"} if text_cache is not None else set()
        inputs = frozenset(inputs)
        unknown = sorted(inputs - INPUTS)
        if unknown:
            raise ConfigError(f"unknown dataset input(s) {unknown}; known: {sorted(INPUTS)}")
        if magnification == "both" and cohort.feature_dim_secondary and "bag" in inputs:
            inputs |= {"bag_secondary"}
        if (magnification == "secondary" or "bag_secondary" in inputs) and not cohort.feature_dim_secondary:
            raise ConfigError("a second magnification is needed (data.magnification or the method's declared "
                              "'bag_secondary') but the cohort has none; prepare it with --features-secondary")
        if "fixed_bags" in inputs and not grid:
            raise ConfigError("fixed-size bags need data.grid (the side of the grid, e.g. 50)")
        ids = [str(c) for c in case_ids]
        unknown = [c for c in ids if c not in cohort.manifest.index]
        if unknown:
            raise InputError(f"case ids not in the cohort: {unknown[:10]}", file=getattr(cohort, "root", None),
                             fix="use a split made for this cohort")
        if state.genes and list(state.genes) != list(cohort.genes):
            raise InputError("the fitted state's genes differ from the cohort's", file=getattr(cohort, "root", None),
                             fix="fit the state on this cohort (FittedState.fit)")
        self.cohort, self.case_ids, self.state, self.inputs = cohort, ids, state, inputs
        self.train, self.bag_cap, self.eval_bag_cap = bool(train), bag_cap, eval_bag_cap
        self.text_cache, self.report_cache, self.report_token_cache = text_cache, report_cache, report_token_cache
        self.magnification, self.seed, self.grid = magnification, int(seed), int(grid or 0)
        self.absent = frozenset(absent)
        bad = sorted(self.absent - set(MODALITIES))
        if bad:
            raise ConfigError(f"unknown modality {bad} to remove; known: {list(MODALITIES)}")
        self.epoch = 0
        self._cache = SlideCache(cache_size)
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

    def attach_caches(self, caches: Mapping[str, Any]) -> None:
        """Use the ``text_targets`` / ``report_embedding`` / ``report_tokens`` caches of a run."""
        self.text_cache = caches.get("text_targets", self.text_cache)
        self.report_cache = caches.get("report_embedding", self.report_cache)
        self.report_token_cache = caches.get("report_tokens", self.report_token_cache)

    def report_texts(self) -> list[str]:
        """Every distinct non-empty report of the dataset (to fill a report cache)."""
        return sorted({self.cohort.report_text(r["case_id"]) for r in self._rows if r["has_report"]} - {""})

    # -- item --------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Patient:
        row = self._rows[index]
        if self.absent:
            row = {**row, **{k: False for m in self.absent for k in _FLAGS[m]}, **(
                {"slide_paths": "", "slide_paths_secondary": ""} if "wsi" in self.absent else {})}
        case = row["case_id"]
        item: dict[str, Any] = {"case_id": case, "site": row["site"], "index": int(index)}
        first = "secondary" if self.magnification == "secondary" else "primary"
        if "bag" in self.inputs:
            item["bag"], item["coords"] = self._bag(row, first, index)
        if "bag_secondary" in self.inputs:
            item["bag_secondary"], item["coords_secondary"] = self._bag(row, "secondary", index)
        if "omics" in self.inputs:
            item["omics"] = self._omics(case, row)
        item["has_wsi"] = torch.tensor(bool(row["has_wsi_secondary"] if first == "secondary" else row["has_wsi"]))
        item["has_wsi_secondary"] = torch.tensor(bool(row.get("has_wsi_secondary", False)))
        item["has_omics"] = torch.tensor(bool(row["has_omics"]) and self.cohort.expression is not None)
        item["has_report"] = torch.tensor(bool(row["has_report"]))
        item["subtype"] = torch.tensor(int(row["subtype_index"]) if not row["rare"] else -1, dtype=torch.long)
        item.update(self._survival(row))
        item["prompts"] = list(self._prompts[index])
        if "text_targets" in self.inputs:
            item["text_emb"] = self._text_emb(item["prompts"], case)
        report = self.cohort.report_text(case) if row["has_report"] else ""
        if "report_text" in self.inputs:
            item["report"] = report
        if "report_embedding" in self.inputs:
            item["report_emb"] = self._lookup(self.report_cache, report, case, "report_cache", token_level=False)
        if "report_tokens" in self.inputs:
            item["report_tokens"] = self._lookup(self.report_token_cache, report, case, "report_token_cache",
                                                 token_level=True)
        return item  # type: ignore[return-value]

    def _bag(self, row: Mapping, which: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        col = "slide_paths" if which == "primary" else "slide_paths_secondary"
        dim = self.cohort.feature_dim if which == "primary" else self.cohort.feature_dim_secondary
        paths = [p for p in str(row.get(col) or "").split(";") if p]
        if not paths:
            n = self.grid ** 2 if "fixed_bags" in self.inputs else 0
            return torch.zeros(n, dim), torch.zeros(n, 2)
        slides = [self._slide(p, row["case_id"]) for p in paths]
        feats, coords = concat_slides(slides)
        if "fixed_bags" in self.inputs:
            from .fixed_bags import fixed_bag

            feats, coords, _ = fixed_bag(feats, coords, self.grid)
        else:
            keep = self._subsample(len(feats), index)
            if keep is not None:
                feats, coords = feats[keep], coords[keep]
        feats = self.state.scale("bag" if which == "primary" else "bag_secondary", feats)
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), \
            torch.from_numpy(np.ascontiguousarray(coords, dtype=np.float32))

    def _slide(self, path: str, case: str) -> Slide:
        def load() -> Slide:
            if not Path(path).exists():
                raise InputError("feature file listed in the manifest is missing", file=path, case=case,
                                 fix="restore the file or re-run `modaltune prepare`")
            return load_slide(Path(path))

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
        """The patient's prompts (missing values are left out by :func:`build_prompts` itself)."""
        if not row["has_survival"] or "survival_status" in self.prompt_omit:
            row = {**row, "survival_months": None, "event": None}
        if self.prompt_omit:
            row = {**row, **{k: None for k in self.prompt_omit if k != "survival_status"}}
        p = build_prompts(row, self.state.edges_for(row["site"]))
        return [p[t] for t in TASKS]

    def _text_emb(self, prompts: list[str], case: str) -> torch.Tensor:
        missing = [p for p in prompts if p not in self.text_cache]
        if missing:
            raise KeyError(f"text_cache lacks the prompt(s) {missing} of case {case}; fill it from "
                           "PatientDataset.prompt_texts()")
        return torch.stack([torch.as_tensor(np.asarray(self.text_cache[p]), dtype=torch.float32) for p in prompts])

    def _lookup(self, cache: Mapping[str, Any] | None, report: str, case: str, name: str,
                token_level: bool) -> torch.Tensor:
        if cache is None:
            raise ConfigError(f"the method declares report inputs but the dataset has no {name}; build datasets "
                              "with modaltune.runs.inputs.prepare_run")
        if not report:
            dim = _cache_dim(cache)
            return torch.zeros((0, dim) if token_level else (dim,))
        if report not in cache:
            raise KeyError(f"{name} lacks the report of case {case}; fill it from PatientDataset.report_texts()")
        vec = np.asarray(cache[report], dtype=np.float32)
        if not token_level:
            vec = self.state.scale("report_embedding", vec)
        return torch.as_tensor(vec, dtype=torch.float32)


def _cache_dim(cache: Mapping[str, Any]) -> int:
    """Width of the vectors of a cache (0 when it is empty)."""
    dim = getattr(cache, "dim", None)
    if dim is not None:
        return int(dim)
    for v in cache.values():
        return int(np.asarray(v).shape[-1])
    return 0
