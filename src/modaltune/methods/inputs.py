"""Reading one patient's inputs inside a method: flags, bags and omics with a batch dimension.

Shared by every method family, so the patient record's conventions (``has_*`` flags as 0-d
tensors, ragged ``bag`` ``[N, D]``, ``omics`` ``[G]``) are interpreted in one place.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["scalar", "flag", "as_bag", "as_omics", "as_report_tokens", "has_bag", "has_omics", "has_report_tokens"]


def scalar(batch: dict, key: str, default: float | int | bool) -> Tensor:
    """A patient-level value (``subtype``, ``event``, ...) as a 0-d tensor (``default`` when absent)."""
    v = batch.get(key, default)
    if not torch.is_tensor(v):
        v = torch.tensor(v)
    return v.reshape(-1)[0] if v.numel() else torch.tensor(default)


def flag(batch: dict, key: str, default: bool = True) -> bool:
    """A patient-level boolean (``has_wsi``, ...) as a Python bool."""
    return bool(scalar(batch, key, default).item())


def as_bag(batch: dict, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The patient's bag as [1,N,D] (and coords [1,N,2] when present)."""
    bag = batch["bag"]
    if bag.dim() == 2:
        bag = bag.unsqueeze(0)
    coords = batch.get("coords")
    if coords is not None and coords.dim() == 2:
        coords = coords.unsqueeze(0)
    return bag.to(device), (coords.to(device) if coords is not None else None)


def as_omics(batch: dict, device: torch.device) -> Tensor:
    """The patient's omics as [1,G]."""
    x = batch["omics"]
    return (x.unsqueeze(0) if x.dim() == 1 else x).to(device).float()


def as_report_tokens(batch: dict, device: torch.device) -> Tensor:
    """The patient's report token states as [1,L,Dr]."""
    x = batch["report_tokens"]
    return (x.unsqueeze(0) if x.dim() == 2 else x).to(device).float()


def has_bag(batch: dict) -> bool:
    """True when the patient has a WSI bag with at least one patch."""
    bag = batch.get("bag")
    return flag(batch, "has_wsi", True) and bag is not None and bag.shape[-2] > 0


def has_omics(batch: dict) -> bool:
    """True when the patient has transcriptomics."""
    return flag(batch, "has_omics", True) and batch.get("omics") is not None


def has_report_tokens(batch: dict) -> bool:
    """True when the patient has a report with at least one token state."""
    tokens = batch.get("report_tokens")
    return flag(batch, "has_report", True) and tokens is not None and tokens.shape[-2] > 0
