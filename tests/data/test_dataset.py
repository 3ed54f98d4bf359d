"""Tests of data.dataset: train-only fitting (no leakage), patient items, coords, subsampling, cache."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import modaltune.data.dataset as dsmod
from modaltune.data.cohort import MANIFEST_COLUMNS, Cohort
from modaltune.data.dataset import PatientDataset
from modaltune.data.fitted_state import POOLED, FittedState
from modaltune.data.patient import collate_single
from modaltune.errors import InputWarning

DIM = 6
GENES = ["A", "B", "C", "D"]


def write_h5(path: Path, n: int, *, coords=True, x0: int = 0, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=rng.standard_normal((n, DIM)).astype(np.float32))
        if coords:
            xy = np.stack([x0 + (np.arange(n) % 4) * 256, (np.arange(n) // 4) * 256], axis=1).astype(np.int64)
            f.create_dataset("coords", data=xy)
        f.attrs["patch_size_level0"] = 256
    return str(path)


def row(case, site="BRCA", months=10.0, event=1.0, paths=(), omics=True, subtype=0, rare=False):
    base = {c: "" for c in MANIFEST_COLUMNS}
    base.update(case_id=case, site=site, project_id=f"TCGA-{site}", primary_diagnosis="Infiltrating duct carcinoma",
                subtype="Infiltrating duct carcinoma" if subtype >= 0 else "", subtype_index=subtype, rare=rare,
                location="breast", diagnosis_text="infiltrating duct carcinoma", stage="stage two",
                survival_months=months, event=event, has_survival=months == months, has_wsi=bool(paths),
                has_wsi_secondary=False, has_omics=omics, has_report=False, n_slides=len(paths),
                slides=";".join(Path(p).stem for p in paths), slide_paths=";".join(paths), ood=False,
                n_patches=0, n_patches_secondary=0)
    return base


def make_cohort(rows, expression: pd.DataFrame | None, root="/tmp/none") -> Cohort:
    man = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).set_index("case_id", drop=False)
    dim = DIM if man["has_wsi"].any() else 0
    return Cohort(root=Path(root), manifest=man, expression=expression,
                  genes=list(expression.columns) if expression is not None else [],
                  pathways={}, meta={"feature_dim": dim, "feature_dim_secondary": 0,
                                     "sites": sorted(man["site"].unique())})


def survival_cohort(test_months=None, test_expr_shift=0.0):
    """20 BRCA + 12 NSCLC patients; ids ending in T are 'test' patients."""
    rng = np.random.default_rng(0)
    rows, expr = [], {}
    for site, n in (("BRCA", 20), ("NSCLC", 12)):
        for i in range(n):
            case = f"{site}-{i:02d}" + ("T" if i % 4 == 0 else "")
            months = float(rng.uniform(1, 100))
            if case.endswith("T") and test_months is not None:
                months = test_months
            rows.append(row(case, site=site, months=months, event=float(i % 2)))
            v = rng.normal(5, 2, size=len(GENES))
            v[3] = 7.0  # constant gene (zero std)
            expr[case] = v + (test_expr_shift if case.endswith("T") else 0.0)
    rows.append(row("BRCA-99T", months=float("nan"), event=float("nan")))  # no survival
    rows.append(row("BRCA-98", omics=False))
    e = pd.DataFrame.from_dict(expr, orient="index", columns=GENES).astype(np.float32)
    return make_cohort(rows, e)


def train_ids(c):
    return [x for x in c.manifest.index if not x.endswith("T")]


# ----------------------------------------------------------------------------------------------
# fitted state


def test_state_depends_only_on_train_patients():
    a = survival_cohort()
    b = survival_cohort(test_months=5000.0, test_expr_shift=100.0)
    sa, sb = FittedState.fit(a, train_ids(a)), FittedState.fit(b, train_ids(b))
    np.testing.assert_array_equal(sa.omics_mean, sb.omics_mean)
    np.testing.assert_array_equal(sa.omics_std, sb.omics_std)
    assert sa.bin_edges.keys() == sb.bin_edges.keys() == {"BRCA", "NSCLC", POOLED}
    for k in sa.bin_edges:
        np.testing.assert_array_equal(sa.bin_edges[k], sb.bin_edges[k])
    # ...and the test patients do change it when (wrongly) included
    sc = FittedState.fit(b, list(b.manifest.index))
    assert not np.allclose(sc.omics_mean, sb.omics_mean)


def test_scaler_values_and_zero_std_guard():
    c = survival_cohort()
    tr = train_ids(c)
    s = FittedState.fit(c, tr)
    x = c.expression.loc[[i for i in tr if c.manifest.loc[i, "has_omics"]]].to_numpy(np.float64)
    np.testing.assert_allclose(s.omics_mean, x.mean(0), rtol=1e-5)
    assert s.omics_std[3] == 1.0 and np.all(np.isfinite(s.omics_std))


def test_state_round_trip_json():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c), n_bins=4)
    back = FittedState.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(back.omics_mean, s.omics_mean)
    for k in s.bin_edges:
        np.testing.assert_array_equal(back.bin_edges[k], s.bin_edges[k])
    assert back.n_bins == 4 and back.train_ids == s.train_ids and back.genes == GENES


def test_site_with_few_train_patients_uses_pooled_edges():
    c = survival_cohort()
    tr = [i for i in train_ids(c) if i.startswith("BRCA")] + ["NSCLC-01"]
    s = FittedState.fit(c, tr)
    assert s.bin_source["NSCLC"] == "pooled" and s.bin_source["BRCA"] == "site"
    np.testing.assert_array_equal(s.bin_edges["NSCLC"], s.bin_edges[POOLED])


# ----------------------------------------------------------------------------------------------
# items


def test_item_contract():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    ds = PatientDataset(c, ["BRCA-01", "BRCA-99T", "BRCA-98"], s, train=False)
    it = ds[0]
    assert it["case_id"] == "BRCA-01" and it["site"] == "BRCA" and it["index"] == 0
    assert it["bag"].shape == (0, 0) and it["coords"].shape == (0, 2) and not it["has_wsi"]  # no WSI in cohort
    assert it["omics"].dtype == torch.float32 and it["omics"].shape == (len(GENES),)
    assert it["has_omics"].dtype == torch.bool and it["has_omics"].ndim == 0
    assert it["subtype"].dtype == torch.long and it["subtype"].item() == 0
    assert it["survival_bin"].item() >= 0 and it["has_survival"].item()
    assert len(it["prompts"]) == 3 and all(isinstance(p, str) for p in it["prompts"])
    assert it["report"] == "" and "bag_secondary" not in it
    none = ds[1]
    assert not none["has_survival"] and none["survival_bin"].item() == -1
    missing = ds[2]
    assert not missing["has_omics"] and torch.all(missing["omics"] == 0)
    assert collate_single([it]) is it
    with pytest.raises(ValueError):
        collate_single([it, it])


def test_omics_standardised_with_train_scaler():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    ds = PatientDataset(c, ["NSCLC-00T"], s, train=False)
    expect = (c.expression.loc["NSCLC-00T"].to_numpy(np.float32) - s.omics_mean) / s.omics_std
    np.testing.assert_allclose(ds[0]["omics"].numpy(), expect, rtol=1e-5)


def test_text_cache_embeddings():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    ds = PatientDataset(c, ["BRCA-01", "BRCA-02"], s, train=False)
    cache = {p: np.full(5, i, np.float32) for i, p in enumerate(ds.prompt_texts())}
    ds2 = PatientDataset(c, ["BRCA-01", "BRCA-02"], s, train=False, text_cache=cache)
    emb = ds2[0]["text_emb"]
    assert emb.shape == (3, 5)
    assert [cache[p][0] for p in ds2[0]["prompts"]] == emb[:, 0].tolist()


@pytest.fixture()
def wsi_cohort(tmp_path):
    p1 = write_h5(tmp_path / "S1.h5", 12, seed=1)
    p2 = write_h5(tmp_path / "S2.h5", 8, x0=512, seed=2)  # same area as S1: must be shifted
    p3 = write_h5(tmp_path / "S3.h5", 5, coords=False, seed=3)
    rows = [row("P1", paths=(p1, p2), omics=False), row("P2", paths=(p3,), omics=False), row("P3", omics=False)]
    c = make_cohort(rows, None, tmp_path)
    return c, FittedState.fit(c, ["P1", "P2", "P3"])


def test_multi_slide_concatenation_without_overlap(wsi_cohort):
    c, s = wsi_cohort
    it = PatientDataset(c, ["P1"], s, train=False)[0]
    assert it["bag"].shape == (20, DIM) and it["coords"].shape == (20, 2)
    with h5py.File(c.manifest.loc["P1", "slide_paths"].split(";")[0]) as f:
        np.testing.assert_array_equal(it["bag"][:12].numpy(), f["features"][:])
    first, second = it["coords"][:12].numpy(), it["coords"][12:].numpy()
    assert second[:, 0].min() == first[:, 0].max() + 256  # one tile gap
    pairs = {tuple(xy) for xy in first} & {tuple(xy) for xy in second}
    assert not pairs


def test_missing_coords_grid_and_single_warning(wsi_cohort):
    c, s = wsi_cohort
    ds = PatientDataset(c, ["P2", "P2"], s, train=False)
    with pytest.warns(InputWarning, match="grid coordinates") as rec:
        a = ds[0]
        ds[1]
    assert sum("grid coordinates" in str(w.message) for w in rec) == 1
    xy = a["coords"].numpy()
    assert len({tuple(p) for p in xy}) == 5 and (xy % 256 == 0).all()


def test_missing_wsi_gives_empty_bag(wsi_cohort):
    c, s = wsi_cohort
    it = PatientDataset(c, ["P3"], s, train=False)[0]
    assert it["bag"].shape == (0, DIM) and not it["has_wsi"]


def test_subsampling_train_only_seeded_per_epoch(wsi_cohort):
    c, s = wsi_cohort
    tr = PatientDataset(c, ["P1"], s, train=True, bag_cap=7, seed=3)
    a = tr[0]["coords"]
    assert tr[0]["bag"].shape == (7, DIM)
    assert torch.equal(a, tr[0]["coords"])  # same epoch: same subsample
    tr.set_epoch(1)
    assert not torch.equal(a, tr[0]["coords"])  # new epoch: new subsample
    tr.set_epoch(0)
    assert torch.equal(a, tr[0]["coords"])
    assert not torch.equal(a, PatientDataset(c, ["P1"], s, train=True, bag_cap=7, seed=4)[0]["coords"])
    ev = PatientDataset(c, ["P1"], s, train=False, bag_cap=7)
    assert ev[0]["bag"].shape == (20, DIM)  # evaluation never subsamples
    capped = PatientDataset(c, ["P1"], s, train=False, bag_cap=7, eval_bag_cap=9)
    capped.set_epoch(5)
    assert capped[0]["bag"].shape == (9, DIM)


def test_cache_avoids_reopening(wsi_cohort, monkeypatch):
    c, s = wsi_cohort
    opened = []
    import modaltune.data.slides as slides_mod

    real = slides_mod.read_features
    monkeypatch.setattr(slides_mod, "read_features", lambda p: opened.append(str(p)) or real(p))
    ds = PatientDataset(c, ["P1"], s, train=True, bag_cap=5)
    for epoch in range(3):
        ds.set_epoch(epoch)
        ds[0]
    assert sorted(opened) == sorted(c.manifest.loc["P1", "slide_paths"].split(";"))  # once per file
    opened.clear()
    small = PatientDataset(c, ["P1"], s, train=False, cache_size=1)
    small[0]
    small[0]
    assert len(opened) == 4  # cache of one file: the two slides evict each other


def test_prompts_use_train_fitted_site_edges(monkeypatch):
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    calls = []
    real = dsmod.build_prompts
    monkeypatch.setattr(dsmod, "build_prompts", lambda r, edges: calls.append(edges) or real(r, edges))
    ds = PatientDataset(c, ["BRCA-01", "NSCLC-01"], s, train=False)
    np.testing.assert_array_equal(calls[0], s.bin_edges["BRCA"])
    np.testing.assert_array_equal(calls[1], s.bin_edges["NSCLC"])
    assert len(ds) == 2


def test_prompt_items_can_be_left_out():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    ids = ["BRCA-01", "NSCLC-01"]
    full = PatientDataset(c, ids, s, train=False)
    for omit, gone in ((("stage", "t", "n", "m"), ("Overall stage", "Tumor stage", "Lymph node", "Distant")),
                       (("survival_status",), ("Survival status",))):
        ds = PatientDataset(c, ids, s, train=False, prompt_omit=omit)
        for i in range(len(ids)):
            for kept, prompt in zip(full.prompts(i), ds.prompts(i)):
                assert not any(g in prompt for g in gone)
                assert set(prompt.split("; ")) <= set(kept.split("; "))      # the other items unchanged
    with pytest.raises(Exception, match="unknown prompt item"):
        PatientDataset(c, ids, s, train=False, prompt_omit=("grade",))


def test_unknown_case_rejected():
    c = survival_cohort()
    s = FittedState.fit(c, train_ids(c))
    with pytest.raises(Exception, match="NOPE"):
        PatientDataset(c, ["NOPE"], s, train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Exception, match="NOPE"):
            FittedState.fit(c, ["NOPE"])
