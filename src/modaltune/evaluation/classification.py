"""Macro-averaged classification metrics, as the disentangled histology-transcriptomics paper reports them.

The paper's tables (diagnosis, grading) give AUC / accuracy / sensitivity / specificity / F1, each a
*macro* average over classes, computed by its code with scikit-learn and imbalanced-learn. We compute
the same numbers here without the imbalanced-learn dependency, and say exactly which classes enter
each mean, because that choice moves the numbers when a fold's test set lacks a class:

* :func:`macro_auc` averages one-vs-rest ROC-AUCs over the classes *present in* ``y`` (an AUC needs
  positives and negatives); unlike :func:`modaltune.evaluation.metrics.auc` it never renormalises
  the probability columns, so it equals scikit-learn's ``roc_auc_score(multi_class="ovr")`` whenever
  every class is present.
* :func:`macro_f1`, :func:`macro_sensitivity`, :func:`macro_specificity` average over the union of
  the classes in ``y`` and in ``pred`` (the scikit-learn / imbalanced-learn default), or over
  ``labels`` when given. A per-class score whose denominator is 0 (e.g. the recall of a class that
  is only predicted) counts as ``zero_division`` (0, as in the official code); ``zero_division=nan``
  leaves such classes out of the mean instead.

Conventions of :mod:`modaltune.evaluation.metrics` hold: labels below 0 (unknown) are ignored, and a
metric without any usable patient is NaN. Malformed input (lengths that differ, a 1-D score where
class probabilities are needed, a label without a probability column) raises :class:`InputError`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .metrics import accuracy

__all__ = ["macro_auc", "macro_f1", "macro_sensitivity", "macro_specificity", "classification_summary"]


def _labels_and_pred(y, pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    if y.shape != pred.shape:
        raise InputError(f"labels and predictions differ in length: {y.shape[0]} vs {pred.shape[0]}",
                         fix="pass one prediction per patient, in the order of the labels")
    keep = y >= 0
    return y[keep].astype(np.int64), pred[keep].astype(np.int64)


def _per_class_counts(y: np.ndarray, pred: np.ndarray, labels) -> tuple[np.ndarray, ...]:
    """Return ``(tp, fp, fn, tn)`` per class in ``labels`` (one-vs-rest confusion counts)."""
    cls = np.asarray(labels, dtype=np.int64).reshape(-1, 1)
    is_y, is_p = y[None, :] == cls, pred[None, :] == cls
    tp = np.sum(is_y & is_p, axis=1)
    fp = np.sum(~is_y & is_p, axis=1)
    fn = np.sum(is_y & ~is_p, axis=1)
    tn = y.size - tp - fp - fn
    return tp, fp, fn, tn


def _macro(num: np.ndarray, den: np.ndarray, zero_division: float) -> float:
    """Mean over classes of ``num / den``; a 0 denominator gives ``zero_division`` (NaN: class skipped)."""
    scores = np.full(num.shape, float(zero_division))
    ok = den > 0
    scores[ok] = num[ok] / den[ok]
    scores = scores[np.isfinite(scores)]
    return float(scores.mean()) if scores.size else float("nan")


def _prepare(y, pred, labels: Sequence[int] | None):
    y, pred = _labels_and_pred(y, pred)
    if y.size == 0:
        return None
    labels = np.union1d(y, pred) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0:
        raise InputError("`labels` is empty", fix="pass the class indices to average over, or None")
    return _per_class_counts(y, pred, labels)


def macro_sensitivity(y, pred, *, labels: Sequence[int] | None = None, zero_division: float = 0.0) -> float:
    """Macro recall: the mean over classes of TP / (TP + FN).

    Args:
        y: true class per patient; labels < 0 are ignored.
        pred: predicted class per patient.
        labels: classes to average over (default: those in ``y`` or ``pred``).
        zero_division: score of a class absent from ``y`` (0 as scikit-learn; NaN skips the class).

    Returns:
        The macro sensitivity, NaN when no patient has a label >= 0. With the default classes it
        equals ``sklearn.metrics.recall_score(y, pred, average="macro")``; it equals balanced
        accuracy when every predicted class occurs in ``y``.
    """
    counts = _prepare(y, pred, labels)
    if counts is None:
        return float("nan")
    tp, _, fn, _ = counts
    return _macro(tp, tp + fn, zero_division)


def macro_specificity(y, pred, *, labels: Sequence[int] | None = None, zero_division: float = 0.0) -> float:
    """Macro specificity: the mean over classes of TN / (TN + FP) (imbalanced-learn's ``specificity_score``).

    Args:
        y: true class per patient; labels < 0 are ignored.
        pred: predicted class per patient.
        labels: classes to average over (default: those in ``y`` or ``pred``).
        zero_division: score of a class with no negative patient (every patient in that class).

    Returns:
        The macro specificity, NaN when no patient has a label >= 0.
    """
    counts = _prepare(y, pred, labels)
    if counts is None:
        return float("nan")
    _, fp, _, tn = counts
    return _macro(tn, tn + fp, zero_division)


def macro_f1(y, pred, *, labels: Sequence[int] | None = None, zero_division: float = 0.0) -> float:
    """Macro F1: the mean over classes of 2 TP / (2 TP + FP + FN).

    Args:
        y: true class per patient; labels < 0 are ignored.
        pred: predicted class per patient.
        labels: classes to average over (default: those in ``y`` or ``pred``).
        zero_division: score of a class neither in ``y`` nor predicted (only possible with ``labels``).

    Returns:
        The macro F1, NaN when no patient has a label >= 0. Equals
        ``sklearn.metrics.f1_score(y, pred, average="macro")``.
    """
    counts = _prepare(y, pred, labels)
    if counts is None:
        return float("nan")
    tp, fp, fn, _ = counts
    return _macro(2 * tp, 2 * tp + fp + fn, zero_division)


def _probabilities(y, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).reshape(-1)
    p = np.asarray(prob, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"macro AUC needs class probabilities of shape [n, C] with C >= 2, got {p.shape}",
                         fix="pass softmax probabilities (one column per class); a 1-D binary score "
                             "goes to modaltune.evaluation.metrics.auc")
    if p.shape[0] != y.shape[0]:
        raise InputError(f"labels and probabilities differ in length: {y.shape[0]} vs {p.shape[0]}",
                         fix="pass one row of probabilities per patient, in the order of the labels")
    keep = y >= 0
    y, p = y[keep].astype(np.int64), p[keep]
    if y.size and y.max() >= p.shape[1]:
        raise InputError(f"label {int(y.max())} has no probability column (only {p.shape[1]} columns)",
                         fix="number the classes 0..C-1 as the model's output columns")
    if not np.all(np.isfinite(p)):
        raise InputError(f"{int((~np.isfinite(p).all(1)).sum())} patient(s) have non-finite probabilities",
                         fix="drop those patients or check the model output before scoring")
    return y, p


def macro_auc(y, prob) -> float:
    """One-vs-rest macro ROC-AUC of class probabilities.

    Each class ``c`` present in ``y`` contributes the binary AUC of ``prob[:, c]`` for "class c vs
    the rest"; classes absent from ``y`` are skipped (their AUC is undefined), so a test fold that
    lacks a class averages over fewer classes. Columns are used as given (no renormalisation).
    With two columns the AUC of the positive column ``prob[:, 1]`` is returned (for probabilities
    summing to 1 the two one-vs-rest AUCs are equal anyway).

    Args:
        y: true class per patient (0..C-1); labels < 0 are ignored.
        prob: ``[n, C]`` probabilities (or any scores where higher = more likely that class).

    Returns:
        The macro AUC; NaN when fewer than two classes are present in ``y``. Equals
        ``sklearn.metrics.roc_auc_score(y, prob, multi_class="ovr")`` when all C classes are present.

    Raises:
        InputError: ``prob`` is not ``[n, C]`` with C >= 2, lengths differ, a label has no column,
            or a probability is not finite.
    """
    from sklearn.metrics import roc_auc_score

    y, p = _probabilities(y, prob)
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    if p.shape[1] == 2:
        return float(roc_auc_score(y == 1, p[:, 1]))
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))


def classification_summary(y, prob) -> dict[str, float]:
    """The five numbers of the paper's tables from one set of probabilities.

    Args:
        y: true class per patient (0..C-1); labels < 0 are ignored.
        prob: ``[n, C]`` class probabilities; the predicted class is the arg-max (ties: lowest index).

    Returns:
        ``{"auc", "accuracy", "sensitivity", "specificity", "f1"}`` (macro averages as documented
        in this module; NaN where undefined).
    """
    y_valid, p = _probabilities(y, prob)
    pred = p.argmax(axis=1)
    out = {"auc": macro_auc(y_valid, p), "accuracy": accuracy(y_valid, pred),
           "sensitivity": macro_sensitivity(y_valid, pred), "specificity": macro_specificity(y_valid, pred),
           "f1": macro_f1(y_valid, pred)}
    return {k: float(v) for k, v in out.items()}
