"""Running a method's protocol: its stages, in order, each a run chained to the ones it needs.

A method's :meth:`~modaltune.methods.base.Method.stages` lists the runs of its protocol (one run for
most methods; MICE: pan-cancer pre-training, then per-site fine-tuning from it; the disentangled
student: teacher, student warm-up, distillation from the student's weights with the teacher
frozen). :func:`plan_chain` turns that into concrete runs: each stage's config is the stage
method's config (file, ``methods:`` section, overrides) with the owner's ``stages.<name>`` section on
top, plus the links (``train.init_from``, ``model.<slot>_run``) to the runs it depends on.

Directories: the last stage's runs go where a single-stage method's would (``OUT`` or ``OUT/<site>``);
earlier stages go to ``stage_dir(name)``. A stage without settings of its own trains exactly what the
stage method trains on its own, so the benchmark gives it the same directory as that method's own cell
and trains it once (the disentangled teacher row and the teacher of the distillation are one run).
:func:`run_chain` trains what is not finished yet, so a stopped chain resumes in the middle.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import deep_merge, resolve_config
from .data.cohort import Cohort
from .errors import ConfigError
from .methods.base import Stage
from .pipeline import resolve_split, restrict_split, select_sites
from .runs import layout
from .runs.builders import method_class

__all__ = ["Resolver", "PlannedRun", "plan_chain", "run_chain", "train_chain", "evaluate_with_ood",
           "STAGES_DIR", "FRACTION_STAGES", "stage_train_fraction"]

#: Where ``modaltune train OUT`` puts the runs of a method's earlier stages.
STAGES_DIR = "stages"

#: Values of ``data.train_fraction_stages``.
FRACTION_STAGES = ("final", "all")


def stage_train_fraction(cfg: dict, final: bool) -> float:
    """The training fraction a stage of a chain trains on.

    ``data.train_fraction`` cuts the training part of every fold for a data-efficiency study. With
    ``data.train_fraction_stages: final`` (the default, the MICE paper's protocol) only the chain's
    last stage (fine-tuning, distillation) is cut and earlier stages (pan-cancer pre-training, the
    teacher) train on the whole training part, so "pre-training then fine-tuning on 25 %" is
    compared with "training from scratch on 25 %"; ``all`` cuts every stage. A single-stage method is
    cut either way.
    """
    data = cfg["data"]
    fraction = float(data.get("train_fraction") if data.get("train_fraction") is not None else 1.0)
    scope = data.get("train_fraction_stages") or "final"
    if scope not in FRACTION_STAGES:
        raise ConfigError(f"data.train_fraction_stages must be one of {FRACTION_STAGES}, got {scope!r}")
    return fraction if final or scope == "all" else 1.0


@dataclass
class Resolver:
    """Resolves the config of any method with the same file, overrides and extra settings."""

    file: str | Path | None = None
    overrides: Sequence[str] = ()
    extra: dict | None = None
    #: a benchmark's overrides reach methods of different protocols: ``stages.<name>.*`` then
    #: applies to the methods that have a stage ``<name>`` (the benchmark checks that one does)
    stages_where_present: bool = False

    def __call__(self, method: str) -> dict:
        """The resolved config of ``method``."""
        overrides = list(self.overrides)
        staged = [o for o in overrides if stage_of_override(o)]
        if self.stages_where_present and staged:
            plain = [o for o in overrides if o not in staged]
            base = resolve_config(method, file=self.file, overrides=plain, extra=self.extra)
            names = {st.name for st in method_class(base).stages(base)}
            overrides = plain + [o for o in staged if stage_of_override(o) in names]
        return resolve_config(method, file=self.file, overrides=overrides, extra=self.extra)


def check_stage_overrides(methods: Sequence[str], file, overrides: Sequence[str]) -> None:
    """Refuse a ``stages.<name>.*`` override that none of ``methods`` has a stage for (a typo, not a
    no-op, where :class:`Resolver` applies such overrides only where the stage exists)."""
    wanted = {stage_of_override(o) for o in overrides} - {None}
    if not wanted:
        return
    plain = Resolver(file, [o for o in overrides if not stage_of_override(o)])
    have: set[str] = set()
    for m in methods:
        cfg = plain(m)
        have |= {st.name for st in method_class(cfg).stages(cfg)}
    missing = sorted(wanted - have)
    if missing:
        raise ConfigError(f"--set names stage(s) {missing} that no method here has; their stages are {sorted(have)}: "
                          "check the stage name")


def stage_of_override(override: str) -> str | None:
    """The stage a ``stages.<name>.key=value`` override addresses, else None."""
    parts = override.split("=", 1)[0].strip().split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "stages" else None


@dataclass
class PlannedRun:
    """One run of a chain: its stage, config, directory, sites, and the runs it depends on."""

    stage: Stage
    cfg: dict
    run_dir: Path
    sites: list[str]
    parent: "PlannedRun | None" = None
    frozen: dict[str, "PlannedRun"] = field(default_factory=dict)
    final: bool = False


def _stage_cfg(owner_cfg: dict, stage: Stage, resolve: Callable[[str], dict]) -> tuple[dict, bool]:
    base = resolve(stage.method) if stage.method != owner_cfg["method"] else copy.deepcopy(owner_cfg)
    section = (owner_cfg.get("stages") or {}).get(stage.name) or {}
    if section:
        base = deep_merge(base, section, strict=True, path=f"stages.{stage.name}.")
    return base, bool(section)


def _groups(cfg: dict, cohort: Cohort, scope: str) -> list[tuple[str, list[str]]]:
    sites = select_sites(cfg, cohort)
    if scope == "pooled":
        extra = [s for s in (cfg["data"].get("pretrain_only_sites") or []) if s not in sites]
        return [("pan", sites + extra)]
    if scope == "per_site" or (scope == "run" and not cfg["data"]["pan_cancer"] and len(sites) > 1):
        return [(s, [s]) for s in sites]
    return [("pan" if len(sites) > 1 else sites[0], sites)]


def plan_chain(method: str, cohort: Cohort, resolve: Callable[[str], dict], run_dir_of: Callable[[Stage, str, bool,
               bool], Path]) -> list[PlannedRun]:
    """Concrete runs of ``method``'s stages, in execution order.

    Args:
        method: the registered method whose protocol is planned.
        cohort: the cohort.
        resolve: method name -> resolved config.
        run_dir_of: ``(stage, where, is_final, has_own_settings) -> run directory``.
    """
    owner = resolve(method)
    stages = method_class(owner).stages(owner)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"method '{method}' declares duplicate stage names {names}")
    planned: dict[str, list[PlannedRun]] = {}
    order: list[PlannedRun] = []
    for i, stage in enumerate(stages):
        cfg, own = _stage_cfg(owner, stage, resolve)
        final = i == len(stages) - 1
        cfg["data"]["train_fraction"] = stage_train_fraction(cfg, final)
        runs = []
        for where, sites in _groups(cfg, cohort, stage.scope):
            c = copy.deepcopy(cfg)
            c["data"]["sites"] = list(sites)
            run = PlannedRun(stage, c, Path(run_dir_of(stage, where, final, own)), list(sites), final=final)
            if stage.init_from:
                run.parent = _covering(planned, stage.init_from, sites, stage)
                run.cfg["train"]["init_from"] = str(run.parent.run_dir)
            for slot, source in stage.frozen:
                run.frozen[slot] = _covering(planned, source, sites, stage)
                run.cfg.setdefault("model", {})[f"{slot}_run"] = str(run.frozen[slot].run_dir)
            runs.append(run)
        planned[stage.name] = runs
        order += runs
    return order


def _covering(planned: dict[str, list[PlannedRun]], name: str, sites: Sequence[str], stage: Stage) -> PlannedRun:
    if name not in planned:
        raise ConfigError(f"stage '{stage.name}' depends on '{name}', which is not an earlier stage")
    for run in planned[name]:
        if set(sites) <= set(run.sites):
            return run
    raise ConfigError(f"no run of stage '{name}' covers the sites {list(sites)} of stage '{stage.name}'")


def run_chain(plan: Sequence[PlannedRun], cohort: Cohort, *, fresh: bool = False,
              evaluate: bool = False) -> dict[Path, Any]:
    """Train the planned runs in order; optionally evaluate the final runs.

    Args:
        plan: from :func:`plan_chain`.
        cohort: the cohort.
        fresh: train every run afresh (``modaltune train`` without ``--resume``); otherwise finished
            runs are kept and stopped ones resume from their last checkpoint.
        evaluate: score the final runs on their test split (kept when ``metrics.json`` exists and
            not ``fresh``).

    A stage with ``train.select_scope: pooled`` gets one epoch for all its runs (its sites), chosen
    after all of them are trained (:func:`modaltune.runs.pooled.select_pooled`).

    Returns:
        ``{run_dir: metrics or None}`` for the final runs.
    """
    from .runs.evaluate import evaluate_run
    from .runs.pooled import prune_epoch_weights, select_pooled
    from .training.engine import train_method
    from .utils import read_json

    results: dict[Path, Any] = {}
    order = list(dict.fromkeys(run.stage.name for run in plan))
    for stage_runs in _by_stage(plan):
        pending = []
        for run in stage_runs:
            metrics_path = run.run_dir / layout.METRICS
            if run.final and evaluate and metrics_path.exists() and not fresh:
                layout.warn_changed_config(run.run_dir, run.cfg, "a finished run and its test metrics are kept")
                results[run.run_dir] = read_json(metrics_path)
                continue
            pending.append(run)
            if fresh or not layout.run_finished(run.run_dir):
                split = restrict_split(resolve_split(run.cfg, cohort), cohort, run.sites)
                train_method(run.cfg, cohort, split, run.run_dir,
                             resume=not fresh and (run.run_dir / layout.CHECKPOINTS).exists())
            else:
                layout.warn_changed_config(run.run_dir, run.cfg, "a finished run is kept as it is",
                                           ignore=_later_stage_keys(order, run.stage.name))
        train_cfg = stage_runs[0].cfg["train"]
        if pending and str(train_cfg.get("select_scope") or "run") == "pooled":
            prune = train_cfg.get("keep_epoch_weights", "auto") == "auto"
            if len(stage_runs) > 1:   # before a later stage or the test reads them
                select_pooled([r.run_dir for r in stage_runs], prune=prune)
            elif prune:               # one run: its own choice stands
                prune_epoch_weights(stage_runs[0].run_dir)
        for run in pending:
            if run.final:
                results[run.run_dir] = evaluate_run(run.run_dir, cohort=cohort) if evaluate else None
    return results


def _later_stage_keys(order: Sequence[str], name: str) -> tuple[str, ...]:
    """Config keys of the stages after ``name``: a run of an earlier stage does not depend on them."""
    later = order[order.index(name) + 1:] if name in order else []
    return tuple(k for st in later for k in (f"stages.{st}.", f"stages.{st}:"))


def _by_stage(plan: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """The plan's runs grouped by stage, in order (a pooled selection spans one stage's runs)."""
    groups: list[list[PlannedRun]] = []
    for run in plan:
        if groups and groups[-1][0].stage.name == run.stage.name:
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def train_chain(method: str, cohort: Cohort, out: str | Path, *, config=None, overrides: Sequence[str] = (),
                resume: bool = False, evaluate: bool = False) -> list[Path]:
    """``modaltune train``: every stage of ``method``'s protocol; returns the final run directories.

    The layout does not depend on how many sites there are: a per-site stage writes
    ``OUT/<site>`` for each site (also when the cohort or ``data.sites`` has one site), a pooled
    stage (``data.pan_cancer``, pre-training) writes ``OUT`` itself; earlier stages go to
    ``OUT/stages/<stage>[/<site>]``. Without ``resume`` every run is trained afresh. With
    ``evaluate`` the final runs are scored on their test split at the end (``metrics.json``,
    ``predictions.csv``); ``modaltune train`` does this after training, once.
    """
    out = Path(out)

    def run_dir_of(stage: Stage, where: str, final: bool, own: bool) -> Path:
        base = out if final else out / STAGES_DIR / stage.name
        return base if where == "pan" else base / where

    resolver = Resolver(config, overrides)
    plan = plan_chain(method, cohort, resolver, run_dir_of)
    run_chain(plan, cohort, fresh=not resume, evaluate=evaluate)
    return [r.run_dir for r in plan if r.final]


def evaluate_with_ood(run_dir: str | Path, cohort: Cohort | None = None, ood: str | None = None
                      ) -> tuple[dict, dict | None]:
    """``modaltune evaluate``: test metrics, and out-of-distribution probing on ``ood`` sites
    (comma-separated, or ``auto`` for the cohort's OOD sites)."""
    from .runs.evaluate import evaluate_ood, evaluate_run
    from .runs.load import read_run_config

    metrics = evaluate_run(run_dir, cohort=cohort)
    if not ood:
        return metrics, None
    cfg, cohort_dir = read_run_config(run_dir)
    c = cohort or Cohort.load(cohort_dir)
    sites = list(c.ood_sites) if ood == "auto" else [s.strip() for s in ood.split(",") if s.strip()]
    return metrics, evaluate_ood(run_dir, c, sites, resolve_split(cfg, c))
