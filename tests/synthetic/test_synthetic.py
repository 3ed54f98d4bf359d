"""Tests of the synthetic cohort writer: formats, determinism, censoring and the planted signal.

Files are read with h5py/pandas directly (not through modaltune's readers) so these tests pin the
on-disk formats themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.errors import ConfigError
from modaltune.evaluation.metrics import c_index
from modaltune.synthetic import DIAGNOSIS_CLASS, SITES, make_synthetic

SLIDE_RE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-01Z-00-DX[1-3]$")
SAMPLE_RE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-(01|11)$")
GDC_COLUMNS = ["case_submitter_id", "project_id", "primary_diagnosis", "ajcc_pathologic_stage",
               "ajcc_pathologic_t", "ajcc_pathologic_n", "ajcc_pathologic_m", "vital_status", "days_to_death",
               "days_to_last_follow_up", "age_at_index"]
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The default cohort (as `modaltune synth` writes it)."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "default", seed=0)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A larger cohort with small slides, for stable survival statistics."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "big", seed=1, patients=200, patches=(16, 40),
                          secondary=False)


def _stage_number(s) -> float:
    if not isinstance(s, str):
        return np.nan
    m = re.match(r"Stage (IV|III|II|I)", s)
    return float(ROMAN[m.group(1)]) if m else np.nan


def _read_clinical(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _pooled_features(features_dir: Path, truth_slides: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for case, grp in truth_slides.groupby("case_id", sort=False):
        feats = []
        for sid in grp.slide_id:
            with h5py.File(features_dir / f"{sid}.h5", "r") as f:
                feats.append(f["features"][:])
        rows[case] = np.concatenate(feats).mean(0)
    return pd.DataFrame.from_dict(rows, orient="index")


def _pathway_score(expression_path, gmt_path, truth_json) -> pd.Series:
    """Signed mean z-score of the prognostic pathways' genes, per case (primary tumour samples)."""
    expr = pd.read_csv(expression_path, sep="\t", index_col=0)
    gmt = {ln.split("\t")[0]: ln.rstrip("\n").split("\t")[2:] for ln in open(gmt_path)}
    meta = json.loads(Path(truth_json).read_text())
    e = expr[[c for c in expr.columns if c.endswith("-01")]].T
    e.index = [c[:12] for c in e.index]
    z = (e - e.mean()) / e.std()
    score = np.zeros(len(z))
    for name, sign in zip(meta["prognostic_pathways"], meta["prognostic_signs"]):
        genes = [g for g in gmt[name] if g in z.columns]
        score += sign * z[genes].mean(1).to_numpy()
    return pd.Series(score, index=z.index)


# ------------------------------------------------------------------------------------------- formats


def test_layout_and_return_value(cohort):
    out = Path(cohort["out"])
    for name in ("clinical.tsv", "expression.tsv", "pathways.gmt", "reports.csv", "truth.csv",
                 "truth_slides.csv", "truth.json"):
        assert (out / name).is_file(), name
    assert Path(cohort["features"]) == out / "features_20x"
    assert Path(cohort["features_secondary"]) == out / "features_10x"
    assert cohort["sites"] == ["BRCA", "NSCLC", "RCC", "BLCA"] and cohort["ood_sites"] == ["BLCA"]
    assert set(cohort["oracle_c_index"]) == set(cohort["sites"])
    meta = json.loads((out / "truth.json").read_text())
    assert meta["oracle_c_index"] == cohort["oracle_c_index"]
    truth = pd.read_csv(out / "truth.csv")
    assert 60 <= truth.groupby("site").size().min() and truth.groupby("site").size().max() <= 120
    slides = pd.read_csv(out / "truth_slides.csv")
    assert sorted(p.stem for p in (out / "features_20x").glob("*.h5")) == sorted(slides.slide_id)
    assert sorted(p.stem for p in (out / "features_10x").glob("*.h5")) == sorted(slides.slide_id)


def test_h5_features_20x_and_10x(cohort):
    slides = pd.read_csv(Path(cohort["out"]) / "truth_slides.csv")
    assert all(SLIDE_RE.match(s) for s in slides.slide_id)
    assert (slides.slide_id.str[:12] == slides.case_id).all()
    coherent = []
    for sid in slides.slide_id[:25]:
        with h5py.File(Path(cohort["features"]) / f"{sid}.h5", "r") as f:
            feats, coords = f["features"], f["coords"]
            assert feats.dtype == np.float32 and coords.dtype == np.int64
            assert feats.ndim == 2 and feats.shape[1] == 64 and coords.shape == (feats.shape[0], 2)
            assert 64 <= feats.shape[0] <= 384
            assert f.attrs["patch_size"] == 256 and f.attrs["magnification"] == 20
            assert coords.attrs["patch_size_level0"] == 256
            x, c = feats[:], coords[:]
        assert np.isfinite(x).all()
        assert (c % 256 == 0).all() and len({tuple(r) for r in c}) == len(c)
        assert (c // 256).max() < 1000  # fits GigaPath's 1000x1000 position table
        # spatial coherence: 4-neighbours are more alike than random pairs
        pos = {tuple(r): i for i, r in enumerate(c // 256)}
        nb = [(i, pos[(a + 1, b)]) for (a, b), i in pos.items() if (a + 1, b) in pos]
        rng = np.random.default_rng(0)
        rnd = rng.integers(0, len(c), size=(len(nb), 2))
        d_nb = np.mean([np.linalg.norm(x[i] - x[j]) for i, j in nb])
        d_rnd = np.mean([np.linalg.norm(x[i] - x[j]) for i, j in rnd if i != j])
        coherent.append(d_nb < d_rnd)

        with h5py.File(Path(cohort["features_secondary"]) / f"{sid}.h5", "r") as f:
            x10, c10 = f["features"][:], f["coords"][:]
            assert f.attrs["magnification"] == 10 and f["coords"].attrs["patch_size_level0"] == 512
        assert x10.dtype == np.float32 and x10.shape[1] == 64 and c10.shape == (len(x10), 2)
        assert (c10 % 512 == 0).all() and len(x10) < len(x)
        # every 10x cell covers 20x patches; its feature is close to their mean
        parent = {tuple(r) for r in c // 512 * 512}
        assert parent == {tuple(r) for r in c10}
        r0 = c10[0]
        kids = ((c // 512 * 512) == r0).all(1)
        assert np.linalg.norm(x10[0] - x[kids].mean(0)) < np.linalg.norm(x10[0] - x.mean(0)) + 1e-6
    assert np.mean(coherent) > 0.9


def test_clinical_gdc_format(cohort):
    clin = _read_clinical(cohort["clinical"])
    assert list(clin.columns) == GDC_COLUMNS
    assert clin.case_submitter_id.is_unique
    projects = set(clin.project_id)
    assert projects <= {"TCGA-BRCA", "TCGA-LUAD", "TCGA-LUSC", "TCGA-KIRP", "TCGA-KIRC", "TCGA-KICH", "TCGA-BLCA"}
    assert {"TCGA-LUAD", "TCGA-LUSC", "TCGA-KIRP", "TCGA-KIRC", "TCGA-KICH"} <= projects
    assert (clin == "'--").any().any()
    missing_stage = clin.ajcc_pathologic_stage == "'--"
    assert 1 <= missing_stage.sum() < 0.15 * len(clin)
    assert clin.loc[~missing_stage, "ajcc_pathologic_stage"].str.match(r"^Stage (IV|III|II|I)[ABC]?$").all()
    dead = clin.vital_status == "Dead"
    assert set(clin.vital_status) == {"Dead", "Alive"}
    assert (clin.loc[dead, "days_to_death"] != "'--").all() and (clin.loc[~dead, "days_to_death"] == "'--").all()
    assert (clin.loc[~dead, "days_to_last_follow_up"].astype(int) > 0).all()
    # diagnoses are GDC strings that the Table 4 grouping covers, including rare-set ones
    truth = pd.read_csv(cohort["truth"]).set_index("case_id")
    site = truth.loc[clin.case_submitter_id, "site"].to_numpy()
    assert all((s, d) in DIAGNOSIS_CLASS for s, d in zip(site, clin.primary_diagnosis))
    assert "Mucinous adenocarcinoma" in set(clin.primary_diagnosis) or truth.rare.sum() > 0
    assert truth.rare.sum() >= 2
    # class imbalance: majority class of BRCA well above the minority
    counts = truth[(truth.site == "BRCA") & ~truth.rare].true_subtype.value_counts()
    assert counts.iloc[0] >= 2 * counts.iloc[-1]


def test_expression_gmt_reports(cohort):
    expr = pd.read_csv(cohort["expression"], sep="\t", index_col=0)
    assert expr.index.name == "sample" and expr.index.is_unique
    assert all(SAMPLE_RE.match(c) for c in expr.columns)
    assert expr.to_numpy().dtype == float and 0 < expr.to_numpy().mean() < 16  # log2 scale
    cases = {c[:12] for c in expr.columns}
    truth = pd.read_csv(cohort["truth"]).set_index("case_id")
    assert cases == set(truth.index[truth.has_expression]) and (~truth.has_expression).sum() >= 1
    two = cohort["summary"]["two_sample_case"]
    assert f"{two}-01" in expr.columns and f"{two}-11" in expr.columns
    assert list(expr.columns).index(f"{two}-11") < list(expr.columns).index(f"{two}-01")

    lines = Path(cohort["gene_sets"]).read_text().splitlines()
    assert 24 <= len(lines) <= 48
    gmt = {ln.split("\t")[0]: ln.split("\t")[2:] for ln in lines}
    assert all(10 <= len(g) <= 40 and len(set(g)) == len(g) for g in gmt.values())
    gmt_genes = {g for gs in gmt.values() for g in gs}
    absent = gmt_genes - set(expr.index)
    assert 1 <= len(absent) <= 10 and sorted(absent) == cohort["summary"]["genes_absent_from_expression"]
    assert set(expr.index) - gmt_genes  # expression also has genes in no pathway
    assert all(re.match(r"^[A-Z][A-Z0-9]+$", g) for g in gmt_genes)

    rep = pd.read_csv(cohort["reports"])
    assert list(rep.columns) == ["case_id", "text"] and rep.case_id.is_unique
    assert 0.75 * len(truth) <= len(rep) < len(truth)
    clin = _read_clinical(cohort["clinical"]).set_index("case_submitter_id")
    for case, text in rep.head(20).itertuples(index=False):
        assert clin.loc[case, "primary_diagnosis"] in text
        assert SITES[truth.loc[case, "site"]].location in text
        st = clin.loc[case, "ajcc_pathologic_stage"]
        assert (st in text) if st != "'--" else ("not reported" in text)


def test_multi_slide_patients_and_events(cohort):
    truth = pd.read_csv(cohort["truth"])
    slides = pd.read_csv(Path(cohort["out"]) / "truth_slides.csv")
    per_case = slides.groupby("case_id").size()
    assert (per_case >= 2).sum() >= 5 and per_case.max() <= 3
    assert (per_case.reindex(truth.case_id).to_numpy() == truth.n_slides.to_numpy()).all()
    assert 0.30 <= truth.event.mean() <= 0.60
    for site, grp in truth.groupby("site"):
        assert 0.2 <= grp.event.mean() <= 0.7, site
    clin = _read_clinical(cohort["clinical"]).set_index("case_submitter_id").loc[truth.case_id]
    assert ((clin.vital_status == "Dead").to_numpy().astype(int) == truth.event.to_numpy()).all()


# ------------------------------------------------------------------------------------------- determinism


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path):
    kw = dict(patients=8, patches=(8, 20), sites=("BRCA", "RCC"), ood_sites=("RCC",))
    a = make_synthetic(tmp_path / "a", seed=5, **kw)
    b = make_synthetic(tmp_path / "b", seed=5, **kw)
    c = make_synthetic(tmp_path / "c", seed=6, **kw)
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db and len(da) > 10
    assert a["oracle_c_index"] == b["oracle_c_index"]
    assert da["clinical.tsv"] != dc["clinical.tsv"] and da["expression.tsv"] != dc["expression.tsv"]
    assert c["summary"] != a["summary"] or da != dc


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path, sites=("BRCA", "XYZ"))
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path, sites=("BRCA",), ood_sites=("BLCA",))
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path, patches=(10, 5))


def test_other_sites_and_uuid_names(tmp_path):
    r = make_synthetic(tmp_path, sites=("COADREAD", "GBMLGG"), ood_sites=(), patients=12, patches=(8, 12),
                       secondary=False, slide_uuid_suffix=True)
    clin = _read_clinical(r["clinical"])
    assert set(clin.project_id) <= {"TCGA-COAD", "TCGA-READ", "TCGA-GBM", "TCGA-LGG"}
    gbm = clin.project_id.isin(["TCGA-GBM", "TCGA-LGG"])
    assert (clin.loc[gbm, "ajcc_pathologic_stage"] == "'--").all()  # no AJCC staging for gliomas
    stems = [p.stem for p in Path(r["features"]).glob("*.h5")]
    assert stems and all(re.match(r"^TCGA-\w\w-\w{4}-01Z-00-DX\d\.[0-9A-F]{8}-([0-9A-F]{4}-){3}[0-9A-F]{12}$", s)
                         for s in stems)
    assert r["features_secondary"] is None and not (tmp_path / "features_10x").exists()


# ------------------------------------------------------------------------------------------- planted signal


def test_subtype_visible_in_slides_and_expression(cohort):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    truth = pd.read_csv(cohort["truth"]).set_index("case_id")
    slides = pd.read_csv(Path(cohort["out"]) / "truth_slides.csv")
    pooled = _pooled_features(Path(cohort["features"]), slides)
    expr = pd.read_csv(cohort["expression"], sep="\t", index_col=0)
    e = expr[[c for c in expr.columns if c.endswith("-01")]].T
    e.index = [c[:12] for c in e.index]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    for site in cohort["sites"]:
        lab = truth[(truth.site == site) & (truth.subtype_index >= 0)]
        n_cls = lab.subtype_index.nunique()
        chance = 1.0 / n_cls
        for x in (pooled.loc[lab.index], e.loc[e.index.intersection(lab.index)]):
            y = lab.loc[x.index, "subtype_index"]
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
            bacc = cross_val_score(clf, x.to_numpy(), y.to_numpy(), cv=cv, scoring="balanced_accuracy").mean()
            assert bacc > chance + 0.25, (site, bacc)


def test_ood_site_is_shifted(cohort):
    truth = pd.read_csv(cohort["truth"]).set_index("case_id")
    slides = pd.read_csv(Path(cohort["out"]) / "truth_slides.csv")
    pooled = _pooled_features(Path(cohort["features"]), slides)
    site = truth.loc[pooled.index, "site"]
    means = pooled.groupby(site.to_numpy()).mean()
    ind = [s for s in cohort["sites"] if s not in cohort["ood_sites"]]
    d_ood = np.linalg.norm(means.loc["BLCA"] - means.loc[ind].mean())
    d_ind = max(np.linalg.norm(means.loc[s] - means.loc[[t for t in ind if t != s]].mean()) for s in ind)
    assert d_ood > 1.3 * d_ind


def test_oracle_c_index(cohort):
    from lifelines.utils import concordance_index

    truth = pd.read_csv(cohort["truth"])
    for site, grp in truth.groupby("site"):
        oracle = cohort["oracle_c_index"][site]
        assert oracle > 0.72, (site, oracle)
        ll = concordance_index(grp.survival_months, -grp.risk, grp.event)
        assert ll == pytest.approx(oracle, abs=1e-4)  # truth.csv rounds months and risk; the order survives


def test_truth_json_oracle_is_c_index_of_truth_csv(cohort):
    """`modaltune synth` (truth.json) and `modaltune demo` (c_index on truth.csv) agree on the oracle,
    tied event/censoring times included."""
    truth = pd.read_csv(cohort["truth"])
    meta = json.loads(Path(cohort["truth_json"]).read_text())
    for site, grp in truth.groupby("site"):
        expected = c_index(grp.survival_months.to_numpy(), grp.event.to_numpy(), grp.risk.to_numpy())
        assert meta["oracle_c_index"][site] == round(expected, 4), site


def test_each_modality_alone_is_weaker_than_all_three(big):
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    truth = pd.read_csv(big["truth"]).set_index("case_id")
    clin = _read_clinical(big["clinical"]).set_index("case_submitter_id").loc[truth.index]
    df = pd.DataFrame({
        "site": truth.site,
        "stage": clin.ajcc_pathologic_stage.map(lambda s: _stage_number(s) if s != "'--" else np.nan),
        "pathway": _pathway_score(big["expression"], big["gene_sets"], big["truth_json"]),
        "morphology": truth.morph_fraction,
        "time": pd.to_numeric(clin.days_to_death.where(clin.days_to_death != "'--", clin.days_to_last_follow_up))
        / 30.44,
        "event": (clin.vital_status == "Dead").astype(int),
    }).dropna()
    assert len(df) > 600
    assert 0.30 <= df.event.mean() <= 0.60

    def c_index(covariates):
        cph = CoxPHFitter(penalizer=0.1)
        cph.fit(df[[*covariates, "time", "event", "site"]], "time", "event", strata=["site"])
        risk = cph.predict_partial_hazard(df[covariates])
        return np.mean([concordance_index(g.time, -risk[g.index], g.event) for _, g in df.groupby("site")])

    combined = c_index(["stage", "pathway", "morphology"])
    singles = {c: c_index([c]) for c in ("stage", "pathway", "morphology")}
    assert combined > 0.72
    for name, value in singles.items():
        assert 0.55 < value < combined - 0.05, (name, value, combined)


def test_rewrite_replaces_stale_slides_and_protects_foreign_files(tmp_path):
    kw = dict(patients=4, patches=(4, 8), sites=("BLCA",), ood_sites=())
    make_synthetic(tmp_path / "c", seed=1, **kw)
    r = make_synthetic(tmp_path / "c", seed=2, **kw)
    slides = pd.read_csv(tmp_path / "c" / "truth_slides.csv").slide_id
    assert sorted(p.stem for p in Path(r["features"]).glob("*.h5")) == sorted(slides)
    foreign = tmp_path / "d" / "features_20x"
    foreign.mkdir(parents=True)
    (foreign / "mine.h5").write_bytes(b"")
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path / "d", **kw)
    assert (foreign / "mine.h5").exists()
