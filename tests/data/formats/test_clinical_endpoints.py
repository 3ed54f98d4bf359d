"""read_clinical's endpoints besides OS: each alias family, event wording, conflicts, missing values."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from modaltune.data.formats import DAYS_PER_MONTH, read_clinical
from modaltune.data.formats.endpoints import parse_event
from modaltune.errors import InputError, InputWarning

E = "'--"


def _write(path, columns: dict, sep="\t"):
    pd.DataFrame(columns).to_csv(path, sep=sep, index=False)
    return path


def _read(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = read_clinical(path, **kw)
    return df, [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


def test_tcga_cdr_columns_days_to_months(tmp_path):
    p = _write(tmp_path / "cdr.tsv", {
        "bcr_patient_barcode": ["TCGA-A1-0001", "TCGA-A1-0002"], "OS": ["1", "0"], "OS.time": ["304.4", "608.8"],
        "PFI": ["1", "0"], "PFI.time": ["152.2", "608.8"], "DSS": ["1", "0"], "DSS.time": ["304.4", "608.8"],
        "DFI": ["0", "1"], "DFI.time": ["91.32", "30.44"]})
    df, warned = _read(p)
    assert not warned
    assert list(df.columns[-6:]) == ["pfs_months", "pfs_event", "dss_months", "dss_event", "dfs_months", "dfs_event"]
    r = df.set_index("case_id")
    np.testing.assert_allclose(r["survival_months"], [10.0, 20.0])       # OS.time in days
    assert r["event"].tolist() == [1.0, 0.0]                               # OS is the OS event
    np.testing.assert_allclose(r["pfs_months"], [152.2 / DAYS_PER_MONTH, 20.0])
    assert r["pfs_event"].tolist() == [1.0, 0.0] and r["dfs_event"].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(r["dfs_months"], [3.0, 1.0])
    assert df.attrs["endpoints"] == ["pfs", "dss", "dfs"] and df.attrs["no_endpoint"] == {}


def test_our_month_columns_and_event_words(tmp_path):
    p = _write(tmp_path / "ours.csv", {
        "case_id": ["P1", "P2", "P3"], "survival_months": ["12", "30", "7"], "censorship": ["0", "1", "1"],
        "pfs_months": ["5", "30", "7"], "pfs_event": ["yes", "no", "No"],
        "dmfs_months": ["6", "8", "9"], "dmfs_event": ["progressed", "censored", "Not progressed"],
        "lrfs_months": ["1", "2", "3"], "lrfs_event": ["TRUE", "false", "1.0"]}, sep=",")
    df, warned = _read(p)
    assert not warned
    r = df.set_index("case_id")
    assert r["pfs_event"].tolist() == [1.0, 0.0, 0.0] and r["pfs_months"].tolist() == [5.0, 30.0, 7.0]
    assert r["dmfs_event"].tolist() == [1.0, 0.0, 0.0] and r["lrfs_event"].tolist() == [1.0, 0.0, 1.0]
    assert r["event"].tolist() == [1.0, 0.0, 0.0]                          # OS untouched (1 - censorship)
    assert "dss_months" not in df and df.attrs["endpoints"] == ["pfs", "dmfs", "lrfs"]


def test_gdc_like_progression_columns_and_follow_up_for_censored(tmp_path):
    # the synthetic pan-cancer writer's names: progression (1/0) + days_to_progression (days)
    p = _write(tmp_path / "gdc.tsv", {
        "case_submitter_id": ["TCGA-A1-0001", "TCGA-A1-0002", "TCGA-A1-0003"], "project_id": ["TCGA-KIRP"] * 3,
        "vital_status": ["Dead", "Alive", "Alive"], "days_to_death": ["304.4", E, E],
        "days_to_last_follow_up": [E, "608.8", "913.2"], "progression": ["1", "0", "0"],
        "days_to_progression": ["152.2", "456.6", E]})
    df, warned = _read(p)
    assert not warned
    r = df.set_index("case_id")
    np.testing.assert_allclose(r["pfs_months"], [5.0, 15.0, 30.0])    # censored without a time: last follow-up
    assert r["pfs_event"].tolist() == [1.0, 0.0, 0.0] and r["event"].tolist() == [1.0, 0.0, 0.0]
    assert "days_to_progression" not in df and "pfs_days" not in df


def test_column_mapping_of_endpoint_keys(tmp_path):
    p = _write(tmp_path / "mine.tsv", {"Patient": ["P1", "P2"], "ProgDays": ["30.44", "60.88"],
                                       "Prog": ["Progression", "No progression"]})
    df, _ = _read(p, columns={"case_id": "Patient", "pfs_days": "ProgDays", "pfs_event": "Prog"})
    assert df["pfs_months"].tolist() == pytest.approx([1.0, 2.0]) and df["pfs_event"].tolist() == [1.0, 0.0]


def test_rows_of_one_case_that_disagree_on_an_endpoint_raise(tmp_path):
    p = _write(tmp_path / "conflict.tsv", {
        "case_submitter_id": ["TCGA-A1-0001", "TCGA-A1-0001", "TCGA-A1-0002"], "PFI": ["1", "0", "0"],
        "PFI.time": ["100", "100", "200"]})
    with pytest.raises(InputError, match=r"conflicting rows.*TCGA-A1-0001.*pfs_event.*conflict.tsv"):
        read_clinical(p)
    # agreeing rows (GDC: one per treatment) merge, also when the event is worded differently
    p2 = _write(tmp_path / "agree.tsv", {"case_submitter_id": ["TCGA-A1-0001", "TCGA-A1-0001"],
                                         "PFI": ["1", "yes"], "PFI.time": ["100", "100"]})
    df, _ = _read(p2)
    assert len(df) == 1 and df.loc[0, "pfs_event"] == 1.0


def test_missing_or_unusable_endpoint_values_are_kept_and_counted(tmp_path):
    p = _write(tmp_path / "gaps.tsv", {
        "case_submitter_id": ["TCGA-A1-0001", "TCGA-A1-0002", "TCGA-A1-0003", "TCGA-A1-0004"],
        "vital_status": ["Alive"] * 4, "days_to_last_follow_up": ["100"] * 4,
        "PFI": ["1", E, "maybe", "1"], "PFI.time": ["50", "60", "70", "-5"]})
    df, warned = _read(p)
    assert len(df) == 4 and df["pfs_months"].isna().tolist() == [False, True, True, True]
    assert df["pfs_event"].isna().tolist() == [False, True, True, True]
    msg = [w for w in warned if "PFS" in w]
    assert len(msg) == 1 and "3 of 4 patient(s) have no usable PFS" in msg[0]
    assert all(c in msg[0] for c in ("TCGA-A1-0002", "TCGA-A1-0003", "TCGA-A1-0004", "maybe", "gaps.tsv"))
    assert df.attrs["no_endpoint"] == {"pfs": ["TCGA-A1-0002", "TCGA-A1-0003", "TCGA-A1-0004"]}
    assert df["survival_months"].notna().all()                              # OS is not affected


def test_table_without_endpoint_columns_has_none(tmp_path):
    p = _write(tmp_path / "plain.tsv", {"case_submitter_id": ["TCGA-A1-0001"], "vital_status": ["Alive"],
                                        "days_to_last_follow_up": ["30.44"]})
    df, _ = _read(p)
    assert not any(c.endswith(("_months", "_event")) and c != "survival_months" for c in df.columns)
    assert "endpoints" not in df.attrs


@pytest.mark.parametrize("value,expected", [
    ("1", 1.0), (1, 1.0), ("0.0", 0.0), ("Yes", 1.0), ("no", 0.0), ("True", 1.0), ("FALSE", 0.0),
    ("progressed", 1.0), ("Censored", 0.0), ("no_progression", 0.0), ("not-progressed", 0.0), ("Dead", 1.0),
    ("alive", 0.0), ("2", None), ("-1", None), ("maybe", None), (None, None), (float("nan"), None)])
def test_parse_event_wording(value, expected):
    got = parse_event(value)
    assert (np.isnan(got) if expected is None else got == expected)
