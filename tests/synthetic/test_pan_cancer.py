"""Tests of the pan-cancer synthetic cohort (MICE): formats, prepare, determinism, planted signals.

Also pins ``make_synthetic``'s output (the ModalTune demo depends on it) with a fingerprint computed
before the shared writers were factored out of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.data.prepare import prepare_cohort
from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.metrics import c_index
from modaltune.synthetic import PAN_CANCER_SITES, make_pan_cancer, make_synthetic, oracle_c_index
from modaltune.synthetic.report_words import HIGH_RISK_WORDS

#: Fingerprint of make_synthetic(seed=0, patients=12, patches=(8, 24)): text files byte for byte, h5 files
#: by their arrays and attributes. Computed with the code before this change (and with the older
#: modaltune.data.synthetic); a different value means make_synthetic's output changed.
MAKE_SYNTHETIC_FINGERPRINT = "d4609b726ce7afbe0b33685dd642da82ff0b64e0433f697f27b8f97e835b103a"

GDC_OS = ["case_submitter_id", "project_id", "primary_diagnosis", "ajcc_pathologic_stage", "vital_status",
          "days_to_death", "days_to_last_follow_up", "age_at_index"]
SMALL_SITES = ("BRCA", "LUAD", "LUSC", "KIRC", "KIRP", "COAD")


def _fingerprint(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        h.update(str(p.relative_to(out)).encode())
        if p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                for k in ("features", "coords"):
                    h.update(np.ascontiguousarray(f[k][:]).tobytes())
                for k in sorted(f.attrs):
                    h.update(f"{k}={f.attrs[k]}".encode())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


def _mean_feature(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["features"][:].mean(0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """All 8 default sites, 16 patients each, tiny slides; 10x written too."""
    out = tmp_path_factory.mktemp("pan") / "small"
    return make_pan_cancer(out, seed=3, patients=16, patches=(8, 16), dim=8, secondary=True)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Six sites of 120 patients with tiny slides, for stable statistics of the planted signals."""
    out = tmp_path_factory.mktemp("pan") / "big"
    return make_pan_cancer(out, seed=1, sites=SMALL_SITES, patients=120, patches=(4, 8), dim=8)


def test_make_synthetic_output_unchanged(tmp_path):
    make_synthetic(tmp_path / "syn", seed=0, patients=12, patches=(8, 24))
    assert _fingerprint(tmp_path / "syn") == MAKE_SYNTHETIC_FINGERPRINT


def test_layout_and_formats(small):
    out = small["out"]
    for key in ("clinical", "expression", "gene_sets", "reports", "truth", "truth_slides", "truth_json"):
        assert small[key].is_file(), key
    clin = pd.read_csv(small["clinical"], sep="\t", dtype=str, keep_default_na=False)
    assert list(clin.columns[:3]) == GDC_OS[:3] and set(GDC_OS) <= set(clin.columns)
    assert {"progression", "days_to_progression"} <= set(clin.columns)
    assert set(clin.project_id) == {f"TCGA-{s}" for s in PAN_CANCER_SITES}
    truth = pd.read_csv(small["truth"])
    assert (truth.project_id == "TCGA-" + truth.site).all()
    assert (clin.vital_status == "Dead").sum() == truth.os_event.sum()
    # PFS: every patient has it, never longer than OS; an OS death is also a PFS event
    os_days = np.where(clin.vital_status == "Dead", clin.days_to_death, clin.days_to_last_follow_up).astype(int)
    pfs_days = clin.days_to_progression.astype(int).to_numpy()
    assert set(clin.progression) <= {"0", "1"} and (pfs_days <= os_days).all()
    assert (clin.progression.astype(int).to_numpy() >= (clin.vital_status == "Dead").to_numpy()).all()
    slides = pd.read_csv(small["truth_slides"])
    for sid in slides.slide_id[:5]:
        assert re.match(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-01Z-00-DX[12]$", sid)
        for mag, d in ((20, "features_20x"), (10, "features_10x")):
            with h5py.File(out / d / f"{sid}.h5", "r") as f:
                assert f["features"].shape[1] == 8 and f["coords"].shape == (f["features"].shape[0], 2)
                assert int(f.attrs["magnification"]) == mag
    per_patient = slides.groupby("case_id").n_patches_20x.sum()
    assert per_patient.between(8, 16).all()
    meta = json.loads(small["truth_json"].read_text())
    assert meta["endpoints"]["pfs"] == ["progression", "days_to_progression"]
    assert meta["shared_program"] in {ln.split("\t")[0] for ln in small["gene_sets"].read_text().splitlines()}


def test_missingness_kept_and_reported_by_prepare(small, tmp_path):
    truth = pd.read_csv(small["truth"])
    for _, t in truth.groupby("site"):
        assert (~t.has_expression).sum() == round(0.15 * 16) and (~t.has_report).sum() == round(0.12 * 16)
        assert (~t.has_expression & ~t.has_report).sum() >= 1
    assert not (~truth.has_wsi & ~truth.has_expression & ~truth.has_report).any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = prepare_cohort(tmp_path / "prepared", features=small["features"],
                                features_secondary=small["features_secondary"], clinical=small["clinical"],
                                expression=small["expression"], gene_sets=small["gene_sets"],
                                reports=small["reports"], grouping=small["grouping"])
    # the only warning: GMT genes deliberately absent from the matrix (no unknown site or diagnosis)
    assert [str(w.message) for w in caught if "genes dropped" not in str(w.message)] == []
    man = cohort.manifest.loc[truth.case_id]
    assert len(cohort.manifest) == len(truth) == 8 * 16
    assert (man.has_omics.to_numpy() == truth.has_expression.to_numpy()).all()
    assert (man.has_report.to_numpy() == truth.has_report.to_numpy()).all()
    assert (man.has_wsi.to_numpy() == truth.has_wsi.to_numpy()).all()
    assert (man.project_id.to_numpy() == truth.project_id.to_numpy()).all()  # one project per site, kept
    assert np.allclose(man.survival_months.to_numpy(), truth.os_months.to_numpy(), atol=1e-3)
    assert (man.event.to_numpy() == truth.os_event.to_numpy()).all()
    total = cohort.summary["total"]["modalities"]
    assert total["omics"] == truth.has_expression.sum() and total["report"] == truth.has_report.sum()
    assert total["no_modality"] == 0
    # today's site scheme merges LUAD/LUSC and KIRC/KIRP; the projects stay apart in project_id
    assert set(cohort.summary["sites"]) == {"BRCA", "NSCLC", "RCC", "COADREAD", "STAD", "HNSC"}
    assert cohort.meta["feature_dim"] == 8
    assert (man.subtype != "").sum() + man.rare.sum() == len(man)  # every patient has a class or is Rare-set


def test_same_seed_same_files(tmp_path):
    kw = dict(seed=5, sites=("BRCA", "STAD"), patients=6, patches=(4, 8), dim=4)
    a, b = make_pan_cancer(tmp_path / "a", **kw), make_pan_cancer(tmp_path / "b", **kw)
    assert _files(a["out"]) == _files(b["out"])
    c = make_pan_cancer(tmp_path / "c", **{**kw, "seed": 6})
    assert _files(c["out"])["clinical.tsv"] != _files(a["out"])["clinical.tsv"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown site"):
        make_pan_cancer(tmp_path, sites=("BRCA", "NSCLC"))
    with pytest.raises(ConfigError, match="duplicate"):
        make_pan_cancer(tmp_path, sites=("BRCA", "brca"))
    with pytest.raises(ConfigError, match="at least 4"):
        make_pan_cancer(tmp_path, patients={"BRCA": 2})
    with pytest.raises(ConfigError, match="frac_missing_report"):
        make_pan_cancer(tmp_path, frac_missing_report=1.5)
    with pytest.raises(ConfigError, match="risk_weights"):
        make_pan_cancer(tmp_path, risk_weights=(1.0, -1.0, 1.0))
    with pytest.raises(ConfigError, match="shared_factor"):
        make_pan_cancer(tmp_path, shared_factor=1.0)


def test_shared_factor_enters_every_modality_and_changes_nothing_else(tmp_path):
    """``shared_factor`` r: each factor becomes sqrt(1 - r^2) x + r c with the same x; who lacks what is unchanged."""
    kw = dict(seed=3, sites=("BRCA", "LUAD"), patients=60, patches=(4, 8), dim=8)
    plain, shared = make_pan_cancer(tmp_path / "plain", **kw), make_pan_cancer(tmp_path / "shared", shared_factor=0.8, **kw)
    t0, t1 = pd.read_csv(plain["truth"]), pd.read_csv(shared["truth"])
    kept = ["case_id", "site", "subtype", "has_wsi", "has_expression", "has_report", "n_slides", "stage_written"]
    pd.testing.assert_frame_equal(t0[kept], t1[kept])
    assert "shared_factor" not in t0 and "shared_factor" in t1
    factors = ["program_activity", "site_factor", "report_factor"]
    for col in factors:
        np.testing.assert_allclose(t1[col], 0.6 * t0[col] + 0.8 * t1["shared_factor"], atol=2e-6)
    upper = np.triu_indices(3, 1)
    assert (t1[factors].corr().to_numpy()[upper] > 0.4).all()          # expected r^2 = 0.64
    assert (np.abs(t0[factors].corr().to_numpy()[upper]) < 0.3).all()  # independent without it
    # the report's grade follows its factor, so the written grade now tracks the slide's factor too
    assert np.corrcoef(t1["grade"], t1["site_factor"])[0, 1] > 0.2
    assert json.loads(shared["truth_json"].read_text())["shared_factor"] == 0.8


def test_oracle_per_site_beats_every_single_component(big):
    meta = json.loads(big["truth_json"].read_text())
    oracle = meta["oracle_c_index"]["os"]["sites"]
    for site in SMALL_SITES:
        singles = [meta["ceiling_c_index"][k][site] for k in ("shared", "site", "report")]
        assert oracle[site] > 0.68, site
        assert max(singles) < oracle[site], site
        assert min(singles) > 0.52, site
    assert meta["oracle_c_index"]["os"]["overall"] > 0.68 and meta["oracle_c_index"]["pfs"]["overall"] > 0.65


def test_oracle_function_on_subsets(big):
    truth = pd.read_csv(big["truth"])
    full = oracle_c_index(big["out"])
    assert full == json.loads(big["truth_json"].read_text())["oracle_c_index"]["os"]
    fold = truth.case_id[::5]
    sub = oracle_c_index(big["truth"], fold, endpoint="pfs")
    t = truth.set_index("case_id").loc[fold]
    luad = t[t.site == "LUAD"]
    assert sub["sites"]["LUAD"] == round(c_index(luad.pfs_months, luad.pfs_event, luad.risk), 4)
    assert sub["n"]["LUAD"] == len(luad)
    with pytest.raises(InputError, match="not in the truth table"):
        oracle_c_index(truth, ["TCGA-XX-0000"])
    with pytest.raises(InputError, match="lacks column"):
        oracle_c_index(truth, endpoint="dss")


def test_shared_program_correlates_with_risk_in_every_site(big):
    meta = json.loads(big["truth_json"].read_text())
    truth = pd.read_csv(big["truth"]).set_index("case_id")
    expr = pd.read_csv(big["expression"], sep="\t", index_col=0).T
    expr.index = [c[:12] for c in expr.index]
    genes = [g for g in meta["shared_program_genes"] if g in expr.columns]
    other = [g for g in expr.columns if g not in set(genes)][: len(genes)]
    for site, t in truth.groupby("site"):
        e = expr.loc[expr.index.intersection(t.index)]
        z = (e - e.mean()) / e.std()
        risk = t.loc[z.index, "risk"]
        assert np.corrcoef(z[genes].mean(1), risk)[0, 1] > 0.25, site
        assert abs(np.corrcoef(z[other].mean(1), risk)[0, 1]) < 0.35, site


def test_site_morphology_follows_site_factor(big):
    truth = pd.read_csv(big["truth"])
    for site, t in truth[truth.has_wsi].groupby("site"):
        assert np.corrcoef(t.morph_fraction, t.site_factor)[0, 1] > 0.4, site
    # the aggressive prototype is the site's own: its direction (mean-feature shift with the abundance)
    # differs between sites
    slides = pd.read_csv(big["truth_slides"])
    slope = {}
    for site, grp in slides.groupby("site"):
        feats = np.stack([_mean_feature(big["features"] / f"{s}.h5") for s in grp.slide_id])
        x = grp.morph_fraction.to_numpy() - grp.morph_fraction.mean()
        slope[site] = (x @ (feats - feats.mean(0))) / (x @ x)
    cos = [abs(slope[a] @ slope[b]) / np.linalg.norm(slope[a]) / np.linalg.norm(slope[b])
           for i, a in enumerate(SMALL_SITES) for b in SMALL_SITES[i + 1:]]
    assert np.median(cos) < 0.6


def test_report_words_carry_risk(big):
    truth = pd.read_csv(big["truth"]).set_index("case_id")
    rep = pd.read_csv(big["reports"]).set_index("case_id")
    r = truth.loc[rep.index, "risk_report"]
    text = rep.text.str.lower()
    high = text.apply(lambda s: any(w in s for w in HIGH_RISK_WORDS))
    late = text.str.contains(r"\(stage (?:iii|iv)")
    lo, hi = r <= r.quantile(1 / 3), r >= r.quantile(2 / 3)
    assert high[hi].mean() > high[lo].mean() + 0.3
    assert late[hi].mean() > late[lo].mean() + 0.3
    # filler is neutral: report length barely tracks risk
    assert abs(np.corrcoef(text.str.len(), r)[0, 1]) < 0.3
