"""Macro classification metrics: hand-computed examples and scikit-learn where it has the metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, multilabel_confusion_matrix, recall_score, roc_auc_score

from modaltune.errors import InputError
from modaltune.evaluation.classification import (
    classification_summary,
    macro_auc,
    macro_f1,
    macro_sensitivity,
    macro_specificity,
)
from modaltune.evaluation.metrics import accuracy, balanced_accuracy

Y = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 1, 2, 0])
PROB = np.array([[.6, .3, .1], [.3, .4, .3], [.2, .7, .1], [.5, .4, .1], [.1, .2, .7], [.2, .2, .6]])


def test_hand_computed_macro_scores():
    # per class (tp, fp, fn, tn): 0 -> (1,1,1,3), 1 -> (2,1,0,3), 2 -> (1,0,1,4)
    assert macro_sensitivity(Y, PRED) == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert macro_specificity(Y, PRED) == pytest.approx((3 / 4 + 3 / 4 + 1) / 3)
    assert macro_f1(Y, PRED) == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    assert accuracy(Y, PRED) == pytest.approx(4 / 6)


def test_class_only_predicted_counts_zero_or_is_skipped():
    y, pred = [0, 0, 1, 1], [0, 2, 1, 1]         # class 2 never true: its recall is 0/0
    assert macro_sensitivity(y, pred) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert macro_sensitivity(y, pred, zero_division=np.nan) == pytest.approx(3 / 4)
    assert macro_sensitivity(y, pred, zero_division=np.nan) == pytest.approx(balanced_accuracy(y, pred))
    assert macro_specificity(y, pred) == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert macro_f1(y, pred, labels=[0, 1]) == pytest.approx((2 / 3 + 1) / 2)
    # every patient in one class: specificity has no negative -> zero_division
    assert macro_specificity([1, 1], [1, 1]) == 0.0
    assert math.isnan(macro_specificity([1, 1], [1, 1], zero_division=np.nan))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.5, y, rng.integers(0, 5, 60))   # class 4 only predicted
    for zd in (0.0, np.nan):
        assert macro_f1(y, pred, zero_division=zd) == pytest.approx(
            f1_score(y, pred, average="macro", zero_division=zd))
        assert macro_sensitivity(y, pred, zero_division=zd) == pytest.approx(
            recall_score(y, pred, average="macro", zero_division=zd))
    mcm = multilabel_confusion_matrix(y, pred)                # [[tn, fp], [fn, tp]] per class
    spec = [m[0, 0] / (m[0, 0] + m[0, 1]) for m in mcm]
    assert macro_specificity(y, pred) == pytest.approx(np.mean(spec))


def test_unknown_labels_are_ignored_and_empty_is_nan():
    assert macro_f1([0, 1, -1], [0, 1, 2]) == 1.0
    assert math.isnan(macro_f1([-1, -1], [0, 1]))
    assert math.isnan(macro_auc([-1, -1], np.full((2, 2), 0.5)))


def test_macro_auc_hand_computed_and_sklearn():
    # class 0: 7/8 pairs; class 1: 7.5/8 (one tie); class 2: 8/8
    assert macro_auc(Y, PROB) == pytest.approx((7 / 8 + 7.5 / 8 + 1) / 3)
    assert macro_auc(Y, PROB) == pytest.approx(roc_auc_score(Y, PROB, multi_class="ovr"))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, 50)
    assert macro_auc(y, prob) == pytest.approx(roc_auc_score(y, prob, multi_class="ovr", average="macro"))


def test_macro_auc_skips_absent_classes_without_renormalising():
    y = Y[:4]                                   # class 2 absent: mean over classes 0 and 1
    assert macro_auc(y, PROB[:4]) == pytest.approx((3 / 4 + 3.5 / 4) / 2)
    assert macro_auc(y, PROB[:4] * [[1, 1, 5]]) == pytest.approx((3 / 4 + 3.5 / 4) / 2)   # column 2 unused
    assert math.isnan(macro_auc([1, 1, 1], PROB[:3]))   # one class: undefined


def test_macro_auc_binary_uses_positive_column():
    y = np.array([0, 1, 0, 1, 1, 0])
    p1 = np.array([.2, .8, .6, .4, .9, .1])
    prob = np.c_[1 - p1, p1]
    assert macro_auc(y, prob) == pytest.approx(roc_auc_score(y, p1))
    assert macro_auc(y, prob) == pytest.approx(8 / 9)


def test_bad_input_raises_with_a_fix():
    with pytest.raises(InputError, match="fix"):
        macro_auc([0, 1], [0.2, 0.8])                     # 1-D score
    with pytest.raises(InputError, match="differ in length"):
        macro_auc([0, 1, 1], PROB[:2])
    with pytest.raises(InputError, match="no probability column"):
        macro_auc([0, 3], PROB[:2])
    with pytest.raises(InputError, match="non-finite"):
        macro_auc([0, 1], [[np.nan, 1.0], [0.5, 0.5]])
    with pytest.raises(InputError, match="differ in length"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValueError):                         # InputError is a ValueError
        macro_specificity([0, 1], [0, 1], labels=[])


def test_classification_summary():
    s = classification_summary(Y, PROB)
    pred = PROB.argmax(1)
    assert s == pytest.approx({"auc": macro_auc(Y, PROB), "accuracy": accuracy(Y, pred),
                               "sensitivity": macro_sensitivity(Y, pred), "specificity": macro_specificity(Y, pred),
                               "f1": macro_f1(Y, pred)})
