"""End to end on small synthetic cohorts: raw files -> cohort -> training -> test metrics.

These are the slowest tests of the suite (about a minute each on 2 cores); they check that the
planted signal is found through the real ingestion path, not through shortcuts.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modaltune.config import resolve_config
from modaltune.data.cohort import Cohort
from modaltune.data.prepare import prepare_cohort
from modaltune.pipeline import resolve_split, restrict_split
from modaltune.synthetic import make_synthetic

pytestmark = pytest.mark.slow

SITES = ("BRCA", "NSCLC", "RCC", "BLCA")


def _cohort(root, patients, sites=SITES, seed=0, **kwargs):
    raw = root / "raw"
    make_synthetic(raw, seed=seed, sites=sites, ood_sites=("BLCA",), patients=patients, patches=(32, 128), **kwargs)
    prepare_cohort(root / "cohort", features=raw / "features_20x", features_secondary=raw / "features_10x",
                   clinical=raw / "clinical.tsv", expression=raw / "expression.tsv", gene_sets=raw / "pathways.gmt",
                   reports=raw / "reports.csv", ood_sites=("BLCA",))
    return Cohort.load(root / "cohort")


@pytest.fixture(scope="module")
def cohort80(tmp_path_factory):
    """80 patients per site; most of the risk observable (pathway activity, morphology) rather than in
    the clinical stage, so a learned model has something to find with ~55 training patients a site."""
    return _cohort(tmp_path_factory.mktemp("e2e80"), 80, risk_weights=(0.3, 1.5, 1.5))


def test_modaltune_pan_cancer_finds_the_planted_signal(cohort80, tmp_path):
    """ModalTune (CPU-small, pan-cancer), probed per site on the test split, beats chance clearly."""
    from modaltune.runs.evaluate import evaluate_ood, evaluate_run
    from modaltune.training.engine import train_method

    sites = ["BRCA", "NSCLC", "RCC"]
    cfg = resolve_config("modaltune", file="cpu_small", overrides=["train.epochs=6", "seed=0"],
                         extra={"data": {"sites": sites, "pan_cancer": True}})
    full = resolve_split(cfg, cohort80)
    split = restrict_split(full, cohort80, sites)
    assert not set(split["test"]) & set(split["train"])
    result = train_method(cfg, cohort80, split, tmp_path / "run")
    assert result["epochs"] == 6 and result["select_metric"] == "val_mean"          # multi-task probed embedding
    metrics = evaluate_run(tmp_path / "run", cohort=cohort80)
    assert set(sites) <= set(metrics)
    chance = np.mean([1 / max(2, len(cohort80.manifest.query("site == @s and subtype_index >= 0")["subtype_index"].unique()))
                      for s in sites])
    overall = metrics["overall"]
    assert overall["c_index"] > 0.6, metrics
    assert overall["balanced_accuracy"] > chance + 0.2, (chance, metrics)
    # every test patient of every site has a prediction; nothing silently dropped
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"case_id": str})
    assert sorted(preds["case_id"]) == sorted(split["test"])
    # out of distribution: the held-out site, probed on its own training split
    ood = evaluate_ood(tmp_path / "run", cohort80, ["BLCA"], full)
    assert 0.0 <= ood["BLCA"]["c_index"] <= 1.0
    assert (tmp_path / "run" / "metrics_ood.json").exists()


def test_label_trained_baseline_learns_survival(cohort80, tmp_path):
    """A multi-modal baseline trained on the NLL survival loss ranks test patients better than chance."""
    from modaltune.runs.evaluate import evaluate_run
    from modaltune.training.engine import train_method

    scores = []
    for site in ("BRCA", "NSCLC"):
        cfg = resolve_config("abmil_cat", file="cpu_small", overrides=["train.epochs=6", "model.task=survival"],
                             extra={"data": {"sites": [site]}})
        split = restrict_split(resolve_split(cfg, cohort80), cohort80, [site])
        train_method(cfg, cohort80, split, tmp_path / site)
        scores.append(evaluate_run(tmp_path / site, cohort=cohort80)[site]["c_index"])
    assert np.mean(scores) > 0.6, scores


def test_benchmark_tables_figures_and_resume(tmp_path, monkeypatch):
    """`modaltune benchmark` on a tiny cohort writes every table and figure and resumes without retraining."""
    from modaltune.benchmark import runner
    from modaltune.cli import main

    _cohort(tmp_path, 16, sites=("BRCA", "NSCLC", "BLCA"))
    out = tmp_path / "bench"
    argv = ["benchmark", "--cohort", str(tmp_path / "cohort"), "--methods", "abmil,snn,abmil_kp,modaltune,modaltune:pan",
            "--seeds", "0,1", "--config", "cpu_small", "--set", "train.epochs=1", "--set", "train.warmup_epochs=0",
            "--out", str(out)]
    assert main(argv) == 0
    for name in ("table2.md", "table2_c_index.csv", "table2_balanced_accuracy.json", "table3.md", "results.csv",
                 "km.csv", "confidence_intervals.csv", "paired_tests.csv"):
        assert (out / name).exists(), name
    results = pd.read_csv(out / "results.csv")
    t2 = results[results.table == "table2"]
    assert set(t2.method) == {"ABMIL", "SNN", "ABMIL (KP)", "ModalTune", "ModalTune pan-cancer"}
    assert set(t2.site) == {"BRCA", "NSCLC"} and set(t2.seed) == {0, 1}
    # every number traceable to a run directory holding that number
    for _, r in t2.sample(10, random_state=0).iterrows():
        m = json.loads((__import__("pathlib").Path(r.run_dir) / "metrics.json").read_text())
        assert m[r.site][r.metric] == pytest.approx(r.value)
    t3 = results[results.table == "table3"]
    assert set(t3.site) == {"BLCA"}
    assert "ABMIL (KP) supervised" in set(t3.method)
    md = (out / "table2.md").read_text()
    assert "Overall" in md and "**" in md and "<u>" in md
    assert len(list((out / "figures").glob("km_*.png"))) >= 8
    # resume: a second call trains nothing
    def boom(*a, **k):
        raise AssertionError("a finished cell was retrained")
    monkeypatch.setattr("modaltune.training.engine.train_method", boom)
    bench = runner.run_benchmark(tmp_path / "cohort", ["abmil", "modaltune"], seeds=[0], config="cpu_small",
                                 overrides=["train.epochs=1", "train.warmup_epochs=0"], out=out, ood=False)
    assert len(bench.rows) > 0
