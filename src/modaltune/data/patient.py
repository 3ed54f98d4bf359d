"""The patient record: its keys (defined here only), the declared inputs, and how patients batch.

:class:`~modaltune.data.dataset.PatientDataset` yields one :class:`Patient` per case. The labels and
availability flags are always there; the heavier inputs only when a method declares them
(:data:`INPUTS`), so a genomics-only method never reads a slide file.

Batching (declared by the method, :data:`BATCHING`):

- ``single``: one patient dict per step (:func:`collate_single`), the bag ragged ``[N, D]``;
- ``list``: a list of patient dicts (:func:`collate_list`), bags ragged, for losses that compare
  patients (e.g. a contrastive loss across a batch);
- ``stack``: one dict of stacked tensors (:func:`collate_stack`), which needs fixed-size bags.
"""

from __future__ import annotations

from typing import Any, Sequence, TypedDict

import torch

__all__ = ["Patient", "INPUTS", "BATCHING", "LABEL_KEYS", "collate_single", "collate_list", "collate_stack",
           "collate_for", "batch_size_of"]

#: Inputs a method can declare (``Method.declare().inputs``).
INPUTS = frozenset({
    "bag",               # primary WSI bag ``bag`` [N, D] + ``coords`` [N, 2] (level-0 pixels), ragged
    "bag_secondary",     # second magnification ``bag_secondary`` / ``coords_secondary``
    "fixed_bags",        # bags resampled to data.grid**2 patches in (y, x) raster order (both magnifications)
    "omics",             # ``omics`` [G], standardised with the train-fitted scaler
    "text_targets",      # ``text_emb`` [3, Dt]: the patient's prompts through the frozen text encoder
    "report_text",       # ``report``: the raw report string ("" when absent)
    "report_embedding",  # ``report_emb`` [Dr]: the report's vector from the frozen text encoder (cached)
    "report_tokens",     # ``report_tokens`` [L, Dr]: the report's token states (cached)
})

BATCHING = ("single", "list", "stack")

#: Keys every patient has, whatever the method declares.
LABEL_KEYS = ("case_id", "site", "index", "has_wsi", "has_wsi_secondary", "has_omics", "has_report", "subtype",
              "survival_months", "event", "has_survival", "survival_bin", "prompts")


class Patient(TypedDict, total=False):
    """One patient, as the dataset yields it (tensors on CPU, no batch dimension)."""

    case_id: str
    site: str
    index: int                        # position in the dataset
    bag: torch.Tensor                 # [N, D] float32
    coords: torch.Tensor              # [N, 2] float32, level-0 pixels (x, y)
    bag_secondary: torch.Tensor       # [N2, D2]
    coords_secondary: torch.Tensor    # [N2, 2]
    omics: torch.Tensor               # [G]
    has_wsi: torch.Tensor             # bool
    has_wsi_secondary: torch.Tensor   # bool
    has_omics: torch.Tensor           # bool
    has_report: torch.Tensor          # bool
    subtype: torch.Tensor             # long, class index within the site (-1: none / rare)
    survival_months: torch.Tensor     # float32
    event: torch.Tensor               # float32, 1 = event observed
    has_survival: torch.Tensor        # bool
    survival_bin: torch.Tensor        # long, -1 when unknown
    prompts: list[str]                # general / survival / diagnosis prompts
    text_emb: torch.Tensor            # [3, Dt]
    report: str
    report_emb: torch.Tensor          # [Dr]
    report_tokens: torch.Tensor       # [L, Dr]


def collate_single(batch_list: Sequence[dict]) -> dict:
    """Collate for batch size 1: the only patient dict, unchanged."""
    if len(batch_list) != 1:
        raise ValueError(f"collate_single expects batch size 1, got {len(batch_list)} (use batch_size=1)")
    return batch_list[0]


def collate_list(batch_list: Sequence[dict]) -> list[dict]:
    """A list of patient dicts (ragged bags stay ragged)."""
    return list(batch_list)


def collate_stack(batch_list: Sequence[dict]) -> dict[str, Any]:
    """Stack every tensor key along a new batch dimension; other values become lists.

    Raises:
        ValueError: a tensor key has different shapes across patients (ragged bags cannot be
            stacked: declare ``fixed_bags`` or ``batching = "list"``).
    """
    out: dict[str, Any] = {}
    for key in batch_list[0]:
        values = [p[key] for p in batch_list]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot stack '{key}': shapes {sorted(shapes)} differ across patients; declare "
                                 "'fixed_bags' for bags, or batching='list'")
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def collate_for(batching: str):
    """The collate function of a batching mode."""
    return {"single": collate_single, "list": collate_list, "stack": collate_stack}[batching]


def batch_size_of(batch: Any) -> int:
    """Number of patients in a collated batch."""
    if isinstance(batch, list):
        return len(batch)
    ids = batch.get("case_id")
    return len(ids) if isinstance(ids, list) else 1
