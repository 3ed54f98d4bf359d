"""The benchmark runner: folds x seeds cells, families from the method class, project ids as sites."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from modaltune.benchmark.cells import Unit, cell_dir, parse_methods, units
from modaltune.benchmark.runner import Benchmark
from modaltune.errors import ConfigError
from modaltune.methods.base import Stage
from modaltune.pipeline import resolve_site_names

TOY = "_test_runner_toy"   # registered by tests/benchmark/conftest.py


def test_units():
    assert units([0, 1], None) == [Unit(None, 0), Unit(None, 1)]
    assert [u.name for u in units([0], 3)] == ["fold0_seed0", "fold1_seed0", "fold2_seed0"]
    assert Unit(2, 1).data(3, 5) == {"split": "kfold", "n_folds": 3, "fold": 2, "split_seed": 5}
    with pytest.raises(ConfigError, match="at least 2"):
        units([0], 1)


def test_display_and_family_come_from_the_class():
    spec, pan = parse_methods([TOY, f"{TOY}:pan"])
    assert (spec.label, spec.family, spec.family_order) == ("Toy", "Toy family", 7)
    assert (pan.label, pan.family, pan.family_order) == ("Toy pan-cancer", "Toy family pan-cancer", 8)
    assert spec.tasks() == [None] and spec.metrics(None) == ["c_index"]
    with pytest.raises(ConfigError, match="known"):
        parse_methods(["no_such_method"])


def test_project_ids_are_accepted_as_sites(small_cohort):
    assert resolve_site_names(["TCGA-BRCA", "nsclc"], small_cohort) == ["BRCA", "NSCLC"]
    assert resolve_site_names(["TCGA-LUAD"], small_cohort) == ["NSCLC"]      # ModalTune's grouping
    with pytest.raises(ConfigError, match=r"sites are \['BRCA', 'NSCLC'\]"):
        resolve_site_names(["TCGA-PRAD"], small_cohort)


def test_folds_give_one_cell_per_fold_and_mean_std_over_folds(small_cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = Benchmark(small_cohort.root, [TOY], sites=["TCGA-BRCA"], seeds=[0], folds=2, out=tmp_path / "b",
                          overrides=["train.epochs=1", "train.progress_bar=false"], ood=False)
        bench.run_in_domain()
        paths = bench.write()
    assert bench.sites == ["BRCA"]
    res = pd.read_csv(tmp_path / "b" / "results.csv")
    assert sorted(res["unit"]) == ["fold0_seed0", "fold1_seed0"] and set(res["fold"]) == {0, 1}
    runs = sorted(set(res["run_dir"]))
    assert [r.split("/")[-3:] for r in runs] == [["BRCA", "fold0_seed0", "multi"], ["BRCA", "fold1_seed0", "multi"]]
    # the two folds test disjoint patients
    tests = [set(pd.read_csv(f"{r}/split.csv").query("split == 'test'")["case_id"]) for r in runs]
    assert not tests[0] & tests[1]
    md = paths["markdown"].read_text()
    values = res["value"].to_numpy()
    mean, std = values.mean(), values.std(ddof=1)
    assert f"{mean:.3f} ± {std:.3f}" in md and "folds x seeds" in md
    assert "| Toy family | Toy |" in md


def test_missing_at_test_data_efficiency_and_attribution(small_cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = Benchmark(small_cohort.root, [TOY], sites=["BRCA"], seeds=[0], out=tmp_path / "b", ood=False,
                          overrides=["train.epochs=1", "train.progress_bar=false"], drop_at_test=["omics"],
                          train_fractions=[0.5], attribution=True)
        bench.run_in_domain()
        paths = bench.write()
    res = pd.read_csv(tmp_path / "b" / "results.csv")
    assert set(res["table"]) == {"table2", "missing", "efficiency"}
    # without omics the toy (omics only) predicts the same risk for everyone: C-index 0.5
    missing = res[res.table == "missing"]
    assert missing["method"].tolist() == ["Toy without omics"] and missing["value"].iloc[0] == pytest.approx(0.5)
    assert "Toy without omics" in paths["missing_markdown"].read_text()
    # half the training patients, same validation and test patients
    full_run, half_run = res.loc[res.table == "table2", "run_dir"].iloc[0], res.loc[res.table == "efficiency",
                                                                                   "run_dir"].iloc[0]
    assert "frac50_seed0" in half_run
    full, half = (pd.read_csv(f"{r}/split.csv") for r in (full_run, half_run))
    n_full, n_half = (int((d.split == "train").sum()) for d in (full, half))
    assert abs(n_half - n_full / 2) <= 2 and set(half.case_id[half.split == "train"]) <= set(full.case_id)
    for part in ("val", "test"):
        assert set(half.case_id[half.split == part]) == set(full.case_id[full.split == part])
    assert "| Toy |" in paths["efficiency"].read_text() and "50%" in paths["efficiency"].read_text()
    # Shapley shares: the toy reads omics only, so omics carries the whole prediction
    att = pd.read_csv(tmp_path / "b" / "attribution.csv").set_index("site")
    assert att.loc["overall", "share_omics"] == pytest.approx(1.0)
    assert att.loc["overall", "share_wsi"] == 0.0 and att.loc["overall", "share_report"] == 0.0
    per_patient = pd.read_csv(f"{full_run}/attribution_modalities.csv")
    risk_all = pd.read_csv(f"{full_run}/predictions.csv").set_index("case_id")["risk"]
    risk_none = pd.read_csv(f"{full_run}/predictions_without_omics.csv").set_index("case_id")["risk"]
    phi = per_patient.set_index("case_id")["phi_omics"]                 # efficiency: all - none
    assert (phi - (risk_all - risk_none).loc[phi.index]).abs().max() < 1e-5


def test_tasks_restrict_single_task_methods(small_cohort, tmp_path):
    bench = Benchmark(small_cohort.root, ["abmil", TOY], seeds=[0], out=tmp_path / "b", ood=False, tasks=["survival"])
    abmil, toy = bench.specs
    assert bench.tasks_of(abmil) == ["survival"] and bench.tasks_of(toy) == [None]   # multi-task runs stay
    assert Benchmark(small_cohort.root, ["abmil"], out=tmp_path / "c", ood=False).tasks_of(abmil) == ["subtype",
                                                                                                    "survival"]
    with pytest.raises(ConfigError, match="unknown task"):
        Benchmark(small_cohort.root, ["abmil"], out=tmp_path / "d", ood=False, tasks=["grade"])


def test_named_variants_are_ablation_rows_with_their_own_runs(small_cohort, tmp_path):
    plain, variant = parse_methods([TOY, f"{TOY}:x3"])
    assert (variant.label, variant.overrides, variant.slug) == ("Toy (scale 3)", {"model": {"scale": 3.0}},
                                                                f"{TOY}_x3")
    with pytest.raises(ConfigError, match=r"no variant 'x4'.*:pan, :x3"):
        parse_methods([f"{TOY}:x4"])
    # an earlier stage of a variant's chain never shares the plain method's directory
    teacher = Stage("teacher", method="other_method")
    unit = Unit(0, 0)
    assert cell_dir(tmp_path, plain, teacher, "S", unit, None, False, False).parts[-4] == "other_method"
    assert cell_dir(tmp_path, variant, teacher, "S", unit, None, False, False).parts[-4] == f"{TOY}_x3@teacher"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = Benchmark(small_cohort.root, [TOY, f"{TOY}:x3"], sites=["BRCA"], seeds=[0], out=tmp_path / "b",
                          overrides=["train.epochs=1", "train.progress_bar=false"], ood=False)
        bench.run_in_domain()
        md = bench.write()["markdown"].read_text()
    res = pd.read_csv(tmp_path / "b" / "results.csv")
    assert set(res["method"]) == {"Toy", "Toy (scale 3)"} and "| Toy (scale 3) |" in md
    import yaml
    scales = {m: yaml.safe_load(open(f"{g['run_dir'].iloc[0]}/config.yaml"))["model"]["scale"]
              for m, g in res.groupby("method")}
    assert scales == {"Toy": 1.0, "Toy (scale 3)": 3.0}


def test_disentangled_ablations_are_variants_of_teacher_and_distilled_student(small_cohort, tmp_path):
    bench = Benchmark(small_cohort.root, ["dmsf_teacher:cgc_only", "dmsf_distill:hvg10", "dmsf_distill"],
                      sites=["BRCA"], seeds=[0], folds=3, out=tmp_path / "b", ood=False)
    cgc, hvg, plain = bench.specs
    [teacher] = bench.plan(cgc, bench.units[0], "subtype", ["BRCA"])
    assert teacher.cfg["model"]["dev_weight"] == 0.0 and teacher.cfg["model"]["cgc"] is True
    assert cgc.label == "DMSF teacher (CGC only)"
    runs, plain_runs = (bench.plan(s, bench.units[0], "subtype", ["BRCA"]) for s in (hvg, plain))
    assert [r.cfg["model"]["hvg_fraction"] for r in runs] == [0.1, 0.1, 0.1]
    assert [r.run_dir.parts[-4] for r in runs] == ["dmsf_distill_hvg10@teacher", "dmsf_distill_hvg10@student",
                                                   "dmsf_distill_hvg10"]
    # the plain distilled student reuses the stand-alone teacher and student runs
    assert [r.run_dir.parts[-4] for r in plain_runs] == ["dmsf_teacher", "dmsf_student", "dmsf_distill"]


def test_mice_without_its_contrastive_term_is_a_variant(small_cohort, tmp_path):
    bench = Benchmark(small_cohort.root, ["mice:no_contrastive", "mice"], seeds=[0], folds=3, out=tmp_path / "b",
                      ood=False)
    variant, plain = bench.specs
    assert variant.label == "MICE (no contrastive term)"
    runs, plain_runs = (bench.plan(s, bench.units[0], None, bench.sites) for s in (variant, plain))
    weights = [r.cfg["train"]["loss_weights"] for r in runs]
    assert weights[0] == {"survival": 2.0, "contrastive": 0.0}                 # pre-training: survival alone
    assert plain_runs[0].cfg["train"]["loss_weights"] == {"survival": 2.0, "contrastive": 1.0}
    assert len(runs) > 1 and all(w == {"survival": 1.0, "contrastive": 0.0} for w in weights[1:])  # fine-tuning
    assert {r.run_dir for r in runs}.isdisjoint({r.run_dir for r in plain_runs})
    with pytest.raises(ConfigError, match="no variant 'no_contrastive'"):   # nothing to remove without pre-training
        parse_methods(["mice_scratch:no_contrastive"])


def test_connected_groups_cells_that_share_a_run():
    from modaltune.benchmark.parallel import _connected

    assert _connected([{"a"}, {"b"}, {"a", "c"}, {"d"}, {"c"}]) == [[0, 2, 4], [1], [3]]


def test_jobs_two_gives_the_results_of_jobs_one(small_cohort, tmp_path):
    """Independent cells trained in two spawned processes give exactly the numbers of one process."""
    from modaltune.benchmark.runner import run_benchmark

    sets = ["train.epochs=2", "train.warmup_epochs=0", "train.progress_bar=false", "data.bag_cap=8"]
    results, preds = {}, {}
    for jobs in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_benchmark(small_cohort.root, ["snn", "abmil"], seeds=[0, 1], overrides=sets, out=tmp_path / f"j{jobs}",
                          ood=False, tasks=["survival"], jobs=jobs)
        res = pd.read_csv(tmp_path / f"j{jobs}" / "results.csv")
        results[jobs] = res.drop(columns="run_dir").sort_values(["method", "site", "unit", "metric"]).reset_index(
            drop=True)
        preds[jobs] = {r.replace(str(tmp_path / f"j{jobs}"), ""): pd.read_csv(f"{r}/predictions.csv")
                       for r in sorted(set(res["run_dir"]))}
    assert len(results[1]) == 8                   # 2 methods x 2 sites x 2 seeds, C-index only
    import json
    import os

    pids = {jobs: {json.loads((tmp_path / f"j{jobs}" / run.lstrip("/") / "run.json").read_text())["pid"]
                   for run in preds[jobs]} for jobs in (1, 2)}
    assert pids[1] == {os.getpid()}                                # one process ...
    assert len(pids[2]) == 2 and os.getpid() not in pids[2]        # ... against two worker processes
    pd.testing.assert_frame_equal(results[1], results[2], check_exact=True)
    assert preds[1].keys() == preds[2].keys()
    for run, df in preds[1].items():
        pd.testing.assert_frame_equal(df, preds[2][run], check_exact=True)


def test_jobs_must_be_positive(small_cohort, tmp_path):
    bench = Benchmark(small_cohort.root, ["snn"], seeds=[0], out=tmp_path / "b", ood=False)
    with pytest.raises(ConfigError, match="--jobs"):
        bench.train_parallel(0)


def test_a_task_without_labels_is_skipped_with_a_note(small_cohort, tmp_path, capsys):
    bench = Benchmark(small_cohort.root, ["abmil", "snn"], seeds=[0], out=tmp_path / "b", ood=False)
    spec = bench.specs[0]
    assert bench.tasks_of(spec) == ["subtype", "survival"]
    bench.cohort.manifest["subtype_index"] = -1            # a survival-only study: no subtype label anywhere
    assert bench.tasks_of(spec) == ["survival"] and bench.tasks_of(spec) == ["survival"]
    out = capsys.readouterr().out
    assert out.count("note: abmil: no subtype run, because no patient of BRCA, NSCLC has a subtype label") == 1
    assert "--tasks" in out
