"""Tests of data.splits: stratified holdout and k-fold, split files (ours and SurvPath/CLAM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.data.splits import (
    load_split,
    make_holdout_split,
    make_kfold_splits,
    save_split,
    strata_keys,
    validate_split,
)
from modaltune.errors import InputError, InputWarning


def make_manifest(seed: int = 0) -> pd.DataFrame:
    """400 patients, 2 sites, imbalanced subtypes, a rare set and a 3-patient stratum."""
    rng = np.random.default_rng(seed)
    rows = []
    spec = {"BRCA": [("IDC", 150), ("ILC", 40), ("", 20)], "NSCLC": [("LUAD", 90), ("LUSC", 97), ("X", 3)]}
    i = 0
    for site, classes in spec.items():
        for sub, n in classes:
            for _ in range(n):
                rows.append({"case_id": f"TCGA-{site[:2]}-{i:04d}", "site": site, "subtype": sub, "rare": sub == "",
                             "slides": f"TCGA-{site[:2]}-{i:04d}-01Z-00-DX1"})
                i += 1
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(1000)))
    return df.set_index("case_id", drop=False)


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return make_manifest()


def test_holdout_disjoint_and_complete(manifest):
    s = make_holdout_split(manifest, seed=0)
    ids = [c for part in s.values() for c in part]
    assert len(ids) == len(set(ids)) == len(manifest)
    assert set(ids) == set(manifest.index)


def test_holdout_stratified_proportions(manifest):
    s = make_holdout_split(manifest, seed=3)
    n = len(manifest)
    for name, f in zip(("train", "val", "test"), (0.68, 0.12, 0.20)):
        assert abs(len(s[name]) - f * n) <= 2, name
    keys = strata_keys(manifest)
    part_of = {c: p for p, ids in s.items() for c in ids}
    for key in ("BRCA|IDC", "BRCA|ILC", "NSCLC|LUAD", "NSCLC|LUSC", "BRCA|rare"):
        members = keys.index[keys == key]
        for name, f in zip(("train", "val", "test"), (0.68, 0.12, 0.20)):
            share = np.mean([part_of[c] == name for c in members])
            assert abs(share - f) <= 1.0 / len(members) + 0.02, (key, name, share)


def test_small_stratum_fallback(manifest):
    # the 3-patient NSCLC|X stratum is merged (no error) and its patients are still split
    s = make_holdout_split(manifest, seed=0)
    tiny = manifest.index[manifest["subtype"] == "X"]
    assert all(any(c in part for part in s.values()) for c in tiny)


def test_holdout_reproducible_and_seed_dependent(manifest):
    a = make_holdout_split(manifest, seed=7)
    b = make_holdout_split(manifest.sample(frac=1.0, random_state=1), seed=7)  # row order irrelevant
    c = make_holdout_split(manifest, seed=8)
    assert a == b
    assert a["test"] != c["test"]


def test_tiny_cohort_has_every_split():
    m = make_manifest().iloc[:5]
    s = make_holdout_split(m, seed=0, stratify=())
    assert all(len(v) >= 1 for v in s.values()) and sum(map(len, s.values())) == 5


def test_bad_fractions(manifest):
    with pytest.raises(InputError, match="fractions"):
        make_holdout_split(manifest, seed=0, fractions=(0.5, 0.2, 0.2))


def test_kfold_covers_each_case_once_in_test(manifest):
    folds = make_kfold_splits(manifest, seed=0, k=5)
    assert len(folds) == 5
    tests = [c for f in folds for c in f["test"]]
    assert sorted(tests) == sorted(manifest.index)
    for f in folds:
        ids = f["train"] + f["val"] + f["test"]
        assert len(ids) == len(set(ids)) == len(manifest)
        assert abs(len(f["test"]) - len(manifest) / 5) <= 2
        assert abs(len(f["val"]) / (len(f["train"]) + len(f["val"])) - 0.15) < 0.02
    assert folds == make_kfold_splits(manifest, seed=0, k=5)
    assert folds[0]["test"] != make_kfold_splits(manifest, seed=1, k=5)[0]["test"]


def test_kfold_stratified(manifest):
    folds = make_kfold_splits(manifest, seed=2, k=4)
    keys = strata_keys(manifest)
    idc = set(keys.index[keys == "BRCA|IDC"])
    counts = [len(idc & set(f["test"])) for f in folds]
    assert max(counts) - min(counts) <= 1


def test_save_load_round_trip(manifest, tmp_path):
    s = make_holdout_split(manifest, seed=0)
    path = save_split(s, tmp_path / "split.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == ["case_id", "split"]
    assert load_split(path, manifest) == s


def test_survpath_style_split(manifest, tmp_path):
    s = make_holdout_split(manifest, seed=0)
    # slide barcodes (two slides of one case collapse), columns of unequal length, CLAM index column
    train = [f"{c}-01Z-00-DX1" for c in s["train"]] + [f"{s['train'][0]}-01Z-00-DX2"]
    cols = {"train": train, "val": s["val"], "test": [f"{c}-01Z-00-DX1.svs" for c in s["test"]]}
    n = max(map(len, cols.values()))
    df = pd.DataFrame({k: v + [None] * (n - len(v)) for k, v in cols.items()})
    df.to_csv(tmp_path / "splits_0.csv")  # writes an unnamed index column like CLAM
    got = load_split(tmp_path / "splits_0.csv", manifest)
    assert {k: sorted(v) for k, v in got.items()} == s


def test_unknown_case_error_names_file_and_case(manifest, tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"case_id": [manifest.index[0], "TCGA-XX-0000"], "split": ["train", "test"]}).to_csv(path, index=False)
    with pytest.raises(InputError) as ei:
        load_split(path, manifest)
    assert "bad.csv" in str(ei.value) and "TCGA-XX-0000" in str(ei.value)


def test_duplicate_errors_name_file_and_case(manifest, tmp_path):
    c0 = manifest.index[0]
    ours = tmp_path / "dup.csv"
    pd.DataFrame({"case_id": [c0, c0], "split": ["train", "test"]}).to_csv(ours, index=False)
    with pytest.raises(InputError, match=f"dup.csv.*{c0}|{c0}.*dup.csv"):
        load_split(ours, manifest)
    sp = tmp_path / "sp.csv"
    pd.DataFrame({"train": [c0], "val": [manifest.index[1]], "test": [f"{c0}-01Z-00-DX1"]}).to_csv(sp, index=False)
    with pytest.raises(InputError) as ei:
        load_split(sp, manifest)
    assert "sp.csv" in str(ei.value) and c0 in str(ei.value)


def test_validate_split_unknown_name(manifest):
    with pytest.raises(InputError, match="unknown split name"):
        validate_split({"training": []}, manifest)


def test_a_split_file_that_forgets_patients_warns_but_a_runs_own_split_may_not(manifest, tmp_path):
    import warnings

    split = make_holdout_split(manifest, seed=0)
    forgotten = split["train"][0]
    cut = {**split, "train": split["train"][1:]}
    path = tmp_path / "split.csv"
    save_split(cut, path)
    with pytest.warns(InputWarning, match=rf"1 patient\(s\) of the split's sites are in no split.*{forgotten}"):
        load_split(path, manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # a run's own split.csv (a data-efficiency cut) loads quietly
        again = load_split(path, manifest, warn_uncovered=False)
    assert sorted(again["train"]) == sorted(cut["train"]) and again["test"] == cut["test"]
