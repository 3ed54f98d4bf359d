"""The method contract every registered method follows (see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from torch import nn


@dataclass
class CohortInfo:
    """What a method needs to know about the data to build itself."""

    feature_dim: int = 0
    feature_dim_secondary: int = 0
    n_genes: int = 0
    pathways: list[np.ndarray] = field(default_factory=list)
    pathway_names: list[str] = field(default_factory=list)
    n_classes: int = 2
    n_bins: int = 4
    sites: list[str] = field(default_factory=list)
    text_dim: int = 384
    task: str = "multi"


class Method(nn.Module):
    """Base class of registered methods.

    Subclasses declare the modalities they need, how they are supervised, and implement
    :meth:`loss`, :meth:`embed` and :meth:`predict` over one patient dict (no batch dim).
    """

    modalities: ClassVar[tuple[str, ...]] = ()
    supervision: ClassVar[str] = "labels"
    tasks: ClassVar[tuple[str, ...]] = ("subtype", "survival")
    family: ClassVar[str] = "other"  # WSI | Genomics | Multi-modal | ModalTune | ... (benchmark tables)

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__()
        self.cfg = cfg
        self.info = info

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"model": {}}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def embed(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, batch: dict) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)
