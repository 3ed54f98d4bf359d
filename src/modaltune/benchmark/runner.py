"""``modaltune benchmark``: every method x unit (fold, seed) x task on the same splits, and the tables.

Each cell runs its method's protocol (:mod:`modaltune.chains`): one run for most methods, several
chained stages for MICE (pan-cancer pre-training, per-site fine-tuning) or the disentangled student
(teacher, student, distillation). A run whose ``metrics.json`` exists is not redone and a stopped run
resumes, so a stopped benchmark continues where it stopped, also in the middle of a chain. Writes,
under ``--out``:

- ``table2.md`` / ``table2_*.csv`` / ``table2_*.json``: in-domain results (mean ± std over units);
- ``table3.md`` / ...: out-of-distribution results with linear probing (ModalTune Table 3 style);
- ``figures/km_<method>_<site>.png`` and ``km.csv``: Kaplan-Meier curves and log-rank p-values;
- ``confidence_intervals.csv``: bootstrap 95 % CIs of every test metric of every cell;
- ``paired_tests.csv``: per site and metric, the best method against every other (paired
  bootstrap over the first unit's test patients; Wilcoxon signed-rank over units), and over all
  sites (pairs = sites x units);
- with ``drop_at_test``: ``table_missing.md`` -- each method with a modality removed from every test
  patient (its own missing-modality path);
- with ``train_fractions``: ``data_efficiency.md`` -- Overall test metrics when each training part is
  cut to a fraction (nested, stratified; validation and test parts unchanged; by default only a
  chain's last stage, e.g. MICE's fine-tuning: ``data.train_fraction_stages``);
- with ``attribution``: ``attribution.csv`` -- per site, the mean share of each modality in the
  predicted risk (exact Shapley values, :mod:`modaltune.runs.attribution`);
- with a choice ``a|b`` among ``--methods``: ``choices.csv`` -- per unit, each member's validation
  score and which one gave the row its numbers (:mod:`modaltune.benchmark.selection`);
- ``results.csv`` / ``results.json``: every number with the run directory it came from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..chains import PlannedRun, Resolver, check_stage_overrides, plan_chain, run_chain, stage_train_fraction
from ..config import deep_merge
from ..data.cohort import Cohort
from ..data.dataset import MODALITIES
from ..errors import ConfigError
from ..pipeline import in_domain_sites, resolve_site_names, resolve_split
from ..runs import layout
from ..utils import write_json
from .cells import MethodSpec, Selection, Unit, cell_dir, parse_methods, units
from .tables import DEFAULT_METRICS, METRIC_TITLES, write_efficiency, write_tables

log = logging.getLogger(__name__)

__all__ = ["Benchmark", "run_benchmark"]

RESULT_COLUMNS = ["table", "method", "family", "family_order", "site", "fold", "seed", "unit", "metric", "value",
                  "run_dir"]


class Benchmark:
    """Runs and collects the cells of one benchmark directory.

    Args:
        cohort_dir: the prepared cohort.
        methods: method specs (``name`` or ``name:pan``).
        sites: sites to evaluate (names or TCGA project ids; default: every in-domain site).
        seeds: seeds of every cell.
        folds: k-fold cross-validation with this many folds (None: the seed's holdout split).
        config: YAML config (file or shipped name) applied to every method.
        overrides: ``key=value`` overrides applied to every method.
        out: output directory.
        ood: also evaluate on the cohort's out-of-distribution sites (linear probing).
        ood_reference_site: the site whose per-site models are probed out of distribution.
        ood_supervised: methods also trained on each OOD site itself (the supervised reference).
        metrics: the metrics of the tables (default: balanced accuracy and C-index; classification
            runs also report auc, accuracy, sensitivity, specificity, f1).
        drop_at_test: modalities (``wsi``, ``omics``, ``report``) each removed from every test patient
            in an extra evaluation of every final run.
        train_fractions: fractions (< 1) of each training part for a data-efficiency study.
        attribution: Shapley modality shares of every ``predict`` run's test risks.
        tasks: the ``model.task`` values to run for single-task methods (default: every one a method
            trains, e.g. subtype and survival).
    """

    def __init__(self, cohort_dir, methods: Sequence[str], *, sites: Sequence[str] | None = None,
                 seeds: Sequence[int] = (0,), folds: int | None = None, config=None, overrides: Sequence[str] = (),
                 out="benchmark", ood: bool = True, ood_reference_site: str | None = None,
                 ood_supervised: Sequence[str] | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
                 drop_at_test: Sequence[str] = (), train_fractions: Sequence[float] = (), attribution: bool = False,
                 tasks: Sequence[str] | None = None):
        self.kwargs = dict(cohort_dir=cohort_dir, methods=list(methods), sites=sites, seeds=list(seeds), folds=folds,
                           config=config, overrides=list(overrides or []), out=out, ood=ood,
                           ood_reference_site=ood_reference_site, ood_supervised=ood_supervised,
                           metrics=list(metrics), drop_at_test=list(drop_at_test),
                           train_fractions=list(train_fractions), attribution=attribution, tasks=tasks)
        self.cohort = Cohort.load(cohort_dir)
        self.specs = parse_methods(list(methods))
        self.sites = resolve_site_names(sites, self.cohort) if sites else in_domain_sites(self.cohort)
        self.seeds, self.folds = [int(s) for s in seeds], (int(folds) if folds else None)
        self.units = units(self.seeds, self.folds)
        self.config, self.overrides = config, list(overrides or [])
        self.out = Path(out)
        self.ood_sites = list(self.cohort.ood_sites) if ood else []
        self.ref_site = ood_reference_site or self.sites[0]
        if ood_supervised is None:
            ood_supervised = [s.name for s in self.specs if s.family == "Multi-modal"][:1]
        self.ood_supervised = list(ood_supervised)
        check_stage_overrides([m.name for spec in self.specs for m in spec.members], self.config, self.overrides)
        self.split_seed = self._split_seed()
        unknown = [m for m in metrics if m not in METRIC_TITLES]
        if unknown:
            raise ConfigError(f"unknown metric(s) {unknown}; known: {list(METRIC_TITLES)}")
        self.metrics = list(metrics)
        self.drop_at_test = list(drop_at_test)
        bad = [m for m in self.drop_at_test if m not in MODALITIES]
        if bad:
            raise ConfigError(f"unknown modality {bad} for drop_at_test; known: {list(MODALITIES)}")
        self.fractions = sorted({float(f) for f in train_fractions if float(f) < 1.0})
        self.efficiency_units = [u for f in self.fractions for u in units(self.seeds, self.folds, f)]
        self.attribution = bool(attribution)
        self.tasks = list(tasks) if tasks else None
        bad = [t for t in (self.tasks or []) if t not in ("subtype", "survival")]
        if bad:
            raise ConfigError(f"unknown task(s) {bad}; known: subtype, survival")
        self._noted: set[tuple[str, str]] = set()
        self.attributions: list[pd.DataFrame] = []
        self.rows: list[dict] = []
        self.predictions: dict[tuple, Path] = {}
        self.choices: list[dict] = []

    def _split_seed(self) -> int:
        if not self.folds or not self.specs:
            return 0
        resolve = Resolver(self.config, self.overrides, stages_where_present=True)
        s = resolve(self.specs[0].name)["data"].get("split_seed")
        return int(s) if s is not None else 0

    # ---------------------------------------------------------------- cells
    def _resolver(self, spec: MethodSpec, unit: Unit, task: str | None, sites: list[str]) -> Resolver:
        extra: dict = deep_merge(spec.overrides, {"data": {"sites": list(sites), "pan_cancer": spec.pan,
                                                           **unit.data(self.folds, self.split_seed)}}, strict=False)
        if task is not None:
            extra = deep_merge(extra, {"model": {"task": task}}, strict=False)
        return Resolver(self.config, self.overrides + [f"seed={unit.seed}"], extra, stages_where_present=True)

    def labelled_tasks(self, sites: Sequence[str] | None = None) -> set[str]:
        """The tasks some patient of ``sites`` (default: the benchmark's) has a label for."""
        m = self.cohort.manifest
        m = m[m["site"].astype(str).isin(list(sites or self.sites))]
        out = set()
        if "subtype_index" in m and (m["subtype_index"].astype(int) >= 0).any():
            out.add("subtype")
        if "has_survival" in m and m["has_survival"].astype(bool).any():
            out.add("survival")
        return out

    def tasks_of(self, spec: MethodSpec) -> list[str | None]:
        """The task runs of ``spec`` this benchmark trains: restricted by ``tasks``, and without a task
        no patient of the sites has a label for (skipped with a one-line note)."""
        tasks = [t for t in spec.tasks() if t is None or self.tasks is None or t in self.tasks]
        labelled = self.labelled_tasks()
        skipped = [t for t in tasks if t is not None and t not in labelled]
        for t in skipped:
            if (spec.name, t) not in self._noted:
                self._noted.add((spec.name, t))
                print(f"note: {spec.spec}: no {t} run, because no patient of {', '.join(self.sites)} has a {t} "
                      f"label (choose tasks with --tasks)")
        return [t for t in tasks if t not in skipped]

    def plan(self, spec: MethodSpec, unit: Unit, task: str | None, sites: list[str]) -> list[PlannedRun]:
        """The runs of one cell, in order (shared stages resolve to the same directories)."""
        resolver = self._resolver(spec, unit, task, sites)
        owner = resolver(spec.name)

        def run_dir(stage, where, final, own):   # an uncut stage is the 100 % unit's run (trained once)
            staged = Unit(unit.fold, unit.seed, stage_train_fraction(owner, final))
            return cell_dir(self.out, spec, stage, where, staged, task, final, own)

        return plan_chain(spec.name, self.cohort, resolver, run_dir)

    def _record(self, spec: MethodSpec, unit: Unit, metrics: dict, run_dir: Path, metric_names, *, table="table2",
                label=None, family=None, family_order=None) -> None:
        for site, m in metrics.items():
            if site == "overall" or not isinstance(m, dict):
                continue
            for metric in metric_names:
                v = m.get(metric)
                if v is None or v != v:
                    continue
                row = {"table": table, "method": label or spec.label, "family": family or spec.family,
                       "family_order": spec.family_order if family_order is None else family_order, "site": site,
                       "fold": unit.fold, "seed": unit.seed, "unit": unit.name, "metric": metric,
                       "value": float(v), "run_dir": str(run_dir)}
                self.rows.append(row)
                if table == "table2":
                    self.predictions[(row["method"], site, unit.name, metric)] = run_dir

    def cells(self) -> list[tuple[MethodSpec | Selection, Unit, str | None]]:
        """Every in-domain cell (method spec, unit, task), in the order :meth:`run_in_domain` runs them."""
        return [(spec, unit, task) for spec in self.specs for unit in self.units + self.efficiency_units
                for task in self.tasks_of(spec)]

    def training_cells(self) -> list[tuple[MethodSpec, Unit, str | None]]:
        """The cells to train: :meth:`cells` with every choice's members, each once."""
        out = {(m.spec, unit, task): (m, unit, task) for spec, unit, task in self.cells() for m in spec.members}
        return list(out.values())

    def member(self, spec: MethodSpec | Selection, unit: Unit, task: str | None) -> MethodSpec:
        """The spec whose runs give ``spec``'s numbers in ``unit``: itself, or for a :class:`Selection`
        the member with the best validation score (its members are trained first; recorded for
        ``choices.csv``)."""
        if not isinstance(spec, Selection):
            return spec
        from .selection import choose

        candidates = []
        for m in spec.members:
            plan = self.plan(m, unit, task, self.sites)
            run_chain(plan, self.cohort, evaluate=True)
            candidates.append((m.spec, [r.run_dir for r in plan if r.final]))
        best, rows = choose(candidates)
        keys = {"method": spec.label, "unit": unit.name, "fold": unit.fold, "seed": unit.seed,
                "fraction": unit.fraction, "task": task or "multi"}
        self.choices = [c for c in self.choices if {k: c[k] for k in keys} != keys]
        self.choices += [{**keys, **row} for row in rows]
        return spec.members[best]

    def train_parallel(self, jobs: int) -> None:
        """Train and evaluate the in-domain cells in ``jobs`` processes, the cores divided between them
        (:func:`modaltune.benchmark.parallel.train_parallel`; the results equal those of ``jobs=1``)."""
        from .parallel import train_parallel

        train_parallel(self, jobs)

    def run_in_domain(self) -> None:
        """Train and evaluate every cell on the benchmark's sites (and the extra studies asked for)."""
        for spec in self.specs:
            for unit in self.units + self.efficiency_units:
                for task in self.tasks_of(spec):
                    log.info("benchmark cell %s %s %s", spec.spec, unit.name, task or "multi")
                    member = self.member(spec, unit, task)
                    results = run_chain(self.plan(member, unit, task, self.sites), self.cohort, evaluate=True)
                    for run_dir, metrics in results.items():
                        if unit.fraction < 1.0:
                            self._record(spec, unit, metrics, run_dir, spec.metrics(task), table="efficiency")
                            continue
                        self._record(spec, unit, metrics, run_dir, spec.metrics(task))
                        self._extra_studies(spec, unit, task, run_dir, member)

    def _extra_studies(self, spec: MethodSpec | Selection, unit: Unit, task: str | None, run_dir: Path,
                       member: MethodSpec) -> None:
        from ..runs.attribution import modality_attribution
        from ..runs.evaluate import evaluate_run, result_name

        for mod in self.drop_at_test:
            path = run_dir / result_name(layout.METRICS, [mod])
            metrics = json.loads(path.read_text()) if path.exists() else evaluate_run(run_dir, cohort=self.cohort,
                                                                                     absent=[mod])
            self._record(spec, unit, metrics, run_dir, spec.metrics(task), table="missing",
                         label=f"{spec.label} without {mod}")
        resolve = Resolver(self.config, self.overrides, stages_where_present=True)
        if self.attribution and member.cls.declare(resolve(member.name)).evaluation \
                == "predict" and (task in (None, "survival")):
            table = modality_attribution(run_dir, cohort=self.cohort)
            table.insert(0, "unit", unit.name)
            table.insert(0, "method", spec.label)
            self.attributions.append(table)

    def run_ood(self) -> None:
        """Out-of-distribution probing of the reference site's models, and the supervised reference."""
        from ..runs.evaluate import evaluate_ood

        if not self.ood_sites:
            return
        for spec in self.specs:
            for unit in self.units:
                for task in self.tasks_of(spec):
                    member = self.member(spec, unit, task)
                    finals = [r for r in self.plan(member, unit, task, self.sites) if r.final
                              and self.ref_site in r.sites]
                    if not finals or not (finals[0].run_dir / layout.METRICS).exists():
                        continue
                    run = finals[0]
                    ood_path = run.run_dir / layout.METRICS_OOD
                    if ood_path.exists():
                        metrics = json.loads(ood_path.read_text())
                    else:
                        metrics = evaluate_ood(run.run_dir, self.cohort, self.ood_sites,
                                               resolve_split(run.cfg, self.cohort))
                        write_json(ood_path, metrics)
                    pooled = len(run.sites) > 1
                    label = spec.label if pooled or member.cls.declare(run.cfg).evaluation == "probe" \
                        else f"{spec.label} ({self.ref_site}-tuned)"
                    self._record(spec, unit, metrics, run.run_dir, spec.metrics(task), table="table3", label=label)
        for name in self.ood_supervised:
            spec = MethodSpec(f"{name}_ood_supervised", name, False)
            for site in self.ood_sites:
                for unit in self.units:
                    for task in self.tasks_of(spec):
                        for run_dir, metrics in run_chain(self.plan(spec, unit, task, [site]), self.cohort,
                                                          evaluate=True).items():
                            self._record(spec, unit, metrics, run_dir, spec.metrics(task), table="table3",
                                         family="OOD supervised", family_order=90,
                                         label=f"{spec.cls.label()} supervised")

    # ---------------------------------------------------------------- outputs
    def results(self) -> pd.DataFrame:
        """Every recorded number (one row per method, site, unit and metric)."""
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def write(self) -> dict:
        """Write the tables, figures and statistics; returns the paths of the tables."""
        from .analysis import confidence_intervals, km_figures, paired_tests

        self.out.mkdir(parents=True, exist_ok=True)
        results = self.results()
        results.to_csv(self.out / "results.csv", index=False)
        results.to_json(self.out / "results.json", orient="records", indent=2)
        unit_word = "folds x seeds" if self.folds else "seeds"
        paths = write_tables(results[results.table == "table2"], self.sites, self.out, "table2",
                             f"In-domain test results (mean ± std over {unit_word})", self.metrics)
        if self.ood_sites and (results.table == "table3").any():
            paths.update({f"ood_{k}": v for k, v in write_tables(
                results[results.table == "table3"], self.ood_sites, self.out, "table3",
                "Out-of-distribution test results with linear probing (Table 3 style)", self.metrics).items()})
        if (results.table == "missing").any():
            paths.update({f"missing_{k}": v for k, v in write_tables(
                results[results.table == "missing"], self.sites, self.out, "table_missing",
                f"Test results with one modality removed from every test patient (mean ± std over {unit_word})",
                self.metrics).items()})
        if self.fractions:
            paths["efficiency"] = write_efficiency(results, [*self.fractions, 1.0], self.out, self.metrics)
        if self.attributions:
            pd.concat(self.attributions, ignore_index=True).to_csv(self.out / "attribution.csv", index=False)
        if self.choices:
            pd.DataFrame(self.choices).to_csv(self.out / "choices.csv", index=False)
        t2 = results[results.table == "table2"]
        first = self.units[0].name
        km_figures(self.predictions, self.out, first)
        confidence_intervals(self.predictions, self.out)
        paired_tests(t2, self.predictions, self.out, first)
        return paths


def run_benchmark(cohort_dir, methods, sites=None, seeds=(0, 1, 2), config=None, overrides=(), out="benchmark",
                  ood=True, ood_supervised=None, folds=None, metrics=DEFAULT_METRICS, drop_at_test=(),
                  train_fractions=(), attribution=False, tasks=None, jobs: int = 1) -> Benchmark:
    """Run a benchmark end to end and print its tables.

    ``jobs`` > 1 trains independent cells in parallel processes (:meth:`Benchmark.train_parallel`,
    same results as ``jobs=1``); the tables, OOD probing and studies then follow in this process.
    """
    bench = Benchmark(cohort_dir, methods, sites=sites, seeds=seeds, folds=folds, config=config, overrides=overrides,
                      out=out, ood=ood, ood_supervised=ood_supervised, metrics=metrics, drop_at_test=drop_at_test,
                      train_fractions=train_fractions, attribution=attribution, tasks=tasks)
    bench.train_parallel(jobs)
    bench.run_in_domain()
    bench.run_ood()
    paths = bench.write()
    for key in ("markdown", "ood_markdown", "missing_markdown", "efficiency"):
        if key in paths:
            print(Path(paths[key]).read_text())
    print(f"benchmark written to {bench.out}")
    return bench
