"""Tests of the ``modaltune`` command line (``modaltune.cli.main``): exit codes and messages."""

from __future__ import annotations

import pandas as pd
import pytest

from modaltune import __version__
from modaltune.cli import build_parser, main

pytestmark = pytest.mark.filterwarnings("ignore::modaltune.errors.InputWarning")


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "prepare", "train", "embed", "evaluate", "benchmark", "demo", "methods", "doctor"):
        assert command in out


def test_subcommand_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--set" in out and "--config" in out and "--cohort" in out


def test_version_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"modaltune {__version__}"


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_methods_lists_registered_methods(capsys):
    assert main(["methods"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert {"abmil", "modaltune", "snn", "abmil_cat", "mice", "dmsf_distill"} <= set(lines)
    assert lines["modaltune"][1:] == ["ModalTune", "probe", "main", "bag,omics,text_targets"]
    assert lines["abmil"][1:] == ["WSI", "predict", "main", "bag"]
    assert lines["snn"][1:] == ["Genomics", "predict", "main", "omics"]
    assert lines["mice"][1:3] == ["MICE", "predict"] and lines["mice"][3] == "pretrain>finetune"
    assert lines["dmsf_distill"][3] == "teacher(dmsf_teacher)>student(dmsf_student)>distill"
    assert not any(name.startswith("_") for name in lines)
    assert lines["Registered"][:2] == ["Registered", "methods:"]          # a header says what the table is
    assert "modaltune:pan" in lines and "dmsf_teacher:{none,cgc_only,igc_only,hvg10,hvg50,hvg80,random_genes}" \
        in {w for ws in lines.values() for w in ws}


def test_doctor_returns_a_documented_code(capsys):
    rc = main(["doctor"])
    out = capsys.readouterr().out
    assert rc in (0, 1)           # 0 = ready, 1 = required packages missing
    assert "status" in out and "torch" in out
    assert ("ready" in out) == (rc == 0)


def test_prepare_with_missing_clinical_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "no_such_clinical.tsv"
    rc = main(["prepare", "--clinical", str(missing), "--out", str(tmp_path / "cohort")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_clinical.tsv" in err
    assert not (tmp_path / "cohort" / "manifest.csv").exists()


def test_prepare_with_bad_clinical_column_exits_2(tmp_path, capsys):
    rc = main(["prepare", "--clinical", str(tmp_path / "c.tsv"), "--clinical-column", "case_id",
               "--out", str(tmp_path / "cohort")])
    assert rc == 2
    assert "FIELD=COLUMN" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli_cohort(tmp_path_factory):
    """``modaltune synth`` + ``modaltune prepare`` of a tiny cohort (12 patients a site, BRCA and BLCA)."""
    root = tmp_path_factory.mktemp("cli")
    raw, cohort = root / "raw", root / "cohort"
    assert main(["synth", "--out", str(raw), "--patients", "12", "--sites", "BRCA,BLCA", "--dim", "16"]) == 0
    rc = main(["prepare", "--clinical", str(raw / "clinical.tsv"), "--features", str(raw / "features_20x"),
               "--expression", str(raw / "expression.tsv"), "--gene-sets", str(raw / "pathways.gmt"),
               "--reports", str(raw / "reports.csv"), "--ood-sites", "BLCA", "--out", str(cohort)])
    assert rc == 0
    return root


def test_synth_and_prepare_write_a_cohort(cli_cohort):
    raw, cohort = cli_cohort / "raw", cli_cohort / "cohort"
    for name in ("clinical.tsv", "expression.tsv", "pathways.gmt", "reports.csv"):
        assert (raw / name).exists(), name
    assert (raw / "features_20x").is_dir() and any((raw / "features_20x").iterdir())
    manifest = pd.read_csv(cohort / "manifest.csv", dtype={"case_id": str})
    assert len(manifest) == 24
    assert manifest.groupby("site").size().to_dict() == {"BLCA": 12, "BRCA": 12}
    for name in ("cohort.json", "gene_sets.json", "summary.txt"):
        assert (cohort / name).exists(), name


def test_synth_holds_out_the_default_site_only_when_it_is_chosen(tmp_path, capsys):
    """`--sites` without BLCA and without `--ood-sites` writes a cohort with no held-out site (it used to
    refuse: the default BLCA was not among the sites); BLCA among the sites is held out; an explicit
    held-out site outside the sites is still refused with the fix."""
    import json

    args = ["--patients", "6", "--dim", "8"]
    assert main(["synth", "--out", str(tmp_path / "a"), "--sites", "BRCA,RCC", *args]) == 0
    assert json.loads((tmp_path / "a" / "truth.json").read_text())["ood_sites"] == []
    assert main(["synth", "--out", str(tmp_path / "b"), "--sites", "brca,blca", *args]) == 0
    assert json.loads((tmp_path / "b" / "truth.json").read_text())["ood_sites"] == ["BLCA"]
    capsys.readouterr()
    assert main(["synth", "--out", str(tmp_path / "c"), "--sites", "BRCA", "--ood-sites", "BLCA", *args]) != 0
    assert "leave them out of ood_sites" in capsys.readouterr().err


def test_train_with_unknown_set_key_exits_2(cli_cohort, tmp_path, capsys):
    rc = main(["train", "abmil", "--cohort", str(cli_cohort / "cohort"), "--out", str(tmp_path / "run"),
               "--set", "train.epoch=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epoch'" in err and "did you mean 'train.epochs'" in err
    assert not (tmp_path / "run").exists()


def test_train_with_unknown_method_exits_2(cli_cohort, tmp_path, capsys):
    rc = main(["train", "abmill", "--cohort", str(cli_cohort / "cohort"), "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown method 'abmill'" in err and "abmil" in err


def test_train_with_missing_config_exits_2(cli_cohort, tmp_path, capsys):
    rc = main(["train", "abmil", "--cohort", str(cli_cohort / "cohort"), "--out", str(tmp_path / "run"),
               "--config", str(tmp_path / "missing.yaml")])
    assert rc == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_train_with_missing_cohort_exits_2(tmp_path, capsys):
    rc = main(["train", "abmil", "--cohort", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert rc == 2
    assert "cohort directory not found" in capsys.readouterr().err


def test_seed_flag_becomes_an_override():
    from modaltune.cli import overrides
    from modaltune.config import resolve_config

    args = build_parser().parse_args(["train", "abmil", "--cohort", "c", "--out", "o", "--seed", "7",
                                      "--set", "train.epochs=2", "--config", "cpu_small"])
    cfg = resolve_config(args.method, file=args.config, overrides=overrides(args))
    assert cfg["seed"] == 7 and cfg["train"]["epochs"] == 2 and cfg["model"]["dim"] == 128


def test_help_names_defaults_and_shipped_configs(capsys):
    for command, expected in (("train", ["cpu_small", "paper_pan_cancer", "OUT/<site>", "prepare`"]),
                              ("benchmark", ["(default: 0,1,2)", "--jobs", "(default: 1)", "cpu_small"]),
                              ("evaluate", ["run directory"]), ("embed", ["embeddings_all.npz"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for text in expected:
            assert text in out, (command, text)
        assert "see configs/" not in out and "(default: None)" not in out


def test_train_one_site_layout_log_and_metrics(cli_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "abmil", "--cohort", str(cli_cohort / "cohort"), "--out", str(out), "--set",
               "train.epochs=2", "--set", "data.bag_cap=8", "--set", "train.warmup_epochs=0"])
    assert rc == 0
    run = out / "BRCA"          # one in-domain site (BLCA is OOD): per-site runs are OUT/<site>, also for one site
    assert sorted(p.name for p in out.iterdir()) == ["BRCA"]
    assert (run / "config.yaml").exists()
    assert (run / "metrics.json").exists() and (run / "predictions.csv").exists()   # evaluated at the end
    log = (run / "train.log").read_text()
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log and " s\n" in log
    assert "val_" in log and "finished abmil" in log
    stdout = capsys.readouterr().out
    assert "metrics.json" in stdout and str(run) in stdout


def test_train_without_evaluation_says_what_to_run(cli_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "abmil", "--cohort", str(cli_cohort / "cohort"), "--out", str(out), "--no-evaluate",
               "--set", "train.epochs=1", "--set", "data.bag_cap=8", "--set", "train.warmup_epochs=0"])
    assert rc == 0
    run = out / "BRCA"
    assert (run / "config.yaml").exists() and not (run / "metrics.json").exists()
    assert f"modaltune evaluate {run}" in capsys.readouterr().out


def test_demo_jobs_default_to_one_per_core_and_reach_the_demo(monkeypatch, capsys):
    import modaltune.demo as demo
    from modaltune.training import threads

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: calls.append(kw))
    monkeypatch.setenv("MODALTUNE_CORES", "3")            # what available_cores() reports
    assert threads.available_cores() == 3
    assert main(["demo", "--out", "x"]) == 0
    assert main(["demo", "--out", "x", "--jobs", "1", "--system", "mice"]) == 0
    assert [c["jobs"] for c in calls] == [3, 1] and calls[1]["system"] == "mice"
    for bad in ("0", "two", "-1"):
        assert main(["demo", "--out", "x", "--jobs", bad]) != 0
        assert "--jobs must be 'auto' or a positive number" in capsys.readouterr().err
    assert len(calls) == 2                                # a bad value trains nothing
