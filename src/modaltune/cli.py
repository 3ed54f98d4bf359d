"""The ``modaltune`` command line: one entry point, one sub-command per step.

    modaltune synth     write the built-in synthetic cohort in standard file formats
    modaltune prepare   validate and align raw inputs into a cohort directory
    modaltune train     train a registered method (per site or pan-cancer)
    modaltune embed     write patient embeddings of a trained run
    modaltune evaluate  probe / predict on the test split and write metrics.json
    modaltune benchmark methods x sites x seeds, Table-2/3 style tables, KM curves
    modaltune demo      synth -> prepare -> train -> evaluate -> benchmark, in minutes on a CPU
    modaltune methods   list registered methods
    modaltune doctor    check the environment

Heavy imports happen inside the sub-commands so ``modaltune --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .cli_setup import _DefaultsFormatter, _shipped
from .errors import ConfigError, ModaltuneError
from .logs import setup_logging


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=f"a shipped config by name ({_shipped()}: in "
                                               "src/modaltune/configs/) or the path of your YAML file; --set wins")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, help="seed for split, initialisation and data order (default: the "
                                            "config's seed, 0)")


def overrides(args) -> list[str]:
    """The ``--set`` overrides of a command, with ``--seed`` as ``seed=N``."""
    return list(args.overrides) + ([f"seed={args.seed}"] if getattr(args, "seed", None) is not None else [])


def cmd_synth(args) -> int:
    """``modaltune synth``: write the built-in synthetic cohort."""
    from .synthetic import make_synthetic
    from .synthetic.generate import DEFAULT_OOD_SITES

    kwargs = {"seed": args.seed}
    if args.sites:
        kwargs["sites"] = tuple(s.strip() for s in args.sites.split(",") if s.strip())
    if args.ood_sites is not None:
        kwargs["ood_sites"] = tuple(s.strip() for s in args.ood_sites.split(",") if s.strip())
    elif args.sites:   # the default held-out site only where it is among the chosen sites
        kwargs["ood_sites"] = tuple(s for s in DEFAULT_OOD_SITES if s in {x.upper() for x in kwargs["sites"]})
    if args.patients:
        kwargs["patients"] = args.patients
    if args.dim:
        kwargs["dim"] = args.dim
    info = make_synthetic(args.out, **kwargs)
    print(f"synthetic cohort written to {args.out}")
    oracle = info.get("oracle_c_index") if isinstance(info, dict) else None
    if oracle:
        print("oracle C-index per site: " + ", ".join(f"{k}={v:.3f}" for k, v in oracle.items()))
    return 0


def cmd_prepare(args) -> int:
    """``modaltune prepare``: validate and align raw inputs into a cohort directory."""
    from .data.prepare import prepare_cohort

    cohort = prepare_cohort(
        args.out,
        features=args.features,
        features_secondary=args.features_secondary,
        clinical=args.clinical,
        expression=args.expression,
        gene_sets=args.gene_sets,
        reports=args.reports,
        slide_case_table=args.slide_case_table,
        grouping=args.grouping,
        ood_sites=tuple(s.strip() for s in (args.ood_sites or "").split(",") if s.strip()),
        clinical_columns=_column_map(args.clinical_column),
        min_genes_per_pathway=args.min_genes_per_pathway,
        check_values=not args.no_value_check,
        expression_orientation=args.expression_orientation,
        site_scheme=args.site_scheme,
    )
    summary = Path(args.out) / "summary.txt"
    if summary.exists():
        print(summary.read_text())
    print(f"cohort written to {args.out} ({len(cohort.manifest)} patients)")
    return 0


def _column_map(items: list[str]) -> dict[str, str] | None:
    """``["event=os_event", "time=os_months"]`` -> ``{"event": "os_event", "time": "os_months"}``."""
    out = {}
    for item in items or []:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ConfigError(f"--clinical-column '{item}' must look like FIELD=COLUMN, e.g. case_id=patient")
        out[field.strip()] = column.strip()
    return out or None


def cmd_train(args) -> int:
    """``modaltune train``: every stage of a method's protocol."""
    from .chains import train_chain
    from .data.cohort import Cohort

    cohort = Cohort.load(args.cohort)
    runs = train_chain(args.method, cohort, args.out, config=args.config, overrides=overrides(args),
                       resume=args.resume)
    if int(os.environ.get("LOCAL_RANK", "0") or 0) != 0 or int(os.environ.get("NODE_RANK", "0") or 0) != 0:
        return 0          # once, not once per DDP process
    if args.no_evaluate:
        for r in runs:
            print(f"run written to {r}; test metrics are not computed: run `modaltune evaluate {r}` to write "
                  f"{r / 'metrics.json'}")
        return 0
    from .evaluation.report import print_metrics
    from .runs.evaluate import evaluate_run

    for r in runs:
        print_metrics(evaluate_run(r, cohort=cohort), title=f"{r} (test split)")
        print(f"run written to {r} (metrics.json, predictions.csv; log in {r / 'train.log'})")
    return 0


def _run_dirs(path: Path) -> list[Path]:
    """A run directory, or a directory of per-site run directories."""
    if (path / "config.yaml").exists():
        return [path]
    runs = sorted(p for p in path.iterdir() if (p / "config.yaml").exists()) if path.is_dir() else []
    if not runs:
        from .errors import InputError
        raise InputError("not a run directory (no config.yaml here or in sub-directories)", file=path,
                         fix="pass the --out directory of `modaltune train`")
    return runs


def cmd_embed(args) -> int:
    """``modaltune embed``: patient embeddings of a trained run."""
    import numpy as np

    from .data.cohort import Cohort
    from .runs.evaluate import embed_run

    cohort = Cohort.load(args.cohort) if args.cohort else None
    for run in _run_dirs(args.run_dir):
        ids, emb = embed_run(run, cohort=cohort)
        out = args.out or (run / "embeddings_all.npz")
        np.savez_compressed(out, case_id=np.asarray(ids), embedding=emb)
        print(f"{len(ids)} embeddings of width {emb.shape[1]} written to {out}")
    return 0


def cmd_evaluate(args) -> int:
    """``modaltune evaluate``: test metrics (and out-of-distribution probing)."""
    from .chains import evaluate_with_ood
    from .data.cohort import Cohort
    from .evaluation.report import print_metrics

    cohort = Cohort.load(args.cohort) if args.cohort else None
    for run in _run_dirs(args.run_dir):
        metrics, ood = evaluate_with_ood(run, cohort=cohort, ood=args.ood)
        print_metrics(metrics, title=f"{run}")
        if ood is not None:
            print_metrics(ood, title=f"{run} (OOD)")
    return 0


def cmd_benchmark(args) -> int:
    """``modaltune benchmark``: methods x units x tasks and the tables."""
    from .benchmark.runner import run_benchmark

    run_benchmark(
        cohort_dir=args.cohort,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        sites=[s.strip() for s in args.sites.split(",")] if args.sites else None,
        seeds=[int(s) for s in args.seeds.split(",")],
        config=args.config,
        overrides=args.overrides,
        out=args.out,
        ood=not args.no_ood,
        folds=args.folds,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        drop_at_test=[m.strip() for m in (args.drop_at_test or "").split(",") if m.strip()],
        train_fractions=[float(f) for f in (args.train_fractions or "").split(",") if f.strip()],
        attribution=args.attribution,
        tasks=[t.strip() for t in (args.tasks or "").split(",") if t.strip()] or None,
        jobs=args.jobs,
    )
    return 0


def cmd_demo(args) -> int:
    """``modaltune demo``: the whole pipeline on a synthetic cohort."""
    from .demo import run_demo

    run_demo(args.out, system=args.system, quick=args.quick, seed=args.seed or 0, benchmark=not args.no_benchmark,
             jobs=_demo_jobs(args.jobs))
    return 0


def _demo_jobs(value: str) -> int:
    """``--jobs`` of the demo: a positive number, or ``auto`` = one job per available CPU core."""
    from .training.threads import available_cores

    if str(value).strip().lower() == "auto":
        return available_cores()
    if not str(value).strip().isdigit() or int(value) < 1:
        raise ConfigError(f"--jobs must be 'auto' or a positive number, not {value!r}")
    return int(value)


def cmd_methods(args) -> int:
    """``modaltune methods``: the registered methods and what they declare."""
    from .config import resolve_config
    from .registry import METHODS, load_builtin

    load_builtin()

    print("Registered methods: `modaltune train NAME`, `modaltune benchmark --methods NAME,...`")
    print("(evaluation: predict = the model's own heads, probe = linear probes on its embeddings; "
          "stages: the protocol's training runs in order)\n")
    print(f"{'method':18s} {'family':14s} {'evaluation':10s} {'stages':32s} inputs")
    variants = []
    for name, cls in METHODS.items():
        if name.startswith("_"):
            continue
        cfg = resolve_config(name)
        decl = cls.declare(cfg)
        stages = ">".join(s.name if s.method == name else f"{s.name}({s.method})" for s in cls.stages(cfg))
        print(f"{name:18s} {cls.family:14s} {decl.evaluation:10s} {stages:32s} {','.join(sorted(decl.inputs))}")
        if getattr(cls, "variants", None):
            variants.append(f"{name}:{{{','.join(cls.variants)}}}")
    print("\nBenchmark method specs besides the names above:")
    print(f"  {'modaltune:pan':24s} ModalTune Pan-Cancer: one model pooled over every site (NAME:pan works for "
          "every method)")
    if variants:
        print(f"  {'NAME:VARIANT':24s} a method's named ablations:")
        for v in variants:
            print(f"  {'':24s} {v}")
    return 0


def cmd_doctor(args) -> int:
    """``modaltune doctor``: check the environment."""
    from .doctor import run_doctor

    return run_doctor()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    p = argparse.ArgumentParser(prog="modaltune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"modaltune {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the built-in synthetic cohort (standard file formats)",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("--out", type=Path, required=True, help="directory for the raw files (clinical.tsv, "
                                                               "expression.tsv, pathways.gmt, reports.csv, features)")
    s.add_argument("--seed", type=int, default=0, help="seed of the generator")
    s.add_argument("--sites", help="comma-separated TCGA sites, e.g. BRCA,NSCLC,RCC,BLCA")
    s.add_argument("--ood-sites", help="comma-separated held-out sites (default BLCA when it is among "
                   "the sites; '' holds out none)")
    s.add_argument("--patients", type=int, help="patients per site")
    s.add_argument("--dim", type=int, help="patch-feature width")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("prepare", help="validate and align raw inputs into a cohort directory",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("--features", type=Path, help="directory of TRIDENT/CLAM .h5 or .pt feature files")
    s.add_argument("--features-secondary", type=Path, help="features of the same slides at a second magnification")
    s.add_argument("--clinical", type=Path, required=True, help="GDC clinical TSV/CSV or SurvPath-style table")
    s.add_argument("--expression", type=Path, help="expression matrix (Xena genes x samples, or samples x genes)")
    s.add_argument("--gene-sets", type=Path, help="GMT file of pathways")
    s.add_argument("--reports", type=Path, help="table of case id and report text")
    s.add_argument("--slide-case-table", type=Path, help="CSV slide_id,case_id for non-TCGA slide names")
    s.add_argument("--grouping", type=Path, help="YAML of subtype class groupings (default: ModalTune Table 4)")
    s.add_argument("--ood-sites", help="comma-separated sites kept out of training (OOD evaluation)")
    s.add_argument("--clinical-column", action="append", default=[], metavar="FIELD=COLUMN",
                   help="map a clinical field (case_id, slide_id, project_id, primary_diagnosis, stage, t, n, m, "
                        "vital_status, days_to_death, ...) to your column name, e.g. case_id=patient (repeatable)")
    s.add_argument("--min-genes-per-pathway", type=int, default=3,
                   help="pathways with fewer genes in the expression are dropped and reported (default 3)")
    s.add_argument("--no-value-check", action="store_true",
                   help="skip the NaN/inf scan of every feature file (faster on huge cohorts)")
    s.add_argument("--expression-orientation", choices=("auto", "genes_x_samples", "samples_x_genes"),
                   default="auto", help="layout of the expression matrix (default: detected)")
    s.add_argument("--site-scheme", choices=("modaltune", "tcga_project"), default="modaltune",
                   help="projects -> sites: modaltune (LUAD+LUSC -> NSCLC, KIRC/KIRP/KICH -> RCC, ...) or "
                        "tcga_project (one site per project; COAD+READ -> CRC, GBM+LGG -> GBMLGG)")
    s.add_argument("--out", type=Path, required=True, help="cohort directory to write (manifest.csv, "
                                                               "cohort.json, summary.txt, ...)")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train a method on a cohort, then evaluate it on the test split",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("method", help="registered method name (see `modaltune methods`)")
    s.add_argument("--cohort", type=Path, required=True, help="cohort directory written by `modaltune prepare`")
    s.add_argument("--out", type=Path, required=True,
                   help="run directory: OUT for one run (pooled, or one site), OUT/<site> for per-site runs of "
                        "several sites; earlier stages in OUT/stages/<stage>")
    s.add_argument("--resume", action="store_true", help="continue a stopped run from its last checkpoint")
    s.add_argument("--no-evaluate", action="store_true",
                   help="skip the test-split evaluation at the end (then run `modaltune evaluate OUT`)")
    _add_config_args(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("embed", help="write patient embeddings of a trained run",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("run_dir", type=Path, help="a run directory (the --out of `modaltune train`, or one of its "
                                              "per-site sub-directories)")
    s.add_argument("--cohort", type=Path, help="cohort directory (default: the run's own)")
    s.add_argument("--out", type=Path, help="output .npz (default: RUN_DIR/embeddings_all.npz)")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("evaluate", help="evaluate a trained run on its test split; writes metrics.json",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("run_dir", type=Path, help="a run directory (the --out of `modaltune train`; a directory of "
                                              "per-site runs evaluates each)")
    s.add_argument("--cohort", type=Path, help="cohort directory (default: the run's own)")
    s.add_argument("--ood", help="also evaluate out-of-distribution on these sites ('auto' = cohort's OOD sites)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("benchmark", help="methods x sites x seeds with Table-2/3 style tables",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("--cohort", type=Path, required=True, help="cohort directory written by `modaltune prepare`")
    s.add_argument("--methods", required=True, help="comma-separated method specs (see `modaltune methods`): NAME, "
                   "NAME:pan, NAME:VARIANT, or 'A|B' = per fold the one better on validation")
    s.add_argument("--sites", help="comma-separated sites or TCGA project ids (default: all in-domain sites)")
    s.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; each seed is one split and one "
                                                    "initialisation (tables: mean ± std over seeds)")
    s.add_argument("--jobs", type=int, default=1,
                   help="independent cells trained in parallel processes, the CPU cores divided between them "
                        "(results identical to --jobs 1)")
    s.add_argument("--folds", type=int, help="k-fold cross-validation with K folds (validation carved from each "
                                              "training fold); tables give mean ± std over folds x seeds")
    s.add_argument("--no-ood", action="store_true", help="skip the out-of-distribution table")
    s.add_argument("--metrics", default="balanced_accuracy,c_index",
                   help="table metrics: balanced_accuracy, c_index, auc, accuracy, sensitivity, specificity, f1")
    s.add_argument("--drop-at-test", help="also evaluate with each of these modalities removed from every test "
                                          "patient: wsi, omics, report (comma-separated)")
    s.add_argument("--train-fractions", help="data efficiency: also train on these fractions of each training part, "
                                             "e.g. 0.1,0.25,0.5 (validation and test parts unchanged; only the last "
                                             "stage of a chained method, e.g. MICE's fine-tuning, unless "
                                             "data.train_fraction_stages=all)")
    s.add_argument("--tasks", help="single-task methods: train only these tasks (subtype, survival; default both)")
    s.add_argument("--attribution", action="store_true",
                   help="Shapley share of each modality in the predicted risk, per site (attribution.csv)")
    s.add_argument("--out", type=Path, required=True, help="benchmark directory (runs/, tables, figures)")
    s.add_argument("--config", type=Path, help=f"config applied to every method: a shipped one by name "
                                               f"({_shipped()}) or a YAML path")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every method, e.g. train.epochs=5 (repeatable)")
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic cohort",
                       formatter_class=_DefaultsFormatter)
    s.add_argument("--out", type=Path, default=Path("modaltune_demo"), help="directory of the demo's files")
    s.add_argument("--seed", type=int, default=0, help="seed of the cohort, splits and training")
    s.add_argument("--system", choices=("modaltune", "mice", "disentangled"), default="modaltune",
                   help="which system to show (default: ModalTune and its baselines)")
    s.add_argument("--quick", action="store_true", help="smaller cohort and fewer epochs (tests use this)")
    s.add_argument("--no-benchmark", action="store_true", help="skip the baseline comparison")
    s.add_argument("--jobs", default="auto",
                   help="independent runs trained in parallel processes: a number, or auto = one per CPU core "
                        "(results identical to --jobs 1)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("methods", help="list registered methods")
    s.set_defaults(func=cmd_methods)
    s = sub.add_parser("doctor", help="check the environment (torch, devices, text encoder, optional extras)")
    s.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a modaltune error prints its message and exits 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ModaltuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
