"""Tests of data.labels: Table 4 grouping, matching rule, YAML groupings, TNM wording, survival bins."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from modaltune.data.labels import (
    SITE_OF_PROJECT,
    Grouping,
    SiteGrouping,
    assign_bins,
    assign_subtype,
    default_grouping,
    fit_survival_bins,
    load_grouping,
    m_to_words,
    n_to_words,
    stage_to_words,
    t_to_words,
)
from modaltune.errors import InputError, InputWarning

# ----------------------------------------------------------------------------------------------
# grouping (ModalTune Table 4)


def test_site_of_project():
    assert SITE_OF_PROJECT["TCGA-LUSC"] == "NSCLC" and SITE_OF_PROJECT["TCGA-KICH"] == "RCC"
    assert SITE_OF_PROJECT["TCGA-LGG"] == "GBMLGG" and SITE_OF_PROJECT["TCGA-READ"] == "COADREAD"
    assert set(SITE_OF_PROJECT.values()) == {"BRCA", "NSCLC", "RCC", "GBMLGG", "COADREAD", "BLCA"}


def test_default_grouping_table4_classes_and_locations():
    g = default_grouping()
    classes = {s: sg.classes for s, sg in g.sites.items()}
    assert classes == {
        "BRCA": ["Infiltrating duct carcinoma", "Lobular carcinoma"],
        "GBMLGG": ["Glioblastoma", "Glioma"],
        "NSCLC": ["Lung adenocarcinoma", "Lung squamous cell carcinoma"],
        "RCC": ["Papillary renal cell carcinoma", "Renal clear cell carcinoma", "Chromophobe renal cell carcinoma"],
        "COADREAD": ["Colon adenocarcinoma", "Rectal adenocarcinoma"],
        "BLCA": ["Transitional cell carcinoma", "Papillary transitional cell carcinoma"],
    }
    loc = {s: sg.location for s, sg in g.sites.items()}
    assert loc == {"BRCA": "breast", "GBMLGG": "brain", "NSCLC": "lung", "RCC": "kidney",
                   "COADREAD": "colon/rectum", "BLCA": "bladder"}
    assert len(g.sites["BRCA"].rare) == 10 and g.sites["RCC"].rare == [] and g.sites["GBMLGG"].rare == []


@pytest.mark.parametrize("site,diag,expected", [
    ("BRCA", "Infiltrating duct carcinoma, NOS", ("Infiltrating duct carcinoma", 0, False)),
    ("BRCA", "lobular carcinoma", ("Lobular carcinoma", 1, False)),            # ", NOS" tolerant
    ("BRCA", "  LOBULAR CARCINOMA,NOS ", ("Lobular carcinoma", 1, False)),     # case/punctuation
    ("BRCA", "Infiltrating duct and lobular carcinoma", (None, None, True)),   # Rare-set
    ("BRCA", "Metaplastic carcinoma, NOS", (None, None, True)),
    ("BRCA", "Phyllodes tumor, malignant", (None, None, False)),               # unknown
    ("GBMLGG", "Glioblastoma", ("Glioblastoma", 0, False)),
    ("GBMLGG", "Astrocytoma, anaplastic", ("Glioma", 1, False)),
    ("GBMLGG", "Oligodendroglioma, NOS", ("Glioma", 1, False)),
    ("NSCLC", "Adenocarcinoma, NOS", ("Lung adenocarcinoma", 0, False)),
    ("NSCLC", "Adenocarcinoma with mixed subtypes", ("Lung adenocarcinoma", 0, False)),
    ("NSCLC", "Squamous cell carcinoma, keratinizing, NOS", ("Lung squamous cell carcinoma", 1, False)),
    ("NSCLC", "Squamous cell carcinoma, large cell, nonkeratinizing, NOS", ("Lung squamous cell carcinoma", 1, False)),
    ("NSCLC", "Bronchiolo-alveolar carcinoma, non-mucinous", (None, None, True)),
    ("NSCLC", "Basaloid squamous cell carcinoma", (None, None, True)),
    ("NSCLC", "Lung adenocarcinoma", ("Lung adenocarcinoma", 0, False)),       # class name itself
    ("RCC", "Papillary adenocarcinoma, NOS", ("Papillary renal cell carcinoma", 0, False)),
    ("RCC", "Clear cell adenocarcinoma, NOS", ("Renal clear cell carcinoma", 1, False)),
    ("RCC", "Renal cell carcinoma, chromophobe type", ("Chromophobe renal cell carcinoma", 2, False)),
    ("COADREAD", "Mucinous adenocarcinoma", (None, None, True)),
    ("COADREAD", "Adenocarcinoma in tubolovillous adenoma", (None, None, True)),
    ("BLCA", "Papillary transitional cell carcinoma", ("Papillary transitional cell carcinoma", 1, False)),
    ("BLCA", "Transitional cell carcinoma", ("Transitional cell carcinoma", 0, False)),
    ("UCEC", "Endometrioid adenocarcinoma, NOS", (None, None, False)),         # unknown site
    ("BRCA", None, (None, None, False)),
])
def test_assign_subtype(site, diag, expected):
    assert assign_subtype(default_grouping(), site, diag) == expected


def test_assign_subtype_uses_project_where_needed():
    g = default_grouping()
    adeno = "Adenocarcinoma, NOS"
    assert assign_subtype(g, "COADREAD", adeno, project="TCGA-COAD") == ("Colon adenocarcinoma", 0, False)
    assert assign_subtype(g, "COADREAD", adeno, project="tcga-read") == ("Rectal adenocarcinoma", 1, False)
    assert assign_subtype(g, "COADREAD", "Adenocarcinoma, NOS") == (None, None, False)  # ambiguous without project
    assert assign_subtype(g, "TCGA-READ", "Adenocarcinoma, NOS") == ("Rectal adenocarcinoma", 1, False)
    assert assign_subtype(g, "RCC", "Renal cell carcinoma, NOS", project="TCGA-KIRC")[1] == 1
    assert assign_subtype(g, "RCC", "Renal cell carcinoma, NOS", project="TCGA-KIRP")[1] == 0
    # a project-qualified string does not leak to another project
    assert assign_subtype(g, "COADREAD", "Adenocarcinoma, NOS", project="TCGA-BRCA") == (None, None, False)


def test_grouping_yaml_round_trip(tmp_path):
    g = default_grouping()
    p = tmp_path / "grouping.yaml"
    p.write_text(yaml.safe_dump(g.to_dict(), sort_keys=False))
    g2 = load_grouping(p)
    assert g2.to_dict() == g.to_dict()
    assert assign_subtype(g2, "COADREAD", "Adenocarcinoma, NOS", "TCGA-READ") == ("Rectal adenocarcinoma", 1, False)


def test_load_user_grouping_extends_default(tmp_path):
    p = tmp_path / "ucec.yaml"
    p.write_text(yaml.safe_dump({"extends": "default", "ucec": {
        "members": {"Endometrioid": ["Endometrioid adenocarcinoma, NOS"], "Serous": ["Serous cystadenocarcinoma, NOS"]},
        "rare": ["Clear cell adenocarcinoma, NOS"], "location": "uterus"}}))
    g = load_grouping(p)
    assert set(g.sites) == {"BRCA", "GBMLGG", "NSCLC", "RCC", "COADREAD", "BLCA", "UCEC"}
    assert g.sites["UCEC"].classes == ["Endometrioid", "Serous"] and g.sites["UCEC"].location == "uterus"
    assert assign_subtype(g, "UCEC", "serous cystadenocarcinoma") == ("Serous", 1, False)
    assert assign_subtype(g, "UCEC", "Clear cell adenocarcinoma, NOS") == (None, None, True)
    only = tmp_path / "only.yaml"
    only.write_text(yaml.safe_dump({"X": {"classes": ["a", "b"], "members": {"a": ["A1"], "b": ["B1"]},
                                          "location": "x"}}))
    assert set(load_grouping(only).sites) == {"X"}


def test_load_grouping_errors(tmp_path):
    with pytest.raises(InputError, match="not found.*nothere.yaml"):
        load_grouping(tmp_path / "nothere.yaml")
    bad = tmp_path / "twice.yaml"
    bad.write_text(yaml.safe_dump({"X": {"classes": ["a", "b"], "members": {"a": ["Foo, NOS"], "b": ["foo"]},
                                         "location": "x"}}))
    with pytest.raises(InputError, match="two classes.*twice.yaml"):
        load_grouping(bad)
    undeclared = tmp_path / "undeclared.yaml"
    undeclared.write_text(yaml.safe_dump({"X": {"classes": ["a"], "members": {"b": ["B"]}, "location": "x"}}))
    with pytest.raises(InputError, match=r"\['b'\].*undeclared.yaml"):
        load_grouping(undeclared)
    rare_and_class = tmp_path / "rc.yaml"
    rare_and_class.write_text(yaml.safe_dump({"X": {"classes": ["a"], "members": {"a": ["A"]}, "rare": ["a"],
                                                    "location": "x"}}))
    with pytest.raises(InputError, match="rare list.*rc.yaml"):
        load_grouping(rare_and_class)
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("X: [unclosed\n")
    with pytest.raises(InputError, match="YAML.*syntax.yaml"):
        load_grouping(syntax)
    noloc = tmp_path / "noloc.yaml"
    noloc.write_text(yaml.safe_dump({"X": {"classes": ["a"], "members": {"a": ["A"]}}}))
    with pytest.warns(InputWarning, match="no 'location'"):
        load_grouping(noloc)


def test_default_grouping_is_the_packaged_yaml_and_fresh_each_call():
    import importlib.resources

    text = importlib.resources.files("modaltune").joinpath("resources").joinpath("grouping_table4.yaml").read_text()
    assert default_grouping().to_dict() == yaml.safe_load(text)
    g = default_grouping()
    g.sites["BRCA"].classes.append("Changed")
    g.sites.pop("RCC")
    assert "Changed" not in default_grouping().sites["BRCA"].classes and "RCC" in default_grouping().sites


def test_grouping_object_is_usable_directly():
    g = Grouping({"S": SiteGrouping(classes=["c0"], members={"c0": ["Thing"]}, location="somewhere")})
    assert assign_subtype(g, "s", "THING") == ("c0", 0, False)


# ----------------------------------------------------------------------------------------------
# stage / TNM wording (Sec. 9)


@pytest.mark.parametrize("raw,words", [
    ("Stage I", "stage one"), ("Stage IA", "stage one"), ("Stage IB", "stage one"),
    ("Stage IIA", "stage two"), ("Stage IIB", "stage two"), ("Stage IIIC", "stage three"),
    ("Stage IV", "stage four"), ("Stage IVB", "stage four"), ("stage 0", "stage zero"), ("Stage 2", "stage two"),
    ("stage three", "stage three"), ("Stage X", None), ("'--", None), ("Not Reported", None), (None, None),
    (float("nan"), None), ("garbage", None),
])
def test_stage_to_words(raw, words):
    assert stage_to_words(raw) == words


@pytest.mark.parametrize("raw,words", [
    ("T1", "tumor stage one"), ("T1a", "tumor stage one"), ("T1b", "tumor stage one"), ("T1c", "tumor stage one"),
    ("T2a", "tumor stage two"), ("pT3", "tumor stage three"), ("T4b", "tumor stage four"), ("T4d", "tumor stage four"),
    ("T1mi", "tumor stage one"), ("T0", "tumor stage zero"), ("Tis", "tumor in situ"),
    ("TX", "primary tumor cannot be assessed"), ("'--", None), ("Unknown", None), ("X1", None),
])
def test_t_to_words(raw, words):
    assert t_to_words(raw) == words


@pytest.mark.parametrize("raw,words", [
    ("N0", "cancer has not spread to lymph nodes"), ("N0 (i+)", "cancer has not spread to lymph nodes"),
    ("N0 (mol+)", "cancer has not spread to lymph nodes"), ("N0 (i-)", "cancer has not spread to lymph nodes"),
    ("N1", "cancer has spread to lymph nodes, node stage one"),
    ("N1mi", "cancer has spread to lymph nodes, node stage one"),
    ("N1a", "cancer has spread to lymph nodes, node stage one"),
    ("N2a", "cancer has spread to lymph nodes, node stage two"),
    ("N3c", "cancer has spread to lymph nodes, node stage three"),
    ("NX", "lymph nodes cannot be assessed"), ("'--", None), ("Not Reported", None), ("N5", None),
])
def test_n_to_words(raw, words):
    assert n_to_words(raw) == words


@pytest.mark.parametrize("raw,words", [
    ("M0", "no metastasis detected"), ("cM0 (i+)", "no metastasis detected"),
    ("M1", "distant metastasis detected"), ("M1a", "distant metastasis detected"),
    ("M1c", "distant metastasis detected"), ("MX", "distant metastasis cannot be assessed"),
    ("'--", None), (None, None), ("M2", None),
])
def test_m_to_words(raw, words):
    assert m_to_words(raw) == words


# ----------------------------------------------------------------------------------------------
# survival bins


def test_fit_survival_bins_quantiles_of_uncensored_only():
    rng = np.random.default_rng(0)
    months = rng.uniform(0, 200, size=60)
    events = (rng.random(60) < 0.5).astype(float)
    edges = fit_survival_bins(months, events, n_bins=4)
    q = np.quantile(months[events == 1], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(edges, [0.0, *q, months.max()])
    assert np.all(np.diff(edges) > 0)
    # only the arrays given are used: other values change the edges
    edges_half = fit_survival_bins(months[:30], events[:30])
    np.testing.assert_allclose(edges_half[1:4], np.quantile(months[:30][events[:30] == 1], [0.25, 0.5, 0.75]))
    assert not np.allclose(edges_half, edges)


def test_fit_survival_bins_fallback_ties_and_nans():
    months = np.array([5.0, 10.0, 20.0, 40.0, 80.0, np.nan, -3.0])
    events = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # one usable event < n_bins
    with pytest.warns(InputWarning, match="only 1 event"):
        edges = fit_survival_bins(months, events, n_bins=4)
    np.testing.assert_allclose(edges, [0.0, *np.quantile(months[:5], [0.25, 0.5, 0.75]), 80.0])
    tied = fit_survival_bins(np.array([10.0] * 8 + [50.0]), np.ones(9), n_bins=4)
    assert tied[0] == 0 and tied[-1] == 50.0 and np.all(np.diff(tied) > 0) and len(tied) == 5
    n3 = fit_survival_bins(np.arange(1.0, 13.0), np.ones(12), n_bins=3)
    assert len(n3) == 4
    with pytest.raises(InputError, match="no patient"):
        fit_survival_bins(np.array([np.nan]), np.array([1.0]))


def test_assign_bins():
    edges = np.array([0.0, 15.0, 27.0, 55.0, 283.0])
    got = assign_bins(np.array([0.0, 14.9, 15.0, 30.0, 55.0, 283.0, 400.0, -1.0, np.nan]), edges)
    assert got.tolist() == [0, 0, 1, 2, 3, 3, 3, -1, -1]
    assert got.dtype == np.int64
