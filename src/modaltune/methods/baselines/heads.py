"""Shared pieces of the label-supervised baselines: task head, label loss, base class.

Every baseline of ModalTune Sec. 4.2 is trained single-task: ``cfg["model"]["task"]`` is
``"subtype"`` (``info.n_classes`` logits, cross-entropy; patients with ``subtype == -1``, the
rare set or unknown, contribute no loss) or ``"survival"`` (``info.n_bins`` discrete-time hazard
logits, the NLL of Zadeh & Schmid as used by MCAT/SurvPath with ``alpha``; patients without
survival or with an unknown bin contribute no loss). A patient that contributes no loss gets a
zero that still carries the graph (``(0 * output).sum()``).

A subclass of :class:`LabelMethod` only builds its encoder(s) and implements
:meth:`LabelMethod.represent` (one patient -> penultimate representation ``[1,H]``); the head,
``loss``, ``embed`` and ``predict`` are shared.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..losses import nll_survival_loss, survival_risk
from ..base import CohortInfo, Method

TASKS = ("subtype", "survival")

__all__ = ["TASKS", "TaskHead", "label_loss", "LabelMethod", "as_bag", "as_omics", "flag",
           "merged_config", "cohort_pathways", "has_bag", "has_omics"]


class TaskHead(nn.Module):
    """Linear task head: ``n_classes`` logits (subtype) or ``n_bins`` hazard logits (survival)."""

    def __init__(self, in_dim: int, task: str, n_classes: int, n_bins: int, dropout: float = 0.0):
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"model.task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.n_out = n_classes if task == "subtype" else n_bins
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, self.n_out)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(self.drop(h))


def _scalar(batch: dict, key: str, default: float | int | bool) -> Tensor:
    v = batch.get(key, default)
    if not torch.is_tensor(v):
        v = torch.tensor(v)
    return v.reshape(-1)[0] if v.numel() else torch.tensor(default)


def flag(batch: dict, key: str, default: bool = True) -> bool:
    """A patient-level boolean (``has_wsi``, ...) as a Python bool."""
    return bool(_scalar(batch, key, default).item())


def label_loss(task: str, out: Tensor, batch: dict, alpha: float = 0.4) -> tuple[Tensor, dict[str, float]]:
    """Loss of one patient's head output ``out`` ([K] or [1,K]).

    Returns ``(loss, logs)``; ``logs["counted"]`` is 1.0 when the patient contributed a loss.
    """
    out = out.reshape(-1).float()
    if task == "subtype":
        y = int(_scalar(batch, "subtype", -1).item())
        if y < 0:
            return (0 * out).sum(), {"loss": 0.0, "counted": 0.0}
        loss = F.cross_entropy(out.unsqueeze(0), torch.tensor([y], device=out.device))
    else:
        b = int(_scalar(batch, "survival_bin", -1).item())
        if not flag(batch, "has_survival", True) or b < 0:
            return (0 * out).sum(), {"loss": 0.0, "counted": 0.0}
        event = _scalar(batch, "event", 0.0).float().to(out.device)
        loss = nll_survival_loss(out, torch.tensor(b, device=out.device), event, alpha=alpha)
        loss = loss.reshape(-1).mean()
    return loss, {"loss": float(loss.detach()), "counted": 1.0}


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


def has_bag(batch: dict) -> bool:
    """True when the patient has a WSI bag with at least one patch."""
    bag = batch.get("bag")
    return flag(batch, "has_wsi", True) and bag is not None and bag.shape[-2] > 0


def has_omics(batch: dict) -> bool:
    """True when the patient has transcriptomics."""
    return flag(batch, "has_omics", True) and batch.get("omics") is not None


class LabelMethod(Method):
    """Base of the label-supervised baselines (single task, one patient per step).

    Config keys shared by all baselines: ``model.task`` ("subtype" | "survival"),
    ``model.head_dropout``, ``model.surv_alpha`` (NLL weight of uncensored terms, 0.4).
    Subclasses set ``self.head = self.make_head(H)`` and implement :meth:`represent`.
    """

    supervision: ClassVar[str] = "labels"
    tasks: ClassVar[tuple[str, ...]] = TASKS

    @classmethod
    def base_config(cls) -> dict[str, Any]:
        return {
            "model": {"task": "subtype", "head_dropout": 0.0, "surv_alpha": 0.4},
            "train": {"epochs": 20, "lr": 2e-4, "weight_decay": 1e-5, "warmup_epochs": 1,
                      "accumulate": 32},
        }

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = {**self.default_config()["model"], **(cfg.get("model") or {})}
        self.mcfg = m
        self.task = m["task"]
        if self.task not in TASKS:
            raise ConfigError(f"model.task must be one of {TASKS} for baseline "
                              f"'{getattr(self, 'registry_name', type(self).__name__)}', got {self.task!r}")

    def make_head(self, in_dim: int) -> TaskHead:
        return TaskHead(in_dim, self.task, self.info.n_classes, self.info.n_bins, self.mcfg.get("head_dropout", 0.0))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def represent(self, batch: dict) -> Tensor:
        """Penultimate representation [1,H] of one patient."""
        raise NotImplementedError

    def forward(self, batch: dict) -> Tensor:
        """Head output [K] of one patient."""
        return self.head(self.represent(batch)).reshape(-1)

    def loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        return label_loss(self.task, self(batch), batch, self.mcfg.get("surv_alpha", 0.4))

    def embed(self, batch: dict) -> Tensor:
        return self.represent(batch).reshape(-1)

    def predict(self, batch: dict) -> dict[str, Tensor | None]:
        out = self(batch).float()
        if self.task == "subtype":
            return {"logits": out, "risk": None}
        return {"logits": None, "risk": survival_risk(out).reshape(())}


def merged_config(extra_model: dict[str, Any], extra_train: dict[str, Any] | None = None) -> dict[str, Any]:
    """``LabelMethod.base_config()`` updated with a method's own model/train keys."""
    cfg = LabelMethod.base_config()
    cfg["model"].update(extra_model)
    cfg["train"].update(extra_train or {})
    return cfg


def cohort_pathways(info: CohortInfo) -> list:
    """The cohort's non-empty pathways; contiguous gene chunks of 100 when it has none."""
    from ...encoders.omics import chunk_pathways

    paths = [p for p in (info.pathways or []) if len(p) > 0]
    return paths if paths else chunk_pathways(info.n_genes)

