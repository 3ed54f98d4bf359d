"""Tests of ``modaltune.benchmark.analysis`` on hand-made run directories holding ``predictions.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.benchmark.analysis import confidence_intervals, km_figures, paired_tests, slug
from modaltune.evaluation.metrics import balanced_accuracy, c_index

N_TEST = 200
COLUMNS = ["case_id", "site", "split", "risk", "pred_class", "subtype", "survival_months", "event", "has_survival"]


def _truth(seed: int = 0) -> pd.DataFrame:
    """200 BRCA test patients with a true risk, plus rows the analyses must ignore."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=N_TEST)
    months = rng.exponential(30.0 * np.exp(-risk))                # higher risk, shorter survival
    event = (rng.random(N_TEST) < 0.75).astype(int)
    subtype = rng.integers(0, 3, N_TEST)
    subtype[:10] = -1                                             # rare / unknown subtype: not scored
    has_survival = np.ones(N_TEST, dtype=bool)
    has_survival[10:20] = False
    df = pd.DataFrame({"case_id": [f"TCGA-{i:04d}" for i in range(N_TEST)], "site": "BRCA", "split": "test",
                       "true_risk": risk, "subtype": subtype, "survival_months": months, "event": event,
                       "has_survival": has_survival})
    # patients without survival still carry (meaningless) finite values: they must be filtered out
    df.loc[~has_survival, "survival_months"] = 1.0
    df.loc[~has_survival, "event"] = 1
    extra = pd.DataFrame({"case_id": [f"TCGA-X{i:03d}" for i in range(30)],
                          "site": ["BRCA"] * 10 + ["NSCLC"] * 20,
                          "split": ["train"] * 10 + ["test"] * 20,
                          "true_risk": 0.0, "subtype": 0, "survival_months": 0.5, "event": 1, "has_survival": True})
    return pd.concat([df, extra], ignore_index=True)


def _run(tmp_path, name: str, risk, pred_class, truth: pd.DataFrame):
    d = tmp_path / "runs" / name
    d.mkdir(parents=True)
    df = truth.copy()
    df["risk"], df["pred_class"] = risk, pred_class
    df[COLUMNS].to_csv(d / "predictions.csv", index=False)
    return d


def _scored(truth: pd.DataFrame) -> pd.DataFrame:
    return truth[(truth.site == "BRCA") & (truth.split == "test")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``good``: the true risk and mostly right classes; ``rand``: random risk and classes."""
    tmp = tmp_path_factory.mktemp("analysis")
    truth = _truth()
    rng = np.random.default_rng(1)
    n = len(truth)
    good_class = np.where(rng.random(n) < 0.85, truth["subtype"].clip(lower=0), rng.integers(0, 3, n))
    return {
        "truth": truth,
        "good": _run(tmp, "good", truth["true_risk"].to_numpy(), good_class, truth),
        "rand": _run(tmp, "rand", rng.normal(size=n), rng.integers(0, 3, n), truth),
        "copy": _run(tmp, "copy", truth["true_risk"].to_numpy(), good_class, truth),
        "tmp": tmp,
    }


def _out(tmp_path):
    out = tmp_path / "tables"
    out.mkdir(parents=True)
    return out


def test_km_figures_write_pngs_and_p_values(runs, tmp_path):
    out = _out(tmp_path)
    predictions = {
        ("ModalTune (ours)", "BRCA", "seed0", "c_index"): runs["good"],
        ("rand", "BRCA", "seed0", "c_index"): runs["rand"],
        ("rand", "BRCA", "seed1", "c_index"): runs["rand"],               # another unit: skipped
        ("rand", "BRCA", "seed0", "balanced_accuracy"): runs["rand"],     # not a survival cell: skipped
        ("nothing", "BRCA", "seed0", "c_index"): tmp_path / "no_run",     # no predictions.csv: skipped
    }
    table = km_figures(predictions, out, "seed0")
    assert sorted(table["method"]) == ["ModalTune (ours)", "rand"]
    assert (out / "km.csv").exists()
    assert pd.read_csv(out / "km.csv")["method"].tolist() == table["method"].tolist()
    truth = _scored(runs["truth"])
    n_surv = int(truth["has_survival"].sum())
    for _, row in table.iterrows():
        png = out / "figures" / f"km_{slug(row['method'])}_BRCA.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["path"] == str(png)
        assert row["n_high"] + row["n_low"] == n_surv
        assert abs(row["n_high"] - row["n_low"]) <= 1
        assert 0.0 <= row["p_value"] <= 1.0
        assert row["unit"] == "seed0" and row["site"] == "BRCA"
    good = table.set_index("method").loc["ModalTune (ours)"]
    assert good["p_value"] < 1e-4                                   # the true risk separates the groups
    assert good["events_high"] + good["events_low"] == int(truth.loc[truth.has_survival, "event"].sum())
    assert slug("ModalTune (ours)") == "modaltune_ours"


def test_km_figures_without_cells_writes_an_empty_table(tmp_path):
    out = _out(tmp_path)
    table = km_figures({}, out, "seed0")
    assert table.empty and (out / "km.csv").exists()


def test_confidence_intervals_contain_the_full_data_metric(runs, tmp_path):
    out = _out(tmp_path)
    predictions = {("good", "BRCA", "seed0", "c_index"): runs["good"], ("good", "BRCA", "seed0", "balanced_accuracy"): runs["good"],
                   ("rand", "BRCA", "seed3", "c_index"): runs["rand"], ("rand", "BRCA", "seed3", "balanced_accuracy"): runs["rand"]}
    table = confidence_intervals(predictions, out, n_boot=200)
    assert len(table) == 4
    saved = pd.read_csv(out / "confidence_intervals.csv")
    assert saved[["method", "unit", "metric"]].values.tolist() == table[["method", "unit", "metric"]].values.tolist()

    for name in ("good", "rand"):
        df = pd.read_csv(runs[name] / "predictions.csv", dtype={"case_id": str})
        df = df[(df.site == "BRCA") & (df.split == "test")]
        surv = df[df.has_survival]
        labelled = df[df.subtype >= 0]
        expected = {
            "c_index": c_index(surv["survival_months"], surv["event"], surv["risk"]),
            "balanced_accuracy": balanced_accuracy(labelled["subtype"], labelled["pred_class"]),
        }
        n = {"c_index": len(surv), "balanced_accuracy": len(labelled)}
        for metric in ("c_index", "balanced_accuracy"):
            row = table[(table.method == name) & (table.metric == metric)].iloc[0]
            assert row["estimate"] == pytest.approx(expected[metric], abs=1e-12), (name, metric)
            assert row["ci_low"] <= row["estimate"] <= row["ci_high"], (name, metric)
            assert row["ci_high"] - row["ci_low"] < 0.25
            assert row["n"] == n[metric] and row["run_dir"] == str(runs[name])
    # the filters matter: scoring every BRCA test row would give another C-index
    everyone = _scored(pd.read_csv(runs["good"] / "predictions.csv"))
    ci_good = table[(table.method == "good") & (table.metric == "c_index")].iloc[0]
    unfiltered = c_index(everyone["survival_months"], everyone["event"], everyone["risk"])
    assert ci_good["estimate"] != pytest.approx(unfiltered)
    assert ci_good["estimate"] > 0.65 and ci_good["ci_low"] > 0.55
    rand_ci = table[(table.method == "rand") & (table.metric == "c_index")].iloc[0]
    assert rand_ci["ci_low"] < 0.5 + 0.15 and rand_ci["ci_high"] > 0.5 - 0.15


def _results(means: dict[str, list[float]], metric: str = "c_index", site: str = "BRCA") -> pd.DataFrame:
    return pd.DataFrame([{"family": "x", "method": m, "site": site, "seed": s, "unit": f"seed{s}", "metric": metric,
                          "value": v} for m, vals in means.items() for s, v in enumerate(vals)])


def test_paired_tests_compare_the_best_with_every_other_method(runs, tmp_path):
    out = _out(tmp_path)
    # unit 0 alone would rank bad > rand > good; the means over units rank good > rand > bad
    results = _results({"good": [0.70, 0.90], "rand": [0.85, 0.55], "bad": [0.90, 0.30]})
    predictions = {("good", "BRCA", "seed0", "c_index"): runs["good"], ("rand", "BRCA", "seed0", "c_index"): runs["rand"],
                   ("bad", "BRCA", "seed0", "c_index"): runs["copy"]}
    table = paired_tests(results, predictions, out, "seed0", n_boot=300)
    assert (out / "paired_tests.csv").exists()
    site = table[table.site == "BRCA"]
    assert site["best"].tolist() == ["good", "good"] and site["other"].tolist() == ["rand", "bad"]
    row = site.iloc[0]
    assert row["best_mean"] == pytest.approx(0.8) and row["other_mean"] == pytest.approx(0.7)
    assert row["best_run"] == str(runs["good"]) and row["other_run"] == str(runs["rand"])
    assert row["n"] == int(_scored(runs["truth"])["has_survival"].sum())
    assert row["p_bootstrap"] < 0.02                  # the true ordering vs random on 190 patients
    assert row["n_pairs"] == 2 and 0.0 < row["p_wilcoxon"] <= 1.0          # paired by unit
    overall = table[table.site == "Overall"]
    assert overall["other"].tolist() == ["rand", "bad"] and np.isnan(overall["p_bootstrap"]).all()


def test_wilcoxon_pairs_by_unit_and_by_site_and_unit(tmp_path):
    """Five folds where A beats B in every fold: the exact two-sided p is 2 / 2**5; over two sites x 5 folds
    (10 pairs, all positive) it is 2 / 2**10."""
    rows = []
    for site in ("S1", "S2"):
        for f in range(5):
            for m, v in (("A", 0.8 + 0.01 * f), ("B", 0.6 + 0.02 * f)):
                rows.append({"family": "x", "method": m, "site": site, "fold": f, "seed": 0, "unit": f"fold{f}_seed0",
                             "metric": "c_index", "value": v})
    table = paired_tests(pd.DataFrame(rows), {}, _out(tmp_path), "fold0_seed0").set_index("site")
    assert table.loc["S1", "best"] == "A" and table.loc["S1", "n_pairs"] == 5
    assert table.loc["S1", "p_wilcoxon"] == pytest.approx(2 / 2**5)
    assert table.loc["Overall", "n_pairs"] == 10 and table.loc["Overall", "p_wilcoxon"] == pytest.approx(2 / 2**10)
    # shuffling B across folds breaks the pairing: the paired test no longer sees a sign in every pair
    shuffled = pd.DataFrame(rows)
    b = shuffled.method == "B"
    shuffled.loc[b, "value"] = shuffled.loc[b, "value"].to_numpy()[::-1] + np.tile([0.3, -0.3, 0.3, -0.3, 0.3], 2)
    t2 = paired_tests(shuffled, {}, _out(tmp_path / "s"), "fold0_seed0").set_index("site")
    assert t2.loc["S1", "p_wilcoxon"] > 0.1


def test_paired_tests_balanced_accuracy(runs, tmp_path):
    results = _results({"good": [0.8], "rand": [0.3]}, metric="balanced_accuracy")
    predictions = {("good", "BRCA", "seed0", "balanced_accuracy"): runs["good"],
                   ("rand", "BRCA", "seed0", "balanced_accuracy"): runs["rand"]}
    row = paired_tests(results, predictions, _out(tmp_path), "seed0", n_boot=300).iloc[0]
    assert row["best"] == "good" and row["n"] == int((_scored(runs["truth"])["subtype"] >= 0).sum())
    assert row["p_bootstrap"] < 0.02


def test_paired_tests_identical_predictions_give_p_one(runs, tmp_path):
    results = _results({"good": [0.8, 0.8], "copy": [0.79, 0.8]})
    predictions = {("good", "BRCA", "seed1", "c_index"): runs["good"], ("copy", "BRCA", "seed1", "c_index"): runs["copy"]}
    row = paired_tests(results, predictions, _out(tmp_path), "seed1", n_boot=200).iloc[0]
    assert (row["best"], row["other"]) == ("good", "copy")
    assert row["p_bootstrap"] == pytest.approx(1.0)


def test_paired_tests_without_a_pair_or_predictions(runs, tmp_path):
    results = pd.concat([_results({"good": [0.8]}, site="BRCA"),                       # one method: no row
                         _results({"good": [0.8], "rand": [0.6]}, site="NSCLC")])
    predictions = {("good", "NSCLC", "seed0", "c_index"): runs["good"]}                    # second has no run
    table = paired_tests(results, predictions, _out(tmp_path), "seed0", n_boot=50)
    assert table["site"].tolist() == ["NSCLC", "Overall"]
    row = table.iloc[0]
    assert row["n"] == 0 and np.isnan(row["p_bootstrap"]) and row["other_run"] == "None"
    empty = paired_tests(results.iloc[0:0], predictions, _out(tmp_path / "e"), "seed0")
    assert empty.empty and list(empty.columns)[:4] == ["site", "metric", "best", "other"]
