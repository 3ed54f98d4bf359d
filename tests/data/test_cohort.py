"""Tests of data.prepare and data.cohort: alignment, availability, validation errors/warnings, summary, loading."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modaltune.data.cohort import Cohort
from modaltune.data.prepare import prepare_cohort
from modaltune.data.prompts import build_prompts
from modaltune.errors import InputError, InputWarning

DIM = 8
GDC_COLUMNS = ["case_submitter_id", "project_id", "primary_diagnosis", "ajcc_pathologic_stage",
               "ajcc_pathologic_t", "ajcc_pathologic_n", "ajcc_pathologic_m", "vital_status", "days_to_death",
               "days_to_last_follow_up", "age_at_index"]


# ----------------------------------------------------------------------------------------------
# fixture writers (plain h5py / pandas, independent of modaltune's readers)


def clinical_row(case, project="TCGA-BRCA", diagnosis="Infiltrating duct carcinoma, NOS", vital="Alive",
                 death=None, follow=300, stage="Stage IIA", t="T2", n="N0", m="M0"):
    e = "'--"
    return [case, project, diagnosis if diagnosis else e, stage or e, t or e, n or e, m or e, vital or e,
            e if death is None else str(death), e if follow is None else str(follow), "60"]


def write_clinical(path: Path, rows) -> Path:
    pd.DataFrame(rows, columns=GDC_COLUMNS).to_csv(path, sep="\t", index=False)
    return path


def write_expression(path: Path, cases, genes, seed=0, nan_at=None) -> Path:
    rng = np.random.default_rng(seed)
    vals = rng.normal(5, 1, size=(len(genes), len(cases)))
    if nan_at is not None:
        vals[nan_at] = np.nan
    df = pd.DataFrame(vals, index=genes, columns=[f"{c}-01" for c in cases])
    df.index.name = "sample"
    df.to_csv(path, sep="\t")
    return path


def write_gmt(path: Path, sets: dict) -> Path:
    path.write_text("".join("\t".join([k, "desc", *v]) + "\n" for k, v in sets.items()))
    return path


CASES = [f"TCGA-A2-{i:04d}" for i in range(1, 9)]
GENES = [f"G{i}" for i in range(12)]


@pytest.fixture()
def raw(tmp_path, write_slide) -> dict:
    """8 BRCA patients: case 1 has 2 slides, case 2 no slide, case 3 no expression, case 4 no survival."""
    feat = tmp_path / "feat"
    feat.mkdir()
    for i, c in enumerate(CASES):
        if c == CASES[1]:
            continue
        write_slide(feat / f"{c}-01Z-00-DX1.h5", n=4 + i, seed=i)
    write_slide(feat / f"{CASES[0]}-01Z-00-DX2.h5", n=3, seed=99)
    rows = [clinical_row(c, vital="Dead" if i % 2 else "Alive", death=100 + i if i % 2 else None,
                         follow=None if i % 2 else 200 + i,
                         diagnosis="Lobular carcinoma, NOS" if i in (5, 6) else "Infiltrating duct carcinoma, NOS")
            for i, c in enumerate(CASES)]
    rows[4] = clinical_row(CASES[4], vital=None, death=None, follow=None)
    clin = write_clinical(tmp_path / "clinical.tsv", rows)
    expr = write_expression(tmp_path / "expr.tsv", [c for c in CASES if c != CASES[3]], GENES)
    gmt = write_gmt(tmp_path / "p.gmt", {"PW_A": GENES[:5], "PW_B": GENES[4:9] + ["ABSENT1"],
                                          "PW_SMALL": ["G11", "ABSENT2"]})
    rep = tmp_path / "reports.csv"
    pd.DataFrame({"case_id": CASES[:6], "text": [f"report {i}" for i in range(6)]}).to_csv(rep, index=False)
    return {"root": tmp_path, "features": feat, "clinical": clin, "expression": expr, "gene_sets": gmt,
            "reports": rep}


def prep(raw, **kw):
    args = dict(features=raw["features"], clinical=raw["clinical"], expression=raw["expression"],
                gene_sets=raw["gene_sets"], reports=raw["reports"])
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        return prepare_cohort(raw["root"] / "cohort", **args)


# ----------------------------------------------------------------------------------------------
# manifest and availability


def test_manifest_multi_slide_patient(raw):
    c = prep(raw)
    row = c.manifest.loc[CASES[0]]
    assert row["n_slides"] == 2
    assert row["slides"].split(";") == [f"{CASES[0]}-01Z-00-DX1", f"{CASES[0]}-01Z-00-DX2"]
    paths = row["slide_paths"].split(";")
    assert len(paths) == 2 and all(Path(p).exists() for p in paths)
    assert row["n_patches"] == 4 + 3
    assert row["site"] == "BRCA" and row["has_wsi"]
    assert c.feature_dim == DIM


def test_patients_lacking_a_modality_are_kept(raw):
    c = prep(raw)
    m = c.manifest
    assert len(m) == len(CASES)  # nobody dropped
    assert not m.loc[CASES[1], "has_wsi"] and m.loc[CASES[1], "n_slides"] == 0 and m.loc[CASES[1], "has_omics"]
    assert not m.loc[CASES[3], "has_omics"] and m.loc[CASES[3], "has_wsi"]
    assert not m.loc[CASES[7], "has_report"] and m.loc[CASES[0], "has_report"]
    assert set(c.expression.index) == set(CASES) - {CASES[3]}
    s = c.summary["total"]["modalities"]
    assert s["wsi"] == 7 and s["omics"] == 7 and s["report"] == 6


def test_labels_and_words(raw):
    c = prep(raw)
    m = c.manifest
    assert m.loc[CASES[0], "subtype"] == "Infiltrating duct carcinoma"
    assert m.loc[CASES[5], "subtype_index"] == 1
    assert m.loc[CASES[0], "location"] == "breast"
    assert m.loc[CASES[0], "stage"] != "" and m.loc[CASES[0], "n"] != ""
    assert not (c.root / "prompts.csv").exists()  # prompts are built per split, from manifest rows
    assert build_prompts(c.manifest.loc[CASES[5]].to_dict(), None)["diagnosis"] == \
        "Cancer location: breast; Cancer diagnosis: lobular carcinoma"


def test_no_survival_is_kept_and_reported(raw):
    with pytest.warns(InputWarning, match=CASES[4]):
        c = prepare_cohort(raw["root"] / "c2", clinical=raw["clinical"], features=raw["features"])
    assert not c.manifest.loc[CASES[4], "has_survival"]
    assert c.manifest.loc[CASES[5], "has_survival"] and c.manifest.loc[CASES[5], "event"] == 1
    surv = c.summary["total"]["survival"]
    assert surv == {"with_survival": 7, "events": 4, "censored": 3, "missing": 1}
    notes = [n for n in c.summary["notes"] if "survival" in n["reason"]]
    assert notes and CASES[4] in notes[0]["items"]
    assert "1 missing" in (c.root / "summary.txt").read_text()


def test_gene_sets_filtering(raw):
    c = prep(raw)
    dropped = {d["kind"]: d for d in c.summary["dropped"]}
    assert dropped["genes"]["items"] == ["ABSENT1", "ABSENT2"]
    assert dropped["pathways"]["items"] == ["PW_SMALL"]
    assert list(c.pathways) == ["PW_A", "PW_B"]
    assert c.genes == GENES  # every gene kept (also those in no gene set), expression order
    assert [c.genes[i] for i in c.pathways["PW_B"]] == GENES[4:9]
    assert list(c.expression.columns) == c.genes
    assert c.summary["expression"]["n_genes_in_no_gene_set"] == 3       # G9, G10, G11 (PW_SMALL dropped)
    assert "3 genes in no gene set" in (c.root / "summary.txt").read_text()


def test_no_survival_says_why_and_what_to_fix(raw, tmp_path):
    rows = [clinical_row(CASES[0], vital="Dead", death=-40, follow=None),        # negative time
            clinical_row(CASES[1], vital="Not Reported", death=None, follow=200),  # unknown vital status
            clinical_row(CASES[2], vital="Dead", death=None, follow=200),          # death time missing
            clinical_row(CASES[3], vital="Alive", death=None, follow=300)]
    clin = write_clinical(tmp_path / "clin.tsv", rows)
    with pytest.warns(InputWarning, match="no usable survival") as rec:
        prepare_cohort(tmp_path / "c", clinical=clin)
    msg = next(str(w.message) for w in rec if "no usable survival" in str(w.message))
    assert f"negative survival time (-1.3 months; a time before diagnosis is a data error): {CASES[0]}" in msg
    assert "vital status missing or not Alive/Dead (e.g. 'Not Reported'" in msg and CASES[1] in msg
    assert f"Dead but days_to_death missing: {CASES[2]}" in msg and CASES[3] not in msg
    assert str(clin) in msg and "fix: fill vital_status" in msg


def test_slides_without_coords_are_named(raw, write_slide):
    write_slide(raw["features"] / f"{CASES[1]}-01Z-00-DX1.h5", n=4, coords=False)
    with pytest.warns(InputWarning, match="no 'coords' dataset") as rec:
        prepare_cohort(raw["root"] / "c3", clinical=raw["clinical"], features=raw["features"])
    msg = next(str(w.message) for w in rec if "no 'coords'" in str(w.message))
    assert f"{CASES[1]}-01Z-00-DX1" in msg and "grid is made up" in msg and f"case: {CASES[1]}" in msg
    assert "fix: re-extract" in msg


def test_unlogged_expression_is_warned_with_the_transform(raw):
    path = raw["expression"]
    df = pd.read_csv(path, sep="\t", index_col=0)
    (2.0 ** (df.abs() * 4 + 4)).to_csv(path, sep="\t")          # linear scale: values in the hundreds
    with pytest.warns(InputWarning, match="looks unlogged") as rec:
        prepare_cohort(raw["root"] / "cohort", features=raw["features"], clinical=raw["clinical"],
                       expression=path)
    msgs = [str(w.message) for w in rec if "looks unlogged" in str(w.message)]
    assert msgs, [str(w.message) for w in rec]
    assert "log2(x + 1)" in msgs[0] and str(path) in msgs[0]


def test_log_scale_expression_is_not_warned(raw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        prepare_cohort(raw["root"] / "cohort", features=raw["features"], clinical=raw["clinical"],
                       expression=raw["expression"])
    assert not [w for w in rec if "looks unlogged" in str(w.message)]


def test_all_genes_without_gmt(raw):
    c = prep(raw, gene_sets=None)
    assert c.genes == GENES and c.pathways == {}


def test_files_written_and_load(raw):
    c = prep(raw, ood_sites=("BRCA",))
    root = raw["root"] / "cohort"
    for name in ("manifest.csv", "gene_sets.json", "reports.csv", "summary.json", "summary.txt", "cohort.json",
                 "grouping.yaml"):
        assert (root / name).exists(), name
    meta = json.loads((root / "cohort.json").read_text())
    assert meta["feature_dim"] == DIM and meta["n_genes"] == 12 and meta["n_pathways"] == 2
    assert meta["ood_sites"] == ["BRCA"] and meta["sites"] == ["BRCA"]
    again = Cohort.load(root)
    assert again.manifest["ood"].all() and again.ood_sites == ["BRCA"]
    pd.testing.assert_frame_equal(again.manifest, c.manifest)
    assert again.report_text(CASES[0]) == "report 0" and again.report_text(CASES[7]) == ""
    assert again.manifest["has_wsi"].dtype == bool and again.manifest["subtype_index"].dtype.kind == "i"


def test_load_missing_files_is_clear(raw, tmp_path):
    with pytest.raises(InputError, match="cohort directory not found"):
        Cohort.load(tmp_path / "nope")
    c = prep(raw)
    (c.root / "gene_sets.json").unlink()
    with pytest.raises(InputError, match="gene_sets.json"):
        Cohort.load(c.root)


def test_single_modality_cohorts(raw):
    g = prep(raw, features=None, reports=None)  # genomics only
    assert not g.manifest["has_wsi"].any() and g.feature_dim == 0 and g.manifest["has_omics"].sum() == 7
    w = prep(raw, expression=None, gene_sets=None, reports=None)  # WSI only
    assert w.expression is None and w.genes == [] and w.manifest["has_wsi"].sum() == 7
    r = prep(raw, features=None, expression=None, gene_sets=None)  # reports only
    assert r.manifest["has_report"].sum() == 6 and not r.manifest["has_omics"].any()


# ----------------------------------------------------------------------------------------------
# bad inputs


def test_corrupt_feature_file(raw):
    bad = raw["features"] / "TCGA-A2-0099-01Z-00-DX1.h5"
    bad.write_bytes(b"this is not an hdf5 file")
    with pytest.raises(InputError, match="TCGA-A2-0099-01Z-00-DX1.h5"):
        prep(raw)


def test_inconsistent_width_names_file_and_widths(raw, write_slide):
    write_slide(raw["features"] / f"{CASES[1]}-01Z-00-DX1.h5", n=4, dim=DIM + 3)
    with pytest.raises(InputError) as ei:
        prep(raw)
    msg = str(ei.value)
    assert f"{CASES[1]}-01Z-00-DX1.h5" in msg and str(DIM + 3) in msg and str(DIM) in msg


def test_nan_in_features(raw, write_slide):
    write_slide(raw["features"] / f"{CASES[1]}-01Z-00-DX1.h5", n=4, value=np.nan)
    with pytest.raises(InputError, match=f"NaN.*{CASES[1]}-01Z-00-DX1.h5"):
        prep(raw)
    # without the value check the file passes (header only)
    prep(raw, check_values=False)


def test_inf_in_features(raw, write_slide):
    write_slide(raw["features"] / f"{CASES[1]}-01Z-00-DX1.h5", n=4, value=np.inf)
    with pytest.raises(InputError, match=f"{CASES[1]}-01Z-00-DX1.h5"):
        prep(raw)


def test_empty_bag(raw, write_slide):
    write_slide(raw["features"] / f"{CASES[1]}-01Z-00-DX1.h5", n=0)
    with pytest.raises(InputError, match=f"empty bag.*{CASES[1]}-01Z-00-DX1.h5"):
        prep(raw)


def test_nan_in_expression(raw):
    write_expression(raw["expression"], [c for c in CASES if c != CASES[3]], GENES, nan_at=(2, 1))
    with pytest.raises(InputError) as ei:
        prep(raw)
    assert "NaN" in str(ei.value) and "expr.tsv" in str(ei.value) and CASES[1] in str(ei.value)


def test_duplicate_case_conflicting_rows(raw):
    rows = [clinical_row(c) for c in CASES]
    rows.append(clinical_row(CASES[2], diagnosis="Lobular carcinoma, NOS"))
    write_clinical(raw["clinical"], rows)
    with pytest.raises(InputError, match=CASES[2]):
        prep(raw)


def test_duplicate_case_agreeing_rows_merge(raw):
    rows = [clinical_row(c) for c in CASES]
    rows.append(clinical_row(CASES[2]))
    write_clinical(raw["clinical"], rows)
    c = prep(raw)
    assert len(c.manifest) == len(CASES)


def test_case_in_features_but_not_clinical(raw, write_slide):
    write_slide(raw["features"] / "TCGA-ZZ-9999-01Z-00-DX1.h5", n=3)
    with pytest.warns(InputWarning, match="TCGA-ZZ-9999") as rec:
        c = prepare_cohort(raw["root"] / "c3", features=raw["features"], clinical=raw["clinical"])
    msg = next(str(w.message) for w in rec if "TCGA-ZZ-9999" in str(w.message))
    assert "clinical" in msg and "fix:" in msg
    assert "TCGA-ZZ-9999" not in c.manifest.index
    un = [u for u in c.summary["unmatched"] if u["kind"] == "slides"]
    assert un and un[0]["items"] == ["TCGA-ZZ-9999-01Z-00-DX1"]
    assert "TCGA-ZZ-9999" in (c.root / "summary.txt").read_text()


def test_case_in_expression_or_reports_but_not_clinical(raw):
    write_expression(raw["expression"], CASES + ["TCGA-ZZ-8888"], GENES)
    pd.DataFrame({"case_id": ["TCGA-ZZ-7777"], "text": ["x"]}).to_csv(raw["reports"], index=False)
    with pytest.warns(InputWarning, match="TCGA-ZZ-8888"):
        c = prepare_cohort(raw["root"] / "c4", clinical=raw["clinical"], expression=raw["expression"],
                           reports=raw["reports"])
    kinds = {u["kind"]: u["items"] for u in c.summary["unmatched"]}
    assert kinds["expression cases"] == ["TCGA-ZZ-8888"] and kinds["reports"] == ["TCGA-ZZ-7777"]
    assert len(c.manifest) == len(CASES)


def test_unknown_diagnosis_warns_with_case_and_fix(raw):
    rows = [clinical_row(c) for c in CASES]
    rows[2] = clinical_row(CASES[2], diagnosis="Totally new carcinoma")
    write_clinical(raw["clinical"], rows)
    with pytest.warns(InputWarning, match="Totally new carcinoma") as rec:
        c = prepare_cohort(raw["root"] / "c5", clinical=raw["clinical"])
    msg = next(str(w.message) for w in rec if "Totally new" in str(w.message))
    assert CASES[2] in msg and "grouping" in msg
    row = c.manifest.loc[CASES[2]]
    assert row["subtype"] == "" and row["subtype_index"] == -1 and not row["rare"]
    assert c.summary["total"]["classes"]["none"] == 1


def test_secondary_magnification_matching(raw, write_slide):
    sec = raw["root"] / "feat10"
    sec.mkdir()
    write_slide(sec / f"{CASES[0]}-01Z-00-DX1.h5", n=2, dim=4)
    write_slide(sec / "TCGA-A2-0777-01Z-00-DX1.h5", n=2, dim=4)  # no primary file
    with pytest.warns(InputWarning, match="TCGA-A2-0777"):
        c = prepare_cohort(raw["root"] / "c6", clinical=raw["clinical"], features=raw["features"],
                           features_secondary=sec)
    assert c.feature_dim_secondary == 4
    assert c.manifest.loc[CASES[0], "has_wsi_secondary"] and not c.manifest.loc[CASES[2], "has_wsi_secondary"]
    assert c.manifest.loc[CASES[0], "slide_paths_secondary"].endswith(f"{CASES[0]}-01Z-00-DX1.h5")
    kinds = {u["kind"] for u in c.summary["unmatched"]}
    assert {"secondary slides", "primary slides"} <= kinds


def test_site_from_project_and_site_column(raw):
    rows = [clinical_row(c) for c in CASES]
    rows[0] = clinical_row(CASES[0], project="TCGA-LUSC", diagnosis="Squamous cell carcinoma, NOS")
    rows[1] = clinical_row(CASES[1], project="TCGA-UCEC", diagnosis="Endometrioid adenocarcinoma, NOS")
    write_clinical(raw["clinical"], rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        c = prepare_cohort(raw["root"] / "c7", clinical=raw["clinical"], ood_sites=["UCEC"])
    assert c.manifest.loc[CASES[0], "site"] == "NSCLC"
    assert c.manifest.loc[CASES[0], "subtype"] == "Lung squamous cell carcinoma"
    assert c.manifest.loc[CASES[1], "site"] == "UCEC" and c.manifest.loc[CASES[1], "ood"]
    assert set(c.sites) == {"BRCA", "NSCLC", "UCEC"}
    assert c.summary["sites"]["UCEC"]["ood"] is True


def test_validation_cache_reads_each_file_once(raw, monkeypatch):
    import modaltune.data.prepare.features as features_mod

    calls = []
    real = features_mod.read_features
    monkeypatch.setattr(features_mod, "read_features", lambda p: calls.append(p) or real(p))
    prep(raw)
    n_files = len(list(raw["features"].glob("*.h5")))
    assert len(calls) == n_files
    prep(raw)  # unchanged files: served from the validation cache
    assert len(calls) == n_files


# ----------------------------------------------------------------------------------------------
# integration with the synthetic cohort writer


def test_synthetic_to_dataset(tmp_path):
    from modaltune.data.dataset import PatientDataset
    from modaltune.data.fitted_state import FittedState
    from modaltune.data.splits import make_holdout_split
    from modaltune.synthetic import make_synthetic

    info = make_synthetic(tmp_path / "raw", seed=1, sites=("BRCA", "NSCLC"), ood_sites=(), patients=12, dim=8,
                          patches=(4, 8), n_pathways=8, pathway_size=(3, 6), n_extra_genes=4, n_absent_genes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        c = prepare_cohort(tmp_path / "cohort", features=info["features"],
                           features_secondary=info["features_secondary"], clinical=info["clinical"],
                           expression=info["expression"], gene_sets=info["gene_sets"], reports=info["reports"])
    assert len(c.manifest) == 24 and c.feature_dim == 8 and c.feature_dim_secondary == 8
    assert c.manifest["has_wsi"].all() and c.manifest["has_omics"].sum() >= 20
    split = make_holdout_split(c.manifest, seed=0)
    state = FittedState.fit(c, split["train"])
    ds = PatientDataset(c, split["test"], state, train=False, magnification="both")
    item = ds[0]
    assert item["bag"].shape[1] == 8 and item["bag_secondary"].shape[1] == 8
    assert item["omics"].shape == (len(c.genes),) and len(item["prompts"]) == 3


def test_slide_case_table_for_non_tcga_names(tmp_path, write_slide):
    feat = tmp_path / "feat"
    feat.mkdir()
    write_slide(feat / "slideA.h5", n=3)
    write_slide(feat / "slideB.h5", n=3)
    write_slide(feat / "slideC.h5", n=3)
    table = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["slideA", "slideB"], "case_id": [CASES[0], CASES[0]]}).to_csv(table, index=False)
    clin = write_clinical(tmp_path / "clinical.tsv", [clinical_row(c) for c in CASES[:2]])
    with pytest.warns(InputWarning, match="slideC"):
        c = prepare_cohort(tmp_path / "cohort", features=feat, clinical=clin, slide_case_table=table)
    assert c.manifest.loc[CASES[0], "slides"] == "slideA;slideB"
    assert not c.manifest.loc[CASES[1], "has_wsi"]


def test_load_warns_about_moved_feature_files(raw):
    c = prep(raw)
    moved = Path(c.manifest.loc[CASES[2], "slide_paths"])
    moved.rename(moved.with_suffix(".bak"))
    with pytest.warns(InputWarning, match=moved.name):
        Cohort.load(c.root)


def test_summary_records_reader_warnings(raw):
    c = prep(raw)
    assert any(CASES[4] in w and "survival" in w for w in c.summary["warnings"])  # from read_clinical
    assert any("ABSENT1" in w for w in c.summary["warnings"])  # ours


def test_clinical_row_without_case_id_is_reported(raw):
    rows = [clinical_row(c) for c in CASES] + [clinical_row("", project="TCGA-BRCA")]
    write_clinical(raw["clinical"], rows)
    with pytest.warns(InputWarning, match="no case id"):
        c = prepare_cohort(raw["root"] / "c8", clinical=raw["clinical"])
    assert len(c.manifest) == len(CASES)
    assert any(d["kind"] == "clinical rows" and d["n"] == 1 for d in c.summary["dropped"])


def test_ingest_log_records_sorted_items_and_warns_once_per_entry():
    from modaltune.data.prepare import IngestLog

    log = IngestLog()
    with pytest.warns(InputWarning, match="2 genes dropped: absent: A, B"):
        log.drop("genes", ["B", "A", "B"], "absent", file="x.gmt", fix="check")
    with pytest.warns(InputWarning, match="1 slides: no patient: S1"):
        log.unmatch("slides", ["S1"], "no patient")
    log.unmatch("slides", [], "nothing")  # empty: no entry
    log.note("patients", ["P2", "P1"], "no survival")
    assert log.dropped == [{"kind": "genes", "n": 2, "reason": "absent", "file": "x.gmt", "items": ["A", "B"]}]
    assert [e["items"] for e in log.unmatched] == [["S1"]] and log.notes[0]["items"] == ["P1", "P2"]
