"""Chained runs: a run that starts from another run's weights, or holds another run frozen.

Two links, both refused with a clear error when the runs do not belong together:

- ``train.init_from: PARENT_RUN``: the child starts from the parent's selected weights and
  inherits its fitted state (scaler, bin edges) and vocabularies (site list, class layout), e.g.
  MICE's per-site fine-tuning from the pan-cancer pre-training. On the same cohort, the parent's
  split restricted to the child's sites must equal the child's split, so a fine-tuned model never
  saw its validation or test patients during pre-training. On another cohort (an external cohort
  mapped through ``data.site_map``), no patient may be in both, and new sites get their own bin
  edges from the child's training patients.
- frozen slots (``Method.frozen_slots``, e.g. the disentangled student's ``model.teacher_run``):
  the frozen run must have used exactly the same split and fitted state as the child, so a teacher
  trained on a fold's test patients is refused (the official code's cross-fold leak).

In both cases the genes must match when the child's cohort has expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..data.cohort import Cohort
from ..data.fitted_state import FittedState
from ..data.formats.ids import names
from ..data.splits import SPLITS, load_split
from ..errors import InputError
from ..methods.base import CohortInfo, Method
from ..utils import read_json
from . import layout
from .load import load_run, read_run_config

__all__ = ["Parent", "load_parent", "check_same_split", "load_frozen_runs"]


@dataclass
class Parent:
    """What a child run takes from its parent."""

    run_dir: Path
    state: FittedState
    info: CohortInfo
    weights: Path


def check_same_split(parent_split: Mapping[str, Sequence[str]], child_split: Mapping[str, Sequence[str]],
                     site_of: Mapping[str, str], sites: Sequence[str], *, file: Path, what: str,
                     train_subset: bool = False) -> None:
    """Refuse when the parent's split, restricted to ``sites``, differs from the child's.

    With ``train_subset`` (a child cut to ``data.train_fraction`` of its training part, its parent
    trained on the whole part) the child's training patients may be a subset of the parent's; the
    validation and test parts must still be identical, so the parent never saw the child's
    validation or test patients.

    Raises:
        InputError: naming the parent's split file, the first differing patients and the fix.
    """
    keep = set(sites)
    for part in SPLITS:
        mine = {c for c in child_split.get(part, []) if site_of.get(c) in keep}
        theirs = {c for c in parent_split.get(part, []) if site_of.get(c) in keep}
        if mine != theirs and not (train_subset and part == "train" and mine <= theirs):
            diff = sorted(mine - theirs) if train_subset and part == "train" else sorted(mine ^ theirs)
            raise InputError(f"the {what} run used another split: {len(diff)} {part} patient(s) differ "
                             f"({names(sorted(diff))})", file=file, case=diff[0],
                             fix="train every stage with the same data.split, data.split_seed, data.fold and "
                                 "data.n_folds")


def _check_genes(state: FittedState, cohort: Cohort, file: Path, what: str) -> None:
    if cohort.expression is not None and state.genes and list(state.genes) != list(cohort.genes):
        raise InputError(f"the {what} run was trained on other genes ({len(state.genes)} vs {len(cohort.genes)} "
                         "in this cohort)", file=file,
                         fix="prepare the cohort with the same expression genes and gene sets as the parent run")


def load_parent(parent_dir: str | Path, cohort: Cohort, split: Mapping[str, Sequence[str]],
                sites: Sequence[str], train_subset: bool = False) -> Parent:
    """Check and load the run a child starts from (``train.init_from``); ``train_subset``: the child
    trains on a part of the parent's training patients (see :func:`check_same_split`)."""
    parent_dir = Path(parent_dir)
    _, parent_cohort = read_run_config(parent_dir)
    weights = parent_dir / layout.BEST
    if not weights.exists():
        raise InputError("the parent run has no selected weights (best.ckpt)", file=parent_dir,
                         fix="finish training the parent run first")
    state = FittedState.from_dict(read_json(parent_dir / layout.STATE))
    info = layout.read_info(parent_dir / layout.INFO)
    same = parent_cohort is not None and Path(parent_cohort).resolve() == Path(cohort.root).resolve()
    site_of = cohort.manifest["site"].astype(str).to_dict()
    if same:
        parent_split = load_split(parent_dir / layout.SPLIT, cohort.manifest, warn_uncovered=False)
        check_same_split(parent_split, split, site_of, sites, file=parent_dir / layout.SPLIT, what="parent",
                         train_subset=train_subset)
    else:
        import pandas as pd

        theirs = set(pd.read_csv(parent_dir / layout.SPLIT, dtype=str)["case_id"])
        both = sorted(theirs & {c for part in split.values() for c in part})
        if both:
            raise InputError(f"{len(both)} patient(s) are both in the parent run (another cohort) and in this run: "
                             f"{names(sorted(both))}", file=parent_dir / layout.SPLIT, case=both[0],
                             fix="an external cohort must not share patients with the pre-training cohort")
        state = state.extend(cohort, split["train"])
    _check_genes(state, cohort, parent_dir / layout.STATE, "parent")
    return Parent(parent_dir, state, info, weights)


def load_frozen_runs(slots: Mapping[str, str | None], cohort: Cohort, split: Mapping[str, Sequence[str]],
                     sites: Sequence[str], state: FittedState, train_subset: bool = False) -> dict[str, Method]:
    """Load every frozen run a method holds, after checking it used the same split (``train_subset``:
    see :func:`check_same_split`) and state."""
    out: dict[str, Method] = {}
    site_of = cohort.manifest["site"].astype(str).to_dict()
    for slot, run_dir in slots.items():
        if not run_dir:
            raise InputError(f"the method needs a frozen '{slot}' run but none is configured",
                             fix=f"set model.{slot}_run to the run directory of the {slot} "
                                 "(the benchmark and `modaltune train` chain it for you)")
        run_dir = Path(run_dir)
        run = load_run(run_dir, cohort)
        check_same_split(run.split, split, site_of, sites, file=run_dir / layout.SPLIT, what=slot,
                         train_subset=train_subset)
        if not run.state.same_as(state):
            raise InputError(f"the {slot} run's fitted state (scaler, bin edges) differs from this run's",
                             file=run_dir / layout.STATE,
                             fix=f"train the {slot} with the same data settings (data.n_bins, the split)")
        _check_genes(run.state, cohort, run_dir / layout.STATE, slot)
        out[slot] = run.method
    return out
