"""Tests of the tumor / microenvironment glioma cohort (DMSF): formats, prepare, determinism, planted signals."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.data.prepare import prepare_cohort
from modaltune.errors import ConfigError
from modaltune.synthetic import (
    GRADES,
    SUBSPACE_GROUPINGS,
    WHO_CLASSES,
    make_pan_cancer,
    make_subspace_cohort,
    oracle_c_index,
)


def _who_rule(mol: pd.DataFrame) -> pd.Series:
    """WHO CNS 2021 from the molecular table, written from the spec (independent of the generator)."""
    def one(r) -> str:
        if r.idh_status == "wildtype":
            return "Glioblastoma, IDH-wildtype"
        if r.codel_1p19q == "codeleted":
            return "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted"
        if r.cdkn2a_gistic == -2 or r.grade == "G4":
            return "Astrocytoma, IDH-mutant, grade 4"
        return "Lower-grade astrocytoma, IDH-mutant"
    return mol.apply(one, axis=1)


def _h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares fit of y on x (with intercept)."""
    a = np.c_[np.ones(len(y)), x]
    resid = y - a @ np.linalg.lstsq(a, y, rcond=None)[0]
    return 1 - float(resid.var() / y.var())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """40 patients with small bags."""
    return make_subspace_cohort(tmp_path_factory.mktemp("sub") / "small", seed=1, patients=40,
                                grid_patches=(16, 48), dim=8)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """160 patients with small bags, for the planted-signal statistics."""
    return make_subspace_cohort(tmp_path_factory.mktemp("sub") / "big", seed=2, patients=160,
                                grid_patches=(24, 48), dim=8)


def test_layout_labels_and_molecular_table(small):
    for key in ("clinical", "clinical_grade", "molecular", "expression", "gene_sets", "truth", "truth_slides",
                "truth_json"):
        assert small[key].is_file(), key
    clin = pd.read_csv(small["clinical"], sep="\t", dtype=str, keep_default_na=False)
    grade = pd.read_csv(small["clinical_grade"], sep="\t", dtype=str, keep_default_na=False)
    mol = pd.read_csv(small["molecular"], sep="\t")
    assert set(clin.primary_diagnosis) <= set(WHO_CLASSES) and set(grade.primary_diagnosis) <= set(GRADES)
    assert (clin.drop(columns="primary_diagnosis") == grade.drop(columns="primary_diagnosis")).all().all()
    assert list(mol.columns) == ["case_id", "idh_status", "codel_1p19q", "cdkn2a_gistic", "grade"]
    assert set(mol.idh_status) <= {"mutant", "wildtype"} and set(mol.codel_1p19q) <= {"codeleted", "intact"}
    assert set(mol.cdkn2a_gistic) <= {-2, -1, 0} and set(mol.grade) <= set(GRADES)
    assert ((clin.project_id == "TCGA-GBM") == (mol.grade == "G4")).all()
    assert not ((mol.idh_status == "wildtype") & (mol.codel_1p19q == "codeleted")).any()
    truth = pd.read_csv(small["truth"])
    rule = _who_rule(mol)
    assert (rule.to_numpy() == np.array(WHO_CLASSES)[truth.who_class]).all()  # true class = the WHO rule
    assert (clin.primary_diagnosis.to_numpy() == np.array(WHO_CLASSES)[truth.who_written]).all()
    assert (rule == clin.primary_diagnosis).mean() >= 0.7  # up to the label noise (0.1)
    sets = [ln.split("\t")[0] for ln in small["gene_sets"].read_text().splitlines()]
    assert any(s.startswith("TUMOR_") for s in sets) and any(s.startswith("TME_") for s in sets)
    assert any(s.startswith("SYN_") for s in sets)
    in_sets = {g for ln in small["gene_sets"].read_text().splitlines() for g in ln.split("\t")[2:]}
    genes = pd.read_csv(small["expression"], sep="\t", index_col=0).index
    assert in_sets < set(genes)  # every set gene is measured, and some genes are in no set


def test_no_label_noise_gives_the_rule_exactly(tmp_path):
    out = make_subspace_cohort(tmp_path / "clean", seed=4, patients=30, grid_patches=(4, 8), dim=4, label_noise=0.0)
    clin = pd.read_csv(out["clinical"], sep="\t")
    grade = pd.read_csv(out["clinical_grade"], sep="\t")
    mol = pd.read_csv(out["molecular"], sep="\t")
    assert (_who_rule(mol) == clin.primary_diagnosis).all() and (mol.grade == grade.primary_diagnosis).all()


def test_prepare_reads_both_label_tables(small, tmp_path):
    truth = pd.read_csv(small["truth"])
    common = dict(features=small["features"], features_secondary=small["features_secondary"],
                  expression=small["expression"], gene_sets=small["gene_sets"])
    who = prepare_cohort(tmp_path / "who", clinical=small["clinical"], grouping=SUBSPACE_GROUPINGS["who2021"],
                         **common)
    man = who.manifest.loc[truth.case_id]
    assert len(man) == 40 and set(man.site) == {"GBMLGG"}
    assert (man.subtype_index.to_numpy() == truth.who_written.to_numpy()).all()
    assert man.has_wsi.all() and man.has_wsi_secondary.all() and man.has_omics.all()
    assert who.meta["feature_dim"] == 8 and who.meta["feature_dim_secondary"] == 8
    assert any(p.startswith("TUMOR_") for p in who.pathways) and any(p.startswith("TME_") for p in who.pathways)
    grade = prepare_cohort(tmp_path / "grade", clinical=small["clinical_grade"], grouping=SUBSPACE_GROUPINGS["grade"],
                           **common)
    assert (grade.manifest.loc[truth.case_id].subtype_index.to_numpy() == truth.grade_written.to_numpy() - 2).all()


def test_same_seed_same_files(tmp_path):
    kw = dict(seed=7, patients=8, grid_patches=(4, 12), dim=4)
    a, b = make_subspace_cohort(tmp_path / "a", **kw), make_subspace_cohort(tmp_path / "b", **kw)
    assert _files(a["out"]) == _files(b["out"])


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="at least 8"):
        make_subspace_cohort(tmp_path, patients=3)
    with pytest.raises(ConfigError, match="grid_patches"):
        make_subspace_cohort(tmp_path, grid_patches=(50, 10))
    with pytest.raises(ConfigError, match="label_noise"):
        make_subspace_cohort(tmp_path, label_noise=1.0)
    with pytest.raises(ConfigError, match="factor_correlation"):
        make_subspace_cohort(tmp_path, factor_correlation=1.0)


def test_10x_is_the_2x2_pooled_20x_tissue(small):
    slides = pd.read_csv(small["truth_slides"])
    resid = []
    for sid in slides.slide_id:
        f20, f10 = _h5(small["features"] / f"{sid}.h5"), _h5(small["features_secondary"] / f"{sid}.h5")
        truth = _h5(small["truth_patches"] / f"{sid}.h5")
        assert (truth["coords_20x"] == f20["coords"]).all() and (truth["coords_10x"] == f10["coords"]).all()
        assert (f10["coords"] % 512 == 0).all() and (f20["coords"] % 256 == 0).all()
        block = [tuple(c) for c in (f20["coords"] // 512) * 512]
        row = {tuple(c): i for i, c in enumerate(f10["coords"])}
        assert set(block) == set(row)  # each 10x patch covers a 2x2 block of 20x tissue
        idx = np.array([row[b] for b in block])
        n = np.bincount(idx)
        pooled = np.stack([np.bincount(idx, weights=f20["features"][:, j]) / n for j in range(8)], axis=1)
        resid.append(f10["features"] - pooled)
        share = np.bincount(idx, weights=truth["tumor_20x"].astype(float)) / n
        assert np.allclose(share, truth["tumor_fraction_10x"], atol=1e-6)
    sd = np.concatenate(resid).std()
    assert 0.1 < sd < 0.3  # fresh noise 0.3 * feature_noise = 0.18


def test_compartments_are_contiguous_and_hold_their_factor(big):
    meta = json.loads(big["truth_json"].read_text())
    truth = pd.read_csv(big["truth"]).set_index("case_id")
    ax_t, ax_e = np.array(meta["tumor_axis"]), np.array(meta["tme_axis"])
    slides = pd.read_csv(big["truth_slides"])
    tum, tme, same = {}, {}, []
    for case, grp in slides.groupby("case_id"):
        feats, lab = [], []
        for sid in grp.slide_id:
            f20, t = _h5(big["features"] / f"{sid}.h5"), _h5(big["truth_patches"] / f"{sid}.h5")
            feats.append(f20["features"])
            lab.append(t["tumor_20x"].astype(bool))
            cells = {tuple(c // 256): v for c, v in zip(f20["coords"], lab[-1])}
            same += [v == cells[(x + 1, y)] for (x, y), v in cells.items() if (x + 1, y) in cells]
        f, m = np.concatenate(feats), np.concatenate(lab)
        tum[case], tme[case] = f[m].mean(0), f[~m].mean(0)
    assert np.mean(same) > 0.7  # neighbours mostly share their compartment (0.5 for random labels)
    cases = list(tum)
    t_mean, e_mean = np.stack([tum[c] for c in cases]), np.stack([tme[c] for c in cases])
    z_t, z_e = truth.loc[cases, "z_tumor"].to_numpy(), truth.loc[cases, "z_tme"].to_numpy()
    # z_T is linearly readable from the tumor patches only, z_E from the TME patches only (R^2 of a
    # least-squares fit; about 0.05 with no signal at 8 features and 160 patients, plus the
    # factor correlation 0.2^2 leaking through the other factor)
    assert _r2(t_mean, z_t) > 0.5 and _r2(e_mean, z_t) < 0.25
    assert _r2(e_mean, z_e) > 0.5 and _r2(t_mean, z_e) < 0.25
    # the appearance axes of truth.json are unit vectors, one per compartment
    assert np.isclose(np.linalg.norm(ax_t), 1, atol=1e-4) and abs(ax_t @ ax_e) < 1e-4


def test_gene_subspaces_follow_their_factors(big):
    meta = json.loads(big["truth_json"].read_text())
    truth = pd.read_csv(big["truth"]).set_index("case_id")
    expr = pd.read_csv(big["expression"], sep="\t", index_col=0).T
    expr.index = [c[:12] for c in expr.index]
    z = (expr - expr.mean()) / expr.std()
    gmt = {ln.split("\t")[0]: ln.rstrip("\n").split("\t")[2:] for ln in big["gene_sets"].read_text().splitlines()}
    t = truth.loc[z.index]
    for name, driver in meta["gene_set_driver"].items():
        score = z[gmt[name]].mean(1)
        if driver == "z_T":
            assert np.corrcoef(score, t.z_tumor)[0, 1] > 0.7, name
        elif driver == "z_E":
            assert np.corrcoef(score, t.z_tme)[0, 1] > 0.7, name
        elif driver == "idh_mutant":
            assert np.corrcoef(score, t.idh_mutant)[0, 1] > 0.8, name
        elif driver == "codel":
            assert np.corrcoef(score, t.codel)[0, 1] < -0.8, name
    assert set(meta["tumor_sets"]) == {k for k in gmt if k.startswith("TUMOR_")}


def test_labels_and_survival_follow_the_factors(big):
    truth = pd.read_csv(big["truth"])
    assert truth.z_tumor[~truth.idh_mutant].mean() > truth.z_tumor[truth.idh_mutant].mean() + 0.8
    g = truth.groupby("grade")
    assert g.z_tumor.mean().is_monotonic_increasing and g.z_tme.mean().is_monotonic_increasing
    assert set(truth.who_class) == {0, 1, 2, 3} and set(truth.grade) == {2, 3, 4}
    flips = (truth.who_class != truth.who_written).mean()
    assert 0.02 < flips < 0.2
    oracle = oracle_c_index(big["truth"])
    assert oracle["sites"]["GBMLGG"] > 0.7
    assert oracle == json.loads(big["truth_json"].read_text())["oracle_c_index"]


def test_rewrite_removes_stale_slides_and_refuses_foreign_files(tmp_path):
    make_pan_cancer(tmp_path / "c", seed=0, sites=("BRCA",), patients=4, patches=(4, 8), dim=4)
    r = make_subspace_cohort(tmp_path / "c", seed=0, patients=8, grid_patches=(4, 8), dim=4)
    slides = pd.read_csv(r["truth_slides"]).slide_id
    assert sorted(p.stem for p in r["features"].glob("*.h5")) == sorted(slides)
    foreign = tmp_path / "d" / "features_20x"
    foreign.mkdir(parents=True)
    (foreign / "mine.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="not from an earlier synthetic cohort"):
        make_subspace_cohort(tmp_path / "d", patients=8, grid_patches=(4, 8), dim=4)
    assert (foreign / "mine.h5").exists()


def _molecular_cases(truth: pd.DataFrame) -> set[str]:
    """Patients whose tumors carry morphological molecular hints (codeleted or IDH-wildtype)."""
    return set(truth.index[truth["codel"].astype(bool) | ~truth["idh_mutant"].astype(bool)])


def test_diffuse_hints_act_on_every_tumor_patch(small):
    truth = pd.read_csv(small["truth"]).set_index("case_id")
    hinted = _molecular_cases(truth)
    for _, row in pd.read_csv(small["truth_slides"]).iterrows():
        t = _h5(small["truth_patches"] / f"{row.slide_id}.h5")
        expected = t["tumor_20x"].astype(bool) & (row.case_id in hinted)
        assert np.array_equal(t["molecular_20x"].astype(bool), expected)


def test_focal_hints_sit_in_a_contiguous_share_of_the_tumor(tmp_path):
    out = make_subspace_cohort(tmp_path / "focal", seed=4, patients=40, grid_patches=(48, 96), dim=8,
                               molecular_fraction=0.2, molecular_morphology=5.0)
    assert json.loads(out["truth_json"].read_text())["molecular_fraction"] == 0.2
    truth = pd.read_csv(out["truth"]).set_index("case_id")
    hinted = _molecular_cases(truth)
    assert 5 < len(hinted) < 35
    same, gaps = [], []
    for _, row in pd.read_csv(out["truth_slides"]).iterrows():
        t, f = _h5(out["truth_patches"] / f"{row.slide_id}.h5"), _h5(out["features"] / f"{row.slide_id}.h5")
        tumor, mol = t["tumor_20x"].astype(bool), t["molecular_20x"].astype(bool)
        assert not (mol & ~tumor).any()                                    # only tumor patches
        assert mol.sum() == (round(0.2 * tumor.sum()) if row.case_id in hinted else 0)
        if mol.sum() >= 2 and (tumor & ~mol).sum() >= 2:
            cells = {tuple(c // 256): v for c, v in zip(t["coords_20x"], mol)}
            same += [v == cells[(x + 1, y)] for (x, y), v in cells.items() if (x + 1, y) in cells and v]
            # the focus looks different from the rest of the tumor (strength 5 on one prototype)
            gaps.append(np.linalg.norm(f["features"][mol].mean(0) - f["features"][tumor & ~mol].mean(0)))
    assert np.mean(same) > 0.35           # a focus patch's right neighbour is focus too far more often than at random (0.2)
    assert np.median(gaps) > 1.0


def test_focal_fraction_out_of_range_is_refused(tmp_path):
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="molecular_fraction"):
            make_subspace_cohort(tmp_path, patients=8, molecular_fraction=bad)
