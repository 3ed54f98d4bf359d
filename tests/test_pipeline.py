"""Tests of ``modaltune.pipeline`` on a tiny real cohort: splits on disk, sites, per-site/pan-cancer runs."""

from __future__ import annotations

import copy
import warnings

import pandas as pd
import pytest

import modaltune.pipeline as pipeline
from modaltune.config import resolve_config
from modaltune.data.cohort import Cohort
from modaltune.data.prepare import prepare_cohort
from modaltune.data.splits import save_split
from modaltune.errors import ConfigError
from modaltune.pipeline import (
    in_domain_sites,
    plan_runs,
    resolve_split,
    restrict_split,
    select_sites,
    split_seed,
)
from modaltune.synthetic import make_synthetic

SITES = ("BRCA", "NSCLC", "BLCA")
PATIENTS = 20


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    root = tmp_path_factory.mktemp("pipeline")
    raw = root / "raw"
    make_synthetic(raw, patients=PATIENTS, sites=SITES, ood_sites=("BLCA",), patches=(8, 24))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_cohort(root / "cohort", features=raw / "features_20x", features_secondary=raw / "features_10x",
                       clinical=raw / "clinical.tsv", expression=raw / "expression.tsv",
                       gene_sets=raw / "pathways.gmt", reports=raw / "reports.csv", ood_sites=("BLCA",))
        return Cohort.load(root / "cohort")


def _cfg(*overrides, method="abmil", **data) -> dict:
    return resolve_config(method, overrides=list(overrides), extra={"data": data} if data else None)


def _assert_partition(split: dict, ids: set) -> None:
    parts = [set(split[s]) for s in ("train", "val", "test")]
    assert all(parts), {k: len(v) for k, v in split.items()}
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == ids


def test_fixture_cohort(cohort):
    assert len(cohort.manifest) == PATIENTS * len(SITES)
    assert sorted(cohort.sites) == sorted(SITES) and cohort.ood_sites == ["BLCA"]


def test_split_seed():
    assert split_seed(_cfg("seed=4")) == 4
    assert split_seed(_cfg("seed=4", split_seed=9)) == 9
    assert split_seed(_cfg("seed=4", split_seed=0)) == 0       # 0 is a seed, not "unset"


def test_holdout_split_is_written_once_and_re_read(cohort, monkeypatch):
    cfg = _cfg("seed=11")
    path = cohort.root / "splits" / "holdout_seed11.csv"
    assert not path.exists()
    split = resolve_split(cfg, cohort)
    assert path.exists()
    _assert_partition(split, set(cohort.case_ids))             # covers the whole cohort, OOD sites included
    on_disk = pd.read_csv(path, dtype=str)
    assert set(on_disk.columns) == {"case_id", "split"}
    assert sorted(on_disk.loc[on_disk.split == "test", "case_id"]) == sorted(split["test"])
    # the second call re-reads the file: making a split again would fail here
    monkeypatch.setattr(pipeline, "make_holdout_split", lambda *a, **k: pytest.fail("split re-made"))
    before = path.stat().st_mtime_ns
    again = resolve_split(copy.deepcopy(cfg), cohort)
    assert again == split
    assert path.stat().st_mtime_ns == before


def test_holdout_split_file_wins_over_a_new_split(cohort):
    """What is on disk is the split: an edited file is used as is (so every method sees the same patients)."""
    ids = sorted(cohort.case_ids)
    mine = {"train": ids[:30], "val": ids[30:40], "test": ids[40:]}
    save_split(mine, cohort.root / "splits" / "holdout_seed12.csv")
    assert resolve_split(_cfg("seed=12"), cohort) == mine


def test_split_seed_picks_the_split_file(cohort):
    a = resolve_split(_cfg("seed=0", split_seed=13), cohort)
    b = resolve_split(_cfg("seed=5", split_seed=13), cohort)
    assert a == b
    assert (cohort.root / "splits" / "holdout_seed13.csv").exists()
    assert not (cohort.root / "splits" / "holdout_seed5.csv").exists()
    c = resolve_split(_cfg("seed=14"), cohort)
    assert c != a                                              # another seed, another split


def test_kfold_writes_every_fold(cohort, monkeypatch):
    k, seed = 4, 21
    cfg = _cfg(f"seed={seed}", split="kfold", n_folds=k, fold=1)
    split = resolve_split(cfg, cohort)
    files = [cohort.root / "splits" / f"kfold{k}_seed{seed}_fold{i}.csv" for i in range(k)]
    assert all(f.exists() for f in files)
    monkeypatch.setattr(pipeline, "make_kfold_splits", lambda *a, **kw: pytest.fail("folds re-made"))
    folds = [resolve_split(_cfg(f"seed={seed}", split="kfold", n_folds=k, fold=i), cohort) for i in range(k)]
    assert folds[1] == split
    ids = set(cohort.case_ids)
    tests = [set(f["test"]) for f in folds]
    for i in range(k):
        _assert_partition(folds[i], ids)
        for j in range(i + 1, k):
            assert not tests[i] & tests[j], (i, j)
    assert set().union(*tests) == ids
    assert sum(map(len, tests)) == len(ids)


@pytest.mark.parametrize("fold", [-1, 4, 10])
def test_bad_fold_raises(cohort, fold):
    with pytest.raises(ConfigError, match="data.fold"):
        resolve_split(_cfg("seed=22", split="kfold", n_folds=4, fold=fold), cohort)
    assert not list((cohort.root / "splits").glob("kfold4_seed22_*"))


def test_bad_split_kind_and_missing_split_file_raise(cohort):
    with pytest.raises(ConfigError, match="holdout, kfold or file"):
        resolve_split(_cfg(split="random"), cohort)
    with pytest.raises(ConfigError, match="split_file"):
        resolve_split(_cfg(split="file"), cohort)


def test_split_from_file(cohort, tmp_path):
    ids = sorted(cohort.case_ids)
    mine = {"train": ids[:40], "val": ids[40:50], "test": ids[50:]}
    path = save_split(mine, tmp_path / "my_split.csv")
    assert resolve_split(_cfg(split="file", split_file=str(path)), cohort) == mine


def test_in_domain_sites_exclude_ood(cohort):
    assert in_domain_sites(cohort) == ["BRCA", "NSCLC"]


def test_select_sites(cohort):
    assert select_sites(_cfg(), cohort) == ["BRCA", "NSCLC"]                  # default: in-domain only
    assert select_sites(_cfg(sites=["NSCLC"]), cohort) == ["NSCLC"]
    assert select_sites(_cfg(sites=["BLCA", "BRCA"]), cohort) == ["BLCA", "BRCA"]  # OOD sites on request
    assert select_sites(_cfg(sites="BRCA, NSCLC"), cohort) == ["BRCA", "NSCLC"]
    with pytest.raises(ConfigError, match="XYZ") as exc:
        select_sites(_cfg(sites=["BRCA", "XYZ"]), cohort)
    assert "BRCA" in str(exc.value) and "NSCLC" in str(exc.value)


def test_restrict_split_keeps_only_the_sites(cohort):
    split = resolve_split(_cfg("seed=31"), cohort)
    site_of = cohort.manifest["site"]
    sub = restrict_split(split, cohort, ["BRCA"])
    assert set(sub) == {"train", "val", "test"}
    for name in ("train", "val", "test"):
        assert sub[name] == [c for c in split[name] if site_of[c] == "BRCA"]   # order kept
        assert sub[name]
    assert sum(map(len, sub.values())) == PATIENTS
    both = restrict_split(split, cohort, ["BRCA", "NSCLC"])
    assert sum(map(len, both.values())) == 2 * PATIENTS
    assert not any(site_of[c] == "BLCA" for ids in both.values() for c in ids)
    assert restrict_split(split, cohort, [])["train"] == []


def test_plan_runs_one_per_site(cohort, tmp_path):
    cfg = _cfg()
    frozen = copy.deepcopy(cfg)
    plans = plan_runs(cfg, cohort, tmp_path / "out")
    assert [p[1] for p in plans] == [tmp_path / "out" / "BRCA", tmp_path / "out" / "NSCLC"]
    assert [p[0]["data"]["sites"] for p in plans] == [["BRCA"], ["NSCLC"]]
    assert cfg == frozen                                       # the input config is not modified
    for run_cfg, _ in plans:
        assert run_cfg["method"] == "abmil" and run_cfg["train"] == cfg["train"]
    plans[0][0]["train"]["epochs"] = 99                        # each plan has its own copy
    assert plans[1][0]["train"]["epochs"] == cfg["train"]["epochs"]


def test_plan_runs_pan_cancer_is_one_pooled_run(cohort, tmp_path):
    plans = plan_runs(_cfg(pan_cancer=True), cohort, tmp_path / "out")
    assert len(plans) == 1
    run_cfg, run_dir = plans[0]
    assert run_dir == tmp_path / "out" and run_cfg["data"]["sites"] == ["BRCA", "NSCLC"]
    assert run_cfg["data"]["pan_cancer"] is True


def test_plan_runs_single_site_and_unknown_site(cohort, tmp_path):
    plans = plan_runs(_cfg(sites=["NSCLC"]), cohort, tmp_path / "out")
    assert plans == [(plans[0][0], tmp_path / "out")] and plans[0][0]["data"]["sites"] == ["NSCLC"]
    with pytest.raises(ConfigError):
        plan_runs(_cfg(sites=["XYZ"]), cohort, tmp_path / "out")
