"""Tests of data.formats: every reader on small files written here, and every bad-input error."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.data.formats import (
    DAYS_PER_MONTH,
    MISSING_TOKENS,
    FeatureFile,
    feature_shape,
    is_missing,
    list_feature_files,
    read_clinical,
    read_features,
    read_gmt,
    read_reports,
    read_slide_case_table,
    sample_type_code,
    tcga_case_id,
)
from modaltune.data.formats.ids import names, strip_slide_ext
from modaltune.errors import InputError, InputWarning

E = "'--"


def feats(n=4, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def grid(n):
    return np.stack([np.arange(n) * 256, np.zeros(n)], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# ids


def test_tcga_case_id():
    assert tcga_case_id("TCGA-A2-A0T2-01A-11R-A084-07") == "TCGA-A2-A0T2"
    assert tcga_case_id("  tcga-a2-a0t2-01Z-00-DX1 ") == "TCGA-A2-A0T2"
    assert tcga_case_id("TCGA.A2.A0T2.01") == "TCGA-A2-A0T2"
    assert tcga_case_id("TCGA-A2-A0T2") == "TCGA-A2-A0T2"
    assert tcga_case_id(" patient_7 ") == "patient_7"
    assert tcga_case_id("slideA") == "slideA"
    assert sample_type_code("TCGA-A2-A0T2-11A") == 11 and sample_type_code("TCGA-A2-A0T2") is None


# ----------------------------------------------------------------------------------------------
# features


def test_read_h5_trident(tmp_path, write_h5):
    x = feats(5, 3)
    p = write_h5(tmp_path / "TCGA-A2-A0T2-01Z-00-DX1.h5", x, grid(5), attrs={"encoder": "gigapath"},
                 coord_attrs={"patch_size_level0": 512, "name": b"slide"})
    ff = read_features(p)
    assert isinstance(ff, FeatureFile)
    assert ff.slide_id == "TCGA-A2-A0T2-01Z-00-DX1" and ff.path == p
    assert ff.features.dtype == np.float32 and ff.features.shape == (5, 3)
    np.testing.assert_array_equal(ff.features, x)
    assert ff.coords.dtype == np.int64 and ff.coords[3].tolist() == [768, 0]
    assert ff.attrs["encoder"] == "gigapath" and ff.attrs["patch_size_level0"] == 512 and ff.attrs["name"] == "slide"
    assert feature_shape(p) == (5, 3)


def test_read_h5_squeezes_batch_dim_and_no_coords(tmp_path, write_h5):
    x = feats(4, 6).astype(np.float16)
    p = write_h5(tmp_path / "s.h5", x[None], coords=grid(4)[None])
    ff = read_features(p)
    assert ff.features.shape == (4, 6) and ff.features.dtype == np.float32 and ff.coords.shape == (4, 2)
    assert feature_shape(p) == (4, 6)
    q = write_h5(tmp_path / "q.h5", feats(2, 6))
    assert read_features(q).coords is None


def test_read_pt_tensor_and_dict(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.randn(7, 5)
    torch.save(x, tmp_path / "a.pt")
    ff = read_features(tmp_path / "a.pt")
    assert ff.slide_id == "a" and ff.coords is None and ff.features.shape == (7, 5)
    np.testing.assert_allclose(ff.features, x.numpy())
    torch.save({"features": x.to(torch.bfloat16), "coords": torch.tensor(grid(7))}, tmp_path / "b.pt")
    ff = read_features(tmp_path / "b.pt")
    assert ff.features.dtype == np.float32 and ff.coords.tolist()[1] == [256, 0]
    assert feature_shape(tmp_path / "b.pt") == (7, 5)
    torch.save({"coords": torch.zeros(3, 2)}, tmp_path / "c.pt")
    with pytest.raises(InputError, match="no 'features'.*c.pt"):
        read_features(tmp_path / "c.pt")


def test_corrupt_and_missing_features(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match="broken.h5"):
        read_features(bad)
    with pytest.raises(InputError, match="broken.h5"):
        feature_shape(bad)
    badpt = tmp_path / "broken.pt"
    badpt.write_bytes(b"garbage")
    with pytest.raises(InputError, match="broken.pt"):
        read_features(badpt)
    with h5py.File(tmp_path / "nofeat.h5", "w") as f:
        f.create_dataset("coords", data=grid(3))
    with pytest.raises(InputError, match=r"no 'features'.*\['coords'\].*nofeat.h5"):
        read_features(tmp_path / "nofeat.h5")


def test_bad_feature_values(tmp_path, write_h5):
    x = feats(5, 3)
    x[1, 0], x[3, 2], x[3, 1] = np.nan, np.inf, -np.inf
    p = write_h5(tmp_path / "nan.h5", x)
    with pytest.raises(InputError, match=r"NaN/inf: 3 value\(s\) in 2 patch\(es\).*nan.h5.*fix: re-extract"):
        read_features(p)
    with pytest.raises(InputError, match=r"2-D.*\(2, 3, 4\).*ndim.h5"):
        read_features(write_h5(tmp_path / "ndim.h5", np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(InputError, match="2-D.*ndim.h5"):
        feature_shape(tmp_path / "ndim.h5")
    with pytest.raises(InputError, match="empty bag.*empty.h5"):
        read_features(write_h5(tmp_path / "empty.h5", np.zeros((0, 3), np.float32)))
    assert feature_shape(tmp_path / "empty.h5") == (0, 3)  # header only; the caller checks emptiness
    with pytest.raises(InputError, match=r"'coords' shape \(4, 2\).*5 patches.*mismatch.h5"):
        read_features(write_h5(tmp_path / "mismatch.h5", feats(5, 3), grid(4)))


def test_list_feature_files(tmp_path, write_h5):
    d = tmp_path / "f"
    d.mkdir()
    write_h5(d / "s2.h5", feats())
    write_h5(d / "s1.h5", feats())
    (d / "notes.txt").write_text("x")
    files = list_feature_files(d)
    assert list(files) == ["s1", "s2"] and files["s1"] == d / "s1.h5"
    pytest.importorskip("torch").save(pytest.importorskip("torch").zeros(2, 3), d / "s1.pt")
    with pytest.raises(InputError, match="s1.h5 and s1.pt"):
        list_feature_files(d)
    with pytest.raises(InputError, match="not found.*missing_dir"):
        list_feature_files(tmp_path / "missing_dir")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="no .h5/.pt.*emptydir"):
        list_feature_files(tmp_path / "emptydir")


# ----------------------------------------------------------------------------------------------
# clinical

GDC = ["case_id", "case_submitter_id", "project_id", "primary_diagnosis", "ajcc_pathologic_stage",
       "ajcc_pathologic_t", "ajcc_pathologic_n", "ajcc_pathologic_m", "vital_status", "days_to_death",
       "days_to_last_follow_up", "age_at_index", "treatment_type"]


def gdc_row(case, vital="Alive", death=E, follow="304.4", stage="Stage IIA", treatment="Surgery", diag=None):
    return [f"uuid-{case}", case, "TCGA-BRCA", diag or "Infiltrating duct carcinoma, NOS", stage, "T2", "N0", "M0",
            vital, death, follow, "55", treatment]


def test_read_clinical_gdc(tmp_path):
    rows = [gdc_row("TCGA-A1-0001"), gdc_row("TCGA-A1-0001", treatment="Radiation"),  # one row per treatment
            gdc_row("TCGA-A1-0002", vital="Dead", death="60.88", follow=E, stage=E),
            gdc_row("TCGA-A1-0003", vital="Not Reported", follow=E)]
    p = tmp_path / "clinical.tsv"
    pd.DataFrame(rows, columns=GDC).to_csv(p, sep="\t", index=False)
    with pytest.warns(InputWarning, match=r"1 of 3 patient\(s\) have no usable survival.*TCGA-A1-0003"):
        df = read_clinical(p)
    assert list(df.columns) == ["case_id", "project_id", "primary_diagnosis", "stage", "t", "n", "m", "vital_status",
                                "days_to_death", "days_to_last_follow_up", "survival_months", "event",
                                "oncotree_code", "age"]
    assert df["case_id"].tolist() == ["TCGA-A1-0001", "TCGA-A1-0002", "TCGA-A1-0003"]  # barcode, not uuid
    r = df.set_index("case_id")
    assert r.loc["TCGA-A1-0001", "survival_months"] == pytest.approx(10.0) and r.loc["TCGA-A1-0001", "event"] == 0
    assert r.loc["TCGA-A1-0002", "survival_months"] == pytest.approx(60.88 / DAYS_PER_MONTH)
    assert r.loc["TCGA-A1-0002", "event"] == 1
    assert pd.isna(r.loc["TCGA-A1-0002", "stage"]) and r.loc["TCGA-A1-0001", "stage"] == "Stage IIA"  # '-- -> NaN
    assert pd.isna(r.loc["TCGA-A1-0003", "survival_months"]) and pd.isna(r.loc["TCGA-A1-0003", "event"])
    assert pd.isna(r.loc["TCGA-A1-0003", "vital_status"]) and r.loc["TCGA-A1-0001", "age"] == 55
    assert df["oncotree_code"].isna().all()
    assert df.attrs["no_survival"] == ["TCGA-A1-0003"]


def test_read_clinical_conflicting_duplicates(tmp_path):
    rows = [gdc_row("TCGA-A1-0001"), gdc_row("TCGA-A1-0002"),
            gdc_row("TCGA-A1-0002", diag="Lobular carcinoma, NOS")]
    p = tmp_path / "clin_conflict.tsv"
    pd.DataFrame(rows, columns=GDC).to_csv(p, sep="\t", index=False)
    with pytest.raises(InputError, match=r"conflicting rows.*TCGA-A1-0002.*primary_diagnosis.*clin_conflict.tsv"):
        read_clinical(p)


def test_read_clinical_follow_up_differs_takes_latest(tmp_path):
    rows = [gdc_row("TCGA-A1-0001", follow="100"), gdc_row("TCGA-A1-0001", follow="304.4")]
    p = tmp_path / "c.tsv"
    pd.DataFrame(rows, columns=GDC).to_csv(p, sep="\t", index=False)
    with pytest.warns(InputWarning, match="days_to_last_follow_up.*TCGA-A1-0001"):
        df = read_clinical(p)
    assert len(df) == 1 and df.loc[0, "survival_months"] == pytest.approx(10.0)


def test_read_clinical_survpath_censorship_inverted(tmp_path):
    p = tmp_path / "survpath.csv"
    pd.DataFrame({"case_id": ["TCGA-B1-0001", "TCGA-B1-0001", "TCGA-B1-0002"],
                  "slide_id": ["TCGA-B1-0001-01Z-00-DX1.svs", "TCGA-B1-0001-01Z-00-DX2.svs",
                               "TCGA-B1-0002-01Z-00-DX1.svs"],
                  "survival_months": [12.5, 12.5, 40.0], "censorship": [1, 1, 0],
                  "oncotree_code": ["IDC", "IDC", "ILC"]}).to_csv(p, index=False)
    df = read_clinical(p)
    assert len(df) == 2 and list(df.columns[:2]) == ["case_id", "slide_id"]
    r = df.set_index("case_id")
    assert r.loc["TCGA-B1-0001", "event"] == 0 and r.loc["TCGA-B1-0002", "event"] == 1  # event = 1 - censorship
    assert r.loc["TCGA-B1-0001", "survival_months"] == 12.5 and r.loc["TCGA-B1-0002", "oncotree_code"] == "ILC"
    assert r.loc["TCGA-B1-0001", "slide_id"] == "TCGA-B1-0001-01Z-00-DX1;TCGA-B1-0001-01Z-00-DX2"
    assert df.attrs["slide_case"]["TCGA-B1-0001-01Z-00-DX2"] == "TCGA-B1-0001"


def test_read_clinical_column_mapping_and_sniffed_separator(tmp_path):
    p = tmp_path / "mine.txt"  # tab-separated despite the extension
    pd.DataFrame({"Patient": ["P1", "P2"], "Histology": ["Lobular carcinoma", "x"], "Status": ["Dead", "Alive"],
                  "DaysDeath": ["304.4", ""], "DaysFU": ["", "608.8"]}).to_csv(p, sep="\t", index=False)
    df = read_clinical(p, columns={"case_id": "Patient", "primary_diagnosis": "Histology",
                                   "vital_status": "Status", "days_to_death": "DaysDeath",
                                   "days_to_last_follow_up": "DaysFU"})
    assert df["case_id"].tolist() == ["P1", "P2"] and df.loc[0, "primary_diagnosis"] == "Lobular carcinoma"
    assert df["event"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(df["survival_months"], [10.0, 20.0])
    with pytest.raises(InputError, match="'Nope'.*mine.txt"):
        read_clinical(p, columns={"case_id": "Nope"})
    with pytest.raises(InputError, match="unknown key.*mine.txt"):
        read_clinical(p, columns={"patient": "Patient"})


def test_read_clinical_errors(tmp_path):
    with pytest.raises(InputError, match="not found.*absent.tsv"):
        read_clinical(tmp_path / "absent.tsv")
    p = tmp_path / "nocase.csv"
    pd.DataFrame({"foo": [1], "bar": [2]}).to_csv(p, index=False)
    with pytest.raises(InputError, match="no case id column.*nocase.csv"):
        read_clinical(p)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.*empty.csv"):
        read_clinical(tmp_path / "empty.csv")


# ----------------------------------------------------------------------------------------------
# gene sets, reports, slide tables


def test_read_gmt(tmp_path):
    p = tmp_path / "sets.gmt"
    p.write_text("HALLMARK_A\thttp://x\tTP53\tEGFR\tTP53\n\nHALLMARK_B\tdesc\tMYC\t\n")
    assert read_gmt(p) == {"HALLMARK_A": ["TP53", "EGFR"], "HALLMARK_B": ["MYC"]}
    bad = tmp_path / "bad.gmt"
    bad.write_text("A desc G1 G2\n")
    with pytest.raises(InputError, match="line 1.*bad.gmt"):
        read_gmt(bad)
    dup = tmp_path / "dup.gmt"
    dup.write_text("A\td\tG1\nA\td\tG2\n")
    with pytest.raises(InputError, match="'A' appears twice.*dup.gmt"):
        read_gmt(dup)


def test_read_reports(tmp_path):
    p = tmp_path / "reports.tsv"
    pd.DataFrame({"case_submitter_id": ["TCGA-A1-0001", "TCGA-A1-0002"],
                  "report": ["Invasive ductal carcinoma.", ""]}).to_csv(p, sep="\t", index=False)
    rep = read_reports(p)
    assert list(rep.columns) == ["case_id", "text"]
    assert rep["case_id"].tolist() == ["TCGA-A1-0001", "TCGA-A1-0002"] and rep["text"].tolist()[1] == ""
    q = tmp_path / "tcga_reports.csv"
    pd.DataFrame({"patient_filename": ["TCGA-BP-5195.25c0b433"], "text": ["x"]}).to_csv(q, index=False)
    assert read_reports(q)["case_id"].tolist() == ["TCGA-BP-5195"]
    bad = tmp_path / "rep_bad.csv"
    pd.DataFrame({"case_id": ["a"], "body": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="no text column.*rep_bad.csv"):
        read_reports(bad)


def test_read_slide_case_table(tmp_path):
    p = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["slideA.svs", "slideB", "TCGA-A1-0001-01Z-00-DX1"],
                  "case_id": ["P1", "P1", "TCGA-A1-0001-01"]}).to_csv(p, index=False)
    assert read_slide_case_table(p) == {"slideA": "P1", "slideB": "P1", "TCGA-A1-0001-01Z-00-DX1": "TCGA-A1-0001"}
    bad = tmp_path / "slides_bad.csv"
    pd.DataFrame({"slide_id": ["s", "s"], "case_id": ["P1", "P2"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="slide s.*two cases.*slides_bad.csv"):
        read_slide_case_table(bad)


def test_no_warning_for_clean_inputs(tmp_path):
    p = tmp_path / "c.tsv"
    pd.DataFrame([gdc_row("TCGA-A1-0001")], columns=GDC).to_csv(p, sep="\t", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        read_clinical(p)


# ----------------------------------------------------------------------------------------------
# shared ground: missing values, slide names, listings


def test_missing_tokens_cover_every_former_home():
    # the union of the sets formats, labels and the cohort writer each used to keep
    former = {"", "'--", "--", "-", "na", "n/a", "nan", "none", "null", "not reported", "unknown", "not available",
              "[not available]", "[not applicable]", "[unknown]", "[not evaluated]", "[discrepancy]", "[completed]",
              "not applicable"}
    assert former <= MISSING_TOKENS
    assert all(is_missing(v) for v in (None, float("nan"), "  ", "'--", "NaN", "None", "Not Reported", "[Unknown]"))
    assert not any(is_missing(v) for v in ("Stage I", "0", 0, 0.0, "N0"))


def test_strip_slide_ext_and_names():
    assert strip_slide_ext("TCGA-A2-A0T2-01Z-00-DX1.SVS") == "TCGA-A2-A0T2-01Z-00-DX1"
    assert strip_slide_ext("slide.h5") == "slide" and strip_slide_ext("slide.v2") == "slide.v2"
    assert names(["a", "b"]) == "a, b"
    assert names(range(12)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more"
    assert names(range(5), limit=2) == "0, 1 and 3 more"
