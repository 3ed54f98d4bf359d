"""The demo's own pieces: oracle C-index, the oracle row, settings guard, and one quick run."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from modaltune.demo import run_demo
from modaltune.demo.common import check_settings as _check_settings
from modaltune.demo.common import with_oracle as _with_oracle
from modaltune.demo.modaltune import oracle_c_index
from modaltune.errors import InputError
from modaltune.evaluation.metrics import c_index


def test_oracle_row_goes_under_the_c_index_table_only():
    md = ("**T: Balanced accuracy**\n\n| F | M | A | Overall |\n|---|---|---|---|\n| x | y | 0.7 | 0.7 |\n\n"
          "**T: C-index**\n\n| F | M | A | Overall |\n|---|---|---|---|\n| x | y | 0.6 | 0.6 |\n")
    out = _with_oracle(md, {"A": 0.9, "Overall": 0.9}, ["A"]).splitlines()
    row = out.index("| Oracle | true risk (ceiling) | 0.900 | 0.900 |")
    assert out[row - 1] == "| x | y | 0.6 | 0.6 |"
    assert sum("Oracle" in line for line in out) == 1
    assert _with_oracle("no tables", {}, []) == "no tables"


def test_settings_guard(tmp_path):
    _check_settings(tmp_path, {"quick": True, "seed": 0})
    _check_settings(tmp_path, {"quick": True, "seed": 0})          # same settings: fine
    with pytest.raises(InputError, match="other settings"):
        _check_settings(tmp_path, {"quick": False, "seed": 0})


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    summary = run_demo(tmp_path, quick=True, seed=0, methods=["modaltune:pan", "abmil"])
    assert (tmp_path / "demo_results.md").exists()
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert saved["sites"] == ["BRCA", "NSCLC", "RCC"] and saved["ood_sites"] == ["BLCA"]
    md = (tmp_path / "demo_results.md").read_text()
    assert "ModalTune pan-cancer" in md and "ABMIL" in md and md.count("| Oracle |") == 2
    # the oracle is the planted risk scored on the same test patients as the models
    truth = pd.read_csv(tmp_path / "raw" / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    split = pd.read_csv(tmp_path / "cohort" / "splits" / "holdout_seed0.csv", dtype=str)
    test = truth.loc[split.loc[split["split"] == "test", "case_id"]]
    g = test[test.site == "BRCA"]
    assert summary["oracle_c_index"]["BRCA"] == pytest.approx(c_index(g.survival_months, g.event, g.risk))
    assert oracle_c_index(tmp_path / "raw", tmp_path / "cohort", 0, ["BRCA"])["BRCA"] == pytest.approx(
        summary["oracle_c_index"]["BRCA"])
    results = pd.DataFrame(saved["results"])
    assert np.isfinite(results["value"]).all() and set(results["table"]) == {"table2", "table3"}


def test_ood_note_counts_the_test_patients_and_events(tmp_path):
    import pandas as pd

    from modaltune.demo.modaltune import ood_note

    (tmp_path / "splits").mkdir()
    pd.DataFrame({"case_id": ["a", "b", "c", "d"], "site": ["BLCA", "BLCA", "BLCA", "BRCA"],
                  "event": [1, 0, 1, 1]}).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"case_id": ["a", "b", "c", "d"], "split": ["test", "test", "train", "test"]}).to_csv(
        tmp_path / "splits" / "holdout_seed0.csv", index=False)
    note = ood_note(tmp_path, 0, ["BLCA"])
    assert "BLCA 2 test patients, 1 events" in note and "noise" in note


@pytest.mark.slow
def test_quick_disentangled_demo_reports_the_student_clusters(tmp_path):
    from modaltune.demo.disentangled import run_disentangled_demo

    # two jobs: the demo trains its independent cells in parallel processes first, then only reads them
    summary = run_disentangled_demo(tmp_path, quick=True, seed=0, folds=2, methods=("dmsf_student", "dmsf_distill"),
                                    jobs=2)
    md = (tmp_path / "demo_results.md").read_text()
    assert "DMSF student" in md and "tumor in prototype 0" in md
    agree = pd.read_csv(tmp_path / "benchmark" / "compartments.csv")
    assert sorted(agree["unit"]) == ["fold0_seed0", "fold0_seed0", "fold1_seed0", "fold1_seed0"]
    assert agree["ari"].between(-1, 1).all() and agree["tumor_first"].between(0, 1).all()
    assert summary["system"] == "disentangled" and summary["results"]
    # quick means two epochs in every stage of the distillation chain, not only its last one
    runs = tmp_path / "benchmark" / "runs"
    for stage in ("dmsf_teacher", "dmsf_student", "dmsf_distill"):
        for hist in (runs / stage).rglob("history.csv"):
            assert len(pd.read_csv(hist)) == 2, hist
    # the runs were trained by the spawned jobs, not by the demo's own process
    pids = {json.loads(p.read_text())["pid"] for p in runs.rglob("run.json")}
    assert pids and os.getpid() not in pids


def test_the_disentangled_tables_train_every_model_alike():
    """Weighted CE and the epoch chosen on validation AUC / C-index for the baselines, as for DMSF."""
    from modaltune.config import resolve_config
    from modaltune.demo.disentangled import TABLE_OVERRIDES
    from modaltune.registry import METHODS, load_builtin
    from modaltune.training.scoring import resolve_select_metric

    load_builtin()
    train = pd.DataFrame({"site": ["GBMLGG"] * 4, "subtype_index": [0, 1, 2, 3], "rare": [False] * 4})
    for name in ("abmil_plain", "snn", "abmil_lm", "dmsf_teacher"):
        for task, metric in (("subtype", "val_auc"), ("survival", "val_c_index")):
            cfg = resolve_config(name, file="cpu_small", overrides=[*TABLE_OVERRIDES, f"model.task={task}"])
            assert cfg["model"]["class_weights"] == "balanced"
            assert resolve_select_metric(cfg, METHODS.get(name).declare(cfg), train) == metric, (name, task)
