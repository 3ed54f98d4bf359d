"""WHO CNS 2021 glioma labels: the rules, missing values, the clinical-table writer and the shipped groupings."""

from __future__ import annotations

import warnings
from importlib.resources import files

import pytest

from modaltune.data.formats import read_clinical
from modaltune.data.labels import (
    GRADE_CLASSES,
    WHO2021_CLASSES,
    assign_subtype,
    glioma_grade,
    load_grouping,
    who2021_diagnosis,
    write_glioma_clinical,
)
from modaltune.errors import ConfigError, InputError, InputWarning

GBM, AST4, LGA, OLIGO = WHO2021_CLASSES


@pytest.mark.parametrize("idh, codel, cdkn, grade, expected", [
    ("WT", "codel", -2, "G2", GBM),          # IDH-wildtype -> glioblastoma, whatever the rest says
    ("WT", None, None, None, GBM),           # ... and needs nothing else
    ("Mutant", "codel", -2, "G4", OLIGO),    # IDH-mutant + 1p/19q codeleted -> oligodendroglioma
    ("Mutant", "codel", None, None, OLIGO),
    ("Mutant", "non-codel", -2, "G2", AST4),  # CDKN2A/B homozygous deletion -> grade 4
    ("Mutant", "non-codel", 0, "G4", AST4),  # grade 4 -> grade 4
    ("Mutant", "non-codel", -2, None, AST4),  # deletion decides even without a grade
    ("Mutant", "non-codel", None, "G4", AST4),  # grade 4 decides even without CDKN2A/B
    ("Mutant", "non-codel", 0, "G3", LGA),
    ("Mutant", "non-codel", 0, "G2", LGA),
    ("Mutant", "non-codel", 2, "G3", LGA),   # amplification is not a deletion
    ("Mutant", "non-codel", -1, "G2", LGA),  # shallow deletion is not homozygous (default)
])
def test_who2021_rules(idh, codel, cdkn, grade, expected):
    assert who2021_diagnosis(idh, codel, cdkn, grade) == expected


def test_cdkn2a_shallow_deletion_option():
    assert who2021_diagnosis("Mutant", "non-codel", -1, "G2") == LGA
    assert who2021_diagnosis("Mutant", "non-codel", -1, "G2", cdkn_deleted=(-2, -1)) == AST4   # the official rule
    assert who2021_diagnosis("Mutant", "non-codel", -2, "G2", cdkn_deleted=(-2, -1)) == AST4
    assert who2021_diagnosis("Mutant", "non-codel", 0, "G3", cdkn_deleted=(-2, -1)) == LGA


@pytest.mark.parametrize("args", [
    (None, "codel", -2, "G4"),               # no IDH
    ("NA", "non-codel", 0, "G2"),
    ("maybe", "non-codel", 0, "G2"),         # unreadable IDH
    ("Mutant", None, -2, "G4"),              # IDH-mutant without 1p/19q
    ("Mutant", "'--", 0, "G2"),
    ("Mutant", "non-codel", None, "G2"),     # CDKN2A/B unknown, grade < 4: grade 4 undecided
    ("Mutant", "non-codel", 0, None),        # grade unknown, no deletion: undecided
    ("Mutant", "non-codel", None, None),
    ("Mutant", "non-codel", 0.5, "G3"),      # not a GISTIC value
    ("Mutant", "non-codel", 0, "GX"),        # unreadable grade
])
def test_missing_values_give_no_label(args):
    assert who2021_diagnosis(*args) is None


def test_histology_only_supplies_a_missing_grade_4():
    assert who2021_diagnosis("Mutant", "non-codel", 0, None, histology="Glioblastoma") == AST4
    assert who2021_diagnosis("Mutant", "non-codel", 0, None, histology="Gliosarcoma") == AST4
    assert who2021_diagnosis("Mutant", "non-codel", 0, None, histology="Astrocytoma, NOS") is None
    assert who2021_diagnosis("Mutant", "non-codel", 0, "G2", histology="Glioblastoma") == LGA   # a grade wins
    assert who2021_diagnosis("WT", None, None, None, histology="Astrocytoma, anaplastic") == GBM
    assert who2021_diagnosis(None, "codel", 0, None, histology="Glioblastoma") is None


@pytest.mark.parametrize("mutant", ["Mutant", "mutated", "IDHmut", "IDH-mutant", "MUT", True, 1, "1.0", "yes"])
@pytest.mark.parametrize("codel", ["codel", "Codeleted", "1p/19q codel", True, 1, "yes"])
def test_spellings_mutant_codeleted(mutant, codel):
    assert who2021_diagnosis(mutant, codel, 0, "G2") == OLIGO


@pytest.mark.parametrize("wildtype", ["WT", "wildtype", "Wild-type", "IDHwt", False, 0, "no"])
def test_spellings_wildtype(wildtype):
    assert who2021_diagnosis(wildtype, None, None, None) == GBM


@pytest.mark.parametrize("noncodel", ["non-codel", "Non-codeleted", "intact", False, 0, "No"])
def test_spellings_non_codeleted(noncodel):
    assert who2021_diagnosis("Mutant", noncodel, 0, "G3") == LGA


@pytest.mark.parametrize("two", ["G2", "g2", "2", "II", "Grade II", "WHO grade 2", 2, 2.0, "2.0"])
def test_grade_spellings(two):
    assert glioma_grade(two) == "G2"


def test_grade_rules():
    assert [glioma_grade(g) for g in ("G2", "G3", "G4", "III", "IV", "4")] == ["G2", "G3", "G4", "G3", "G4", "G4"]
    for unknown in (None, "", "'--", "Not Reported", "GX", "G1", "grade 5"):
        assert glioma_grade(unknown) is None, unknown           # never a default class
    assert glioma_grade(None, histology="Glioblastoma") == "G4"
    assert glioma_grade("G3", histology="Glioblastoma") == "G3"
    assert glioma_grade(None, histology="Oligodendroglioma, NOS") is None
    assert GRADE_CLASSES == ("G2", "G3", "G4")


# ------------------------------------------------------------------------------------------ writer
CLINICAL = """case_submitter_id\tproject_id\tprimary_diagnosis\tvital_status\tdays_to_death\tdays_to_last_follow_up
TCGA-AA-0001\tTCGA-GBM\tGlioblastoma\tDead\t300\t'--
TCGA-AA-0002\tTCGA-LGG\tOligodendroglioma, NOS\tAlive\t'--\t900
TCGA-AA-0002\tTCGA-LGG\tOligodendroglioma, NOS\tAlive\t'--\t1000
TCGA-AA-0003\tTCGA-LGG\tAstrocytoma, NOS\tAlive\t'--\t700
TCGA-AA-0004\tTCGA-LGG\tAstrocytoma, anaplastic\tDead\t500\t'--
TCGA-AA-0005\tTCGA-LGG\tAstrocytoma, NOS\tAlive\t'--\t100
TCGA-AA-0006\tTCGA-LGG\tMixed glioma\tAlive\t'--\t200
TCGA-AA-0007\tTCGA-LGG\tAstrocytoma, NOS\tAlive\t'--\t300
TCGA-AA-0008\tTCGA-GBM\tGlioblastoma\tDead\t150\t'--
"""

MOLECULAR = """Case,IDH status,1p/19q codeletion,CDKN2A,Grade
TCGA-AA-0001-01A,WT,non-codel,-2,G4
TCGA-AA-0002,Mutant,codel,0,G2
TCGA-AA-0003,Mutant,non-codel,-2,G2
TCGA-AA-0004,Mutant,non-codel,0,G3
TCGA-AA-0004-01B,Mutant,non-codel,0,
TCGA-AA-0005,NA,non-codel,0,G2
TCGA-AA-0006,Mutant,,0,G3
TCGA-AA-0008,Mutant,non-codel,0,
TCGA-ZZ-9999,WT,codel,0,G4
"""

EXPECTED_DIAGNOSIS = {"TCGA-AA-0001": GBM, "TCGA-AA-0002": OLIGO, "TCGA-AA-0003": AST4, "TCGA-AA-0004": LGA,
                      "TCGA-AA-0005": None, "TCGA-AA-0006": None, "TCGA-AA-0007": None, "TCGA-AA-0008": AST4}
EXPECTED_GRADE = {"TCGA-AA-0001": "G4", "TCGA-AA-0002": "G2", "TCGA-AA-0003": "G2", "TCGA-AA-0004": "G3",
                  "TCGA-AA-0005": "G2", "TCGA-AA-0006": "G3", "TCGA-AA-0007": None, "TCGA-AA-0008": "G4"}


def _tables(tmp_path, molecular: str = MOLECULAR):
    clin, mol = tmp_path / "clinical.tsv", tmp_path / "molecular.csv"
    clin.write_text(CLINICAL)
    mol.write_text(molecular)
    return clin, mol


def _write(clin, mol, out, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = write_glioma_clinical(clin, mol, out, **kw)
    return df, [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


def _labels(df) -> dict:
    return {c: (d if isinstance(d, str) else None) for c, d in zip(df["case_id"], df["primary_diagnosis"])}


def test_writer_diagnosis(tmp_path):
    clin, mol = _tables(tmp_path)
    df, msgs = _write(clin, mol, tmp_path / "out" / "who.tsv")
    assert _labels(df) == EXPECTED_DIAGNOSIS                     # every case kept, one row each
    assert df.attrs["unlabelled"] == {"TCGA-AA-0005": "missing IDH",
                                      "TCGA-AA-0006": "missing 1p/19q codeletion (IDH-mutant)",
                                      "TCGA-AA-0007": "not in the molecular table"}
    unlabelled = next(m for m in msgs if "no diagnosis label" in m)
    for case, why in df.attrs["unlabelled"].items():
        assert f"{why}: {case}" in unlabelled
    assert any("TCGA-ZZ-9999" in m and "not in the clinical table" in m for m in msgs)
    assert (df["site"] == "GBMLGG").all()
    assert df.loc[df["case_id"] == "TCGA-AA-0008", "original_diagnosis"].item() == "Glioblastoma"
    # the written table reads back as a clinical table with the class as primary_diagnosis and survival kept
    back = read_clinical(tmp_path / "out" / "who.tsv")
    assert _labels(back) == EXPECTED_DIAGNOSIS
    assert back["survival_months"].notna().all() and list(back["site"].unique()) == ["GBMLGG"]
    # the shipped grouping maps every written class name to its label index
    grouping = load_grouping(files("modaltune").joinpath("resources", "glioma_who2021.yaml"))
    assert grouping.sites["GBMLGG"].classes == list(WHO2021_CLASSES)
    for name in filter(None, _labels(back).values()):
        assert assign_subtype(grouping, "GBMLGG", name)[1] == WHO2021_CLASSES.index(name)
    assert assign_subtype(grouping, "GBMLGG", "Glioblastoma")[1] is None   # a raw GDC diagnosis is no class


def test_writer_grade_and_shallow_option(tmp_path):
    clin, mol = _tables(tmp_path)
    df, msgs = _write(clin, mol, tmp_path / "grade.csv", task="grade")
    assert _labels(df) == EXPECTED_GRADE
    assert df.attrs["unlabelled"] == {"TCGA-AA-0007": "not in the molecular table"}
    grouping = load_grouping(files("modaltune").joinpath("resources", "glioma_grade.yaml"))
    for name in filter(None, _labels(read_clinical(tmp_path / "grade.csv")).values()):
        assert assign_subtype(grouping, "GBMLGG", name)[1] == GRADE_CLASSES.index(name)
    shallow = MOLECULAR.replace("TCGA-AA-0004,Mutant,non-codel,0,G3", "TCGA-AA-0004,Mutant,non-codel,-1,G3") \
        .replace("TCGA-AA-0004-01B,Mutant,non-codel,0,", "TCGA-AA-0004-01B,Mutant,non-codel,-1,")
    clin, mol = _tables(tmp_path, shallow)
    assert _labels(_write(clin, mol, tmp_path / "a.tsv")[0])["TCGA-AA-0004"] == LGA
    assert _labels(_write(clin, mol, tmp_path / "b.tsv", cdkn_deleted=(-2, -1))[0])["TCGA-AA-0004"] == AST4


@pytest.mark.filterwarnings("ignore::modaltune.errors.InputWarning")
def test_writer_column_mapping_and_subtype_column(tmp_path):
    odd = MOLECULAR.replace("Case,IDH status,1p/19q codeletion,CDKN2A,Grade", "pid,idh_call,arm_loss,cdkn_cn,who")
    clin, mol = _tables(tmp_path, odd)
    with pytest.raises(InputError, match="no column for"):
        write_glioma_clinical(clin, mol, tmp_path / "x.tsv")
    cols = {"case_id": "pid", "idh": "idh_call", "codel_1p19q": "arm_loss", "cdkn2a": "cdkn_cn", "grade": "who"}
    assert _labels(_write(clin, mol, tmp_path / "x.tsv", columns=cols)[0]) == EXPECTED_DIAGNOSIS
    with pytest.raises(InputError, match="unknown key"):
        write_glioma_clinical(clin, mol, tmp_path / "x.tsv", columns={**cols, "tert": "x"})
    with pytest.raises(InputError, match="not in the molecular table"):
        write_glioma_clinical(clin, mol, tmp_path / "x.tsv", columns={**cols, "grade": "nope"})
    subtype = ("case_id,IDH/codel subtype,CDKN2A,Grade\nTCGA-AA-0001,IDHwt,0,G2\nTCGA-AA-0002,IDHmut-codel,0,G2\n"
               "TCGA-AA-0003,IDHmut-non-codel,0,G3\n")
    clin, mol = _tables(tmp_path, subtype)
    labels = _labels(_write(clin, mol, tmp_path / "s.tsv")[0])
    assert [labels[f"TCGA-AA-000{i}"] for i in (1, 2, 3)] == [GBM, OLIGO, LGA]


@pytest.mark.filterwarnings("ignore::modaltune.errors.InputWarning")
def test_writer_refuses_conflicts_and_unknown_task(tmp_path):
    agree = MOLECULAR + "TCGA-AA-0001-01B,wildtype,non-codel,-2.0,IV\n"
    clin, mol = _tables(tmp_path, agree)
    assert _labels(_write(clin, mol, tmp_path / "ok.tsv")[0]) == EXPECTED_DIAGNOSIS
    clin, mol = _tables(tmp_path, MOLECULAR + "TCGA-AA-0002,Mutant,non-codel,0,G2\n")
    with pytest.raises(InputError, match="conflicting codel_1p19q .* TCGA-AA-0002"):
        write_glioma_clinical(clin, mol, tmp_path / "bad.tsv")
    with pytest.raises(ConfigError, match="task"):
        write_glioma_clinical(clin, mol, tmp_path / "bad.tsv", task="subtype")
