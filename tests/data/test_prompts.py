"""Tests of data.prompts: the Fig. 4 example and omission of missing items."""

from __future__ import annotations

import numpy as np
import pytest

from modaltune.data.labels import m_to_words, n_to_words, stage_to_words, t_to_words
from modaltune.data.prompts import TASKS, build_prompts, survival_status_text

BRCA_EDGES = np.array([0.0, 15.0, 27.0, 55.0, 283.0])  # ModalTune Table 5, BRCA

FIG4_GENERAL = ("Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma; Overall stage: stage one; "
                "Tumor stage status: tumor stage one; Lymph node status: cancer has not spread to lymph nodes; "
                "Distant metastasis status: no metastasis detected; "
                "Survival status: The patient was censored between 55 and 283 months")
FIG4_SURVIVAL = ("Cancer location: breast; Overall stage: stage one; Tumor stage status: tumor stage one; "
                 "Lymph node status: cancer has not spread to lymph nodes; Distant metastasis status: no metastasis "
                 "detected; Survival status: The patient was censored between 55 and 283 months")
FIG4_DIAGNOSIS = "Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma"


def fig4_row(**kw):
    row = {"location": "breast", "diagnosis_text": "infiltrating duct carcinoma", "stage": stage_to_words("Stage IA"),
           "t": t_to_words("T1c"), "n": n_to_words("N0 (i-)"), "m": m_to_words("M0"), "survival_months": 144.0,
           "event": 0.0}
    row.update(kw)
    return row


def test_tasks_order():
    assert TASKS == ("general", "survival", "diagnosis")


def test_fig4_patient():
    p = build_prompts(fig4_row(), BRCA_EDGES)
    assert list(p) == list(TASKS)
    assert p["general"] == FIG4_GENERAL
    assert p["survival"] == FIG4_SURVIVAL
    assert p["diagnosis"] == FIG4_DIAGNOSIS


def test_missing_items_are_omitted():
    p = build_prompts(fig4_row(stage=None, t=float("nan"), n="", m=None), BRCA_EDGES)  # e.g. GBMLGG: no staging
    assert p["survival"] == ("Cancer location: breast; "
                             "Survival status: The patient was censored between 55 and 283 months")
    assert p["general"] == ("Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma; "
                            "Survival status: The patient was censored between 55 and 283 months")
    no_surv = build_prompts(fig4_row(survival_months=None, event=None), BRCA_EDGES)
    assert "Survival status" not in no_surv["general"] and no_surv["survival"].endswith("no metastasis detected")
    no_edges = build_prompts(fig4_row(), None)
    assert "Survival status" not in no_edges["general"] and no_edges["diagnosis"] == FIG4_DIAGNOSIS
    no_diag = build_prompts({"location": "lung"}, None)
    assert no_diag == {"general": "Cancer location: lung", "survival": "Cancer location: lung",
                       "diagnosis": "Cancer location: lung"}
    assert build_prompts({}, None) == {"general": "", "survival": "", "diagnosis": ""}


def test_missing_value_tokens_are_omitted_like_empty_values():
    """Prompts, labels and readers share one definition of a missing value (formats.MISSING_TOKENS)."""
    tokens = build_prompts(fig4_row(stage="'--", t="Not Reported", n="[Not Evaluated]", m=" n/a "), BRCA_EDGES)
    empty = build_prompts(fig4_row(stage=None, t=None, n=None, m=None), BRCA_EDGES)
    assert tokens == empty


@pytest.mark.parametrize("months,event,text", [
    (3.0, 1, "The patient died before 15 months"),
    (15.0, 0.0, "The patient was censored between 15 and 27 months"),
    (30.0, True, "The patient died between 27 and 55 months"),
    (144.0, 0, "The patient was censored between 55 and 283 months"),
    (500.0, 1, "The patient died between 55 and 283 months"),  # beyond the last edge: last bin
    (np.nan, 1, None), (10.0, None, None), (-2.0, 0, None),
])
def test_survival_status_text(months, event, text):
    assert survival_status_text(months, event, BRCA_EDGES) == text


def test_bin_edges_are_rounded_half_up():
    edges = np.array([0.0, 14.5, 26.49, 55.5, 282.7])
    assert survival_status_text(1.0, 0, edges) == "The patient was censored before 15 months"
    assert survival_status_text(20.0, 0, edges) == "The patient was censored between 15 and 26 months"
    assert survival_status_text(100.0, 1, edges) == "The patient died between 56 and 283 months"
