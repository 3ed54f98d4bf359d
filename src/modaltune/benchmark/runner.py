"""``modaltune benchmark``: every method x site x seed on the same splits, and the paper's tables.

A *cell* is one training run: (method, site or pan-cancer, seed, task). Methods trained on
text targets (ModalTune) are multi-task, so one run gives both metrics; label-trained
baselines are single-task, so they get one run for subtype and one for survival, as in the
paper. A cell whose ``metrics.json`` exists is not redone, so a stopped benchmark resumes
where it stopped. Writes, under ``--out``:

- ``table2.md`` / ``table2_*.csv`` / ``table2_*.json``: in-domain results (Table 2 style);
- ``table3.md`` / ...: out-of-distribution results with linear probing (Table 3 style);
- ``figures/km_<method>_<site>.png`` and ``km.csv``: Kaplan-Meier curves and log-rank p-values;
- ``confidence_intervals.csv``: bootstrap 95 % CIs of every test metric of every cell;
- ``paired_tests.csv``: best versus second-best method per site and metric;
- ``results.csv`` / ``results.json``: every number with the run directory it came from.

Method specs: a registered name (``abmil``), or ``name:pan`` for a pan-cancer run of a
text-supervised method (``modaltune:pan`` is the paper's "ModalTune Pan-Cancer").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import resolve_config
from ..data.cohort import Cohort
from ..errors import ConfigError
from ..pipeline import in_domain_sites, resolve_split, restrict_split
from ..registry import METHODS
from ..utils import write_json
from .tables import write_tables

log = logging.getLogger(__name__)

DISPLAY = {
    "abmil": "ABMIL", "transmil": "TransMIL", "gigapath_tuned": "GigaPath tuned",
    "mlp": "MLP", "snn": "SNN", "smlp": "S-MLP", "gene_mixer": "Gene Mixer",
    "mcat": "MCAT", "survpath": "SurvPath",
    "abmil_cat": "ABMIL (cat)", "abmil_kp": "ABMIL (KP)", "transmil_cat": "TransMIL (cat)",
    "transmil_kp": "TransMIL (KP)", "gigapath_cat": "GigaPath (cat)", "gigapath_kp": "GigaPath (KP)",
    "modaltune": "ModalTune",
}
TASK_METRIC = {"subtype": "balanced_accuracy", "survival": "c_index"}


@dataclass(frozen=True)
class MethodSpec:
    spec: str
    name: str
    pan: bool

    @property
    def cls(self):
        return METHODS.get(self.name)

    @property
    def text(self) -> bool:
        return getattr(self.cls, "supervision", "labels") == "text"

    @property
    def label(self) -> str:
        base = DISPLAY.get(self.name, self.name)
        return f"{base} pan-cancer" if self.pan else base

    @property
    def family(self) -> str:
        fam = getattr(self.cls, "family", "other")
        return f"{fam} pan-cancer" if self.pan else fam

    def tasks(self) -> list[str | None]:
        if self.text:
            return [None]
        return [t for t in ("subtype", "survival") if t in getattr(self.cls, "tasks", ("subtype", "survival"))]


def parse_methods(methods: list[str]) -> list[MethodSpec]:
    from .. import methods as _  # noqa: F401  (register)

    specs = []
    for m in methods:
        name, _, flag = m.partition(":")
        if flag not in ("", "pan"):
            raise ConfigError(f"method spec '{m}': only the ':pan' suffix is understood")
        spec = MethodSpec(m, name, flag == "pan")
        spec.cls  # noqa: B018  (raises a ConfigError listing known methods)
        if spec.pan and not spec.text:
            raise ConfigError(f"'{m}': pan-cancer runs need a text-supervised method (e.g. modaltune:pan)")
        specs.append(spec)
    return specs


class Benchmark:
    """Runs and collects the cells of one benchmark directory."""

    def __init__(self, cohort_dir, methods, sites, seeds, config, overrides, out, ood=True,
                 ood_reference_site=None, ood_supervised=None):
        self.cohort = Cohort.load(cohort_dir)
        self.specs = parse_methods(methods)
        self.sites = list(sites) if sites else in_domain_sites(self.cohort)
        self.seeds = list(seeds)
        self.config, self.overrides = config, list(overrides or [])
        self.out = Path(out)
        self.ood_sites = list(self.cohort.ood_sites) if ood else []
        self.ref_site = ood_reference_site or self.sites[0]
        if ood_supervised is None:
            ood_supervised = [s.name for s in self.specs if s.family == "Multi-modal"][:1]
        self.ood_supervised = ood_supervised
        self.rows: list[dict] = []
        self.predictions: dict[tuple, Path] = {}

    # ---------------------------------------------------------------- cells
    def _cfg(self, spec: MethodSpec, seed: int, sites: list[str], task: str | None) -> dict:
        over = self.overrides + [f"seed={seed}"]
        extra = {"data": {"sites": sites, "pan_cancer": spec.pan}}
        if task is not None:
            extra["model"] = {"task": task}
        return resolve_config(spec.name, file=self.config, overrides=over, extra=extra)

    def _run(self, cfg: dict, run_dir: Path, sites: list[str]) -> dict:
        from ..training.engine import evaluate_run, train_method

        metrics_path = run_dir / "metrics.json"
        if metrics_path.exists():
            return json.loads(metrics_path.read_text())
        split = restrict_split(resolve_split(cfg, self.cohort), self.cohort, sites)
        resume = (run_dir / "checkpoints").exists()
        train_method(cfg, self.cohort, split, run_dir, resume=resume)
        return evaluate_run(run_dir, cohort=self.cohort)

    def _record(self, spec: MethodSpec, seed: int, metrics: dict, run_dir: Path, metric_names, family=None,
                table="table2", label=None):
        for site, m in metrics.items():
            if site == "overall" or not isinstance(m, dict):
                continue
            for metric in metric_names:
                v = m.get(metric)
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue
                self.rows.append({"table": table, "method": label or spec.label, "family": family or spec.family,
                                  "site": site, "seed": seed, "metric": metric, "value": float(v),
                                  "run_dir": str(run_dir)})
                if table == "table2":
                    self.predictions[(label or spec.label, site, seed, metric)] = run_dir

    def run_in_domain(self) -> None:
        for spec in self.specs:
            groups = [self.sites] if spec.pan else [[s] for s in self.sites]
            for seed in self.seeds:
                for sites in groups:
                    where = "pan" if spec.pan else sites[0]
                    for task in spec.tasks():
                        run_dir = self.out / "runs" / spec.spec.replace(":", "_") / where / f"seed{seed}" / (task or "multi")
                        log.info("benchmark cell %s %s seed %d %s", spec.spec, where, seed, task or "multi")
                        metrics = self._run(self._cfg(spec, seed, sites, task), run_dir, sites)
                        names = [TASK_METRIC[task]] if task else list(TASK_METRIC.values())
                        self._record(spec, seed, metrics, run_dir, names)

    def run_ood(self) -> None:
        from ..training.engine import evaluate_ood

        if not self.ood_sites:
            return
        for spec in self.specs:
            where = "pan" if spec.pan else self.ref_site
            for seed in self.seeds:
                for task in spec.tasks():
                    run_dir = self.out / "runs" / spec.spec.replace(":", "_") / where / f"seed{seed}" / (task or "multi")
                    if not (run_dir / "metrics.json").exists():
                        continue
                    ood_path = run_dir / "metrics_ood.json"
                    if ood_path.exists():
                        metrics = json.loads(ood_path.read_text())
                    else:
                        cfg = self._cfg(spec, seed, self.ood_sites, task)
                        metrics = evaluate_ood(run_dir, self.cohort, self.ood_sites, resolve_split(cfg, self.cohort))
                        write_json(ood_path, metrics)
                    names = [TASK_METRIC[task]] if task else list(TASK_METRIC.values())
                    label = spec.label if spec.pan or spec.text else f"{spec.label} ({self.ref_site}-tuned)"
                    self._record(spec, seed, metrics, run_dir, names, table="table3", label=label)
        for name in self.ood_supervised:
            spec = MethodSpec(name, name, False)
            for site in self.ood_sites:
                for seed in self.seeds:
                    for task in spec.tasks():
                        run_dir = self.out / "runs" / f"{name}_ood_supervised" / site / f"seed{seed}" / (task or "multi")
                        metrics = self._run(self._cfg(spec, seed, [site], task), run_dir, [site])
                        names = [TASK_METRIC[task]] if task else list(TASK_METRIC.values())
                        self._record(spec, seed, metrics, run_dir, names, table="table3",
                                     family="OOD supervised", label=f"{spec.label} supervised")

    # ---------------------------------------------------------------- outputs
    def write(self) -> dict:
        from .analysis import confidence_intervals, km_figures, paired_tests

        self.out.mkdir(parents=True, exist_ok=True)
        results = pd.DataFrame(self.rows, columns=["table", "method", "family", "site", "seed", "metric",
                                                   "value", "run_dir"])
        results.to_csv(self.out / "results.csv", index=False)
        results.to_json(self.out / "results.json", orient="records", indent=2)
        paths = write_tables(results[results.table == "table2"], self.sites, self.out, "table2",
                             "In-domain test results (Table 2 style)")
        if self.ood_sites and (results.table == "table3").any():
            paths.update({f"ood_{k}": v for k, v in write_tables(
                results[results.table == "table3"], self.ood_sites, self.out, "table3",
                "Out-of-distribution test results with linear probing (Table 3 style)").items()})
        t2 = results[results.table == "table2"]
        km_figures(self.predictions, self.out, self.seeds[0])
        confidence_intervals(self.predictions, self.out)
        paired_tests(t2, self.predictions, self.out, self.seeds[0])
        return paths


def run_benchmark(cohort_dir, methods, sites=None, seeds=(0, 1, 2), config=None, overrides=(), out="benchmark",
                  ood=True, ood_supervised=None) -> Benchmark:
    bench = Benchmark(cohort_dir, methods, sites, seeds, config, overrides, out, ood=ood,
                      ood_supervised=ood_supervised)
    bench.run_in_domain()
    bench.run_ood()
    paths = bench.write()
    md = Path(paths["markdown"]).read_text()
    print(md)
    if "ood_markdown" in paths:
        print(Path(paths["ood_markdown"]).read_text())
    print(f"benchmark written to {bench.out}")
    return bench


__all__ = ["run_benchmark", "Benchmark", "parse_methods", "MethodSpec"]
