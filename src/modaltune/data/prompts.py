"""Text prompts of a patient (ModalTune supplementary Sec. 9, Fig. 4).

One prompt per task, items joined by ``"; "`` in this order::

    general:   Cancer location; Cancer diagnosis; Overall stage; Tumor stage status; Lymph node status;
               Distant metastasis status; Survival status
    survival:  the same without Cancer diagnosis
    diagnosis: Cancer location; Cancer diagnosis

e.g. (Fig. 4) ``"Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma; Overall stage:
stage one; Tumor stage status: tumor stage one; Lymph node status: cancer has not spread to lymph
nodes; Distant metastasis status: no metastasis detected; Survival status: The patient was censored
between 55 and 283 months"``. A missing item (None, NaN, empty, or any other missing-value token of
:data:`~modaltune.data.formats.MISSING_TOKENS`) is left out. The survival status
needs train-fitted bin edges (:func:`modaltune.data.labels.fit_survival_bins`); without edges or
without a survival time/event it is left out.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .formats.tables import text_or_none
from .labels import assign_bins

__all__ = ["TASKS", "PROMPT_ITEMS", "build_prompts", "survival_status_text", "bin_text"]

#: Prompt tasks, in the row order of a patient's text embeddings.
TASKS: tuple[str, ...] = ("general", "survival", "diagnosis")

_ITEMS = (  # (row key, label)
    ("location", "Cancer location"),
    ("diagnosis_text", "Cancer diagnosis"),
    ("stage", "Overall stage"),
    ("t", "Tumor stage status"),
    ("n", "Lymph node status"),
    ("m", "Distant metastasis status"),
)

#: Names of the prompt items (``text.omit`` may leave any of them out).
PROMPT_ITEMS: tuple[str, ...] = tuple(k for k, _ in _ITEMS) + ("survival_status",)


def _number(v: Any) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))  # half up (Python's round() is half-to-even)


def bin_text(k: int, edges: np.ndarray) -> str:
    """Words of bin ``k``: ``"before 15 months"`` (first bin) or ``"between 15 and 27 months"`` (rounded)."""
    edges = np.asarray(edges, dtype=float)
    if k == 0:
        return f"before {_round(edges[1])} months"
    return f"between {_round(edges[k])} and {_round(edges[k + 1])} months"


def survival_status_text(months: Any, event: Any, edges: np.ndarray | None) -> str | None:
    """``"The patient died|was censored"`` + the words of the patient's bin, or None.

    Args:
        months: survival (or censoring) time in months.
        event: 1 = died, 0 = censored.
        edges: bin edges (train-fitted).

    Returns:
        e.g. ``"The patient was censored between 55 and 283 months"``; None when months, event or
        edges are missing, or months is negative.
    """
    t, e = _number(months), _number(event)
    if t is None or e is None or edges is None or t < 0:
        return None
    edges = np.asarray(edges, dtype=float)
    k = int(assign_bins(np.asarray([t]), edges)[0])
    if k < 0:
        return None
    who = "The patient died" if e >= 0.5 else "The patient was censored"
    return f"{who} {bin_text(k, edges)}"


def build_prompts(row: Mapping, bin_edges: np.ndarray | None) -> dict[str, str]:
    """The three prompts of one patient.

    Args:
        row: manifest row with ``location``, ``diagnosis_text``, ``stage``, ``t``, ``n``, ``m`` (already
            in words, see :mod:`modaltune.data.labels`), ``survival_months`` and ``event``; missing keys
            and missing values (:func:`~modaltune.data.formats.is_missing`) are omitted from the prompts.
        bin_edges: survival bin edges of the patient's site (train-fitted), or None (no survival status).

    Returns:
        ``{task: prompt}`` for every task in :data:`TASKS` (a prompt may be ``""`` when nothing is known).
    """
    values = {key: text_or_none(row.get(key)) for key, _ in _ITEMS}
    status = survival_status_text(row.get("survival_months"), row.get("event"), bin_edges)
    labelled = [(label, values[key]) for key, label in _ITEMS] + [("Survival status", status)]

    def join(labels: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> str:
        return "; ".join(f"{label}: {v}" for label, v in labelled
                         if v is not None and label not in skip and (labels is None or label in labels))

    return {
        "general": join(),
        "survival": join(skip=("Cancer diagnosis",)),
        "diagnosis": join(labels=("Cancer location", "Cancer diagnosis")),
    }
