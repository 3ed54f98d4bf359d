"""The base of the label-trained baselines: task head, label loss, shared declaration.

Every baseline of ModalTune Sec. 4.2 is trained single-task: ``cfg["model"]["task"]`` is
``"subtype"`` (cross-entropy over the patient's site's classes; patients with ``subtype == -1``, the
rare set or unknown, contribute no loss) or ``"survival"`` (``info.n_bins`` discrete-time hazard
logits, the NLL of Zadeh & Schmid as used by MCAT/SurvPath with ``alpha``; patients without survival
or with an unknown bin contribute no loss). A patient that contributes no loss gets a zero that
still carries the graph (``(0 * output).sum()``). A benchmark trains one run per task
(``task_runs``).

The subtype head is site-aware (:meth:`~modaltune.methods.base.CohortInfo.subtype_slice`): trained
on one site it is that site's head, as in the paper; pooled over several sites (``:pan``) each site
owns its own logits, so class 0 of one site is never class 0 of another, and predictions are the
arg-max over the patient's own site's classes.

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
from ..base import CohortInfo, LossOutput, Method
from ..inputs import flag, scalar
from ..losses import balanced_class_weights, nll_survival_loss, survival_risk

TASKS = ("subtype", "survival")

__all__ = ["TASKS", "TaskHead", "label_loss", "LabelMethod", "merged_config", "cohort_pathways"]


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
        """Logits of a representation."""
        return self.fc(self.drop(h))


def label_loss(task: str, out: Tensor, batch: dict, alpha: float = 0.4,
               weight: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Loss of one patient's head output ``out`` ([K] or [1,K]; for subtypes, the site's logits).

    ``weight`` ([K], subtypes only): the cross-entropy is multiplied by the weight of the patient's
    class (a weighted mean over the patients of an accumulated step, up to its normalisation).
    Returns ``(loss, logs)``; ``logs["counted"]`` is 1.0 when the patient contributed a loss.
    """
    out = out.reshape(-1).float()
    if task == "subtype":
        y = int(scalar(batch, "subtype", -1).item())
        if y < 0:
            return (0 * out).sum(), {"loss": 0.0, "counted": 0.0}
        loss = F.cross_entropy(out.unsqueeze(0), torch.tensor([y], device=out.device))
        if weight is not None:
            loss = loss * weight[y].to(loss)
    else:
        b = int(scalar(batch, "survival_bin", -1).item())
        if not flag(batch, "has_survival", True) or b < 0:
            return (0 * out).sum(), {"loss": 0.0, "counted": 0.0}
        event = scalar(batch, "event", 0.0).float().to(out.device)
        loss = nll_survival_loss(out, torch.tensor(b, device=out.device), event, alpha=alpha)
        loss = loss.reshape(-1).mean()
    return loss, {"loss": float(loss.detach()), "counted": 1.0}


class LabelMethod(Method):
    """Base of the label-supervised baselines (single task, one patient per step).

    Config keys shared by all baselines: ``model.task`` ("subtype" | "survival"),
    ``model.head_dropout``, ``model.surv_alpha`` (NLL weight of uncensored terms, 0.4).
    Subclasses set ``self.head = self.make_head(H)`` and implement :meth:`represent`.
    """

    evaluation: ClassVar[str] = "predict"
    tasks: ClassVar[tuple[str, ...]] = TASKS
    task_runs: ClassVar[tuple[str, ...]] = TASKS
    loss_terms: ClassVar[tuple[str, ...]] = ("loss",)

    @classmethod
    def base_config(cls) -> dict[str, Any]:
        """Settings every baseline shares (model task, head, schedule)."""
        return {
            "model": {"task": "subtype", "head_dropout": 0.0, "surv_alpha": 0.4, "class_weights": "none"},
            "train": {"epochs": 20, "lr": 2e-4, "weight_decay": 1e-5, "warmup_epochs": 1,
                      "accumulate": 32},
        }

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The shared settings (subclasses add their encoder's with :func:`merged_config`)."""
        return cls.base_config()

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = {**self.default_config()["model"], **(cfg.get("model") or {})}
        self.mcfg = m
        self.task = m["task"]
        if self.task not in TASKS:
            raise ConfigError(f"model.task must be one of {TASKS} for baseline "
                              f"'{getattr(self, 'registry_name', type(self).__name__)}', got {self.task!r}")
        weighting = m.get("class_weights", "none")
        if weighting not in ("none", "balanced"):
            raise ConfigError(f"model.class_weights must be 'none' or 'balanced', got {weighting!r}")
        self.register_buffer("class_weights", self._class_weights(weighting), persistent=False)

    def _class_weights(self, weighting: str) -> Tensor:
        """``balanced``: ``max_k n_k / n_c`` per site (training patients), scaled so that the average
        training patient weighs 1 (the learning rate keeps its meaning); ``none``: all 1."""
        n_out = max(1, int(self.info.n_classes))
        if self.task != "subtype" or weighting == "none":
            return torch.ones(n_out)
        w = balanced_class_weights(self.info, n_out)
        weighted = total = 0.0
        for site, counts in (self.info.train_class_counts or {}).items():
            sl = self.info.subtype_slice(site)
            for c, n in enumerate(counts[: sl.stop - sl.start]):
                weighted, total = weighted + n * float(w[sl.start + c]), total + n
        return w * (total / weighted) if weighted > 0 else w

    def make_head(self, in_dim: int) -> TaskHead:
        """The task head on a representation of width ``in_dim``."""
        return TaskHead(in_dim, self.task, self.info.n_classes, self.info.n_bins, self.mcfg.get("head_dropout", 0.0))

    @property
    def device(self) -> torch.device:
        """Device of the method's parameters."""
        return next(self.parameters()).device

    def represent(self, batch: dict) -> Tensor:
        """Penultimate representation [1,H] of one patient."""
        raise NotImplementedError

    def forward(self, batch: dict) -> Tensor:
        """Head output [K] of one patient."""
        return self.head(self.represent(batch)).reshape(-1)

    def site_logits(self, out: Tensor, batch: dict) -> Tensor:
        """The patient's own site's subtype logits of a head output ``[K]``."""
        return out[self.info.subtype_slice(str(batch.get("site", "")))]

    def task_loss(self, out: Tensor, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """:func:`label_loss` of a head output ``[K]`` (the site's logits and class weights for subtypes)."""
        weight = None
        if self.task == "subtype":
            sl = self.info.subtype_slice(str(batch.get("site", "")))
            out, weight = out.reshape(-1)[sl], self.class_weights[sl]
        return label_loss(self.task, out, batch, self.mcfg.get("surv_alpha", 0.4), weight=weight)

    def loss(self, batch: dict) -> LossOutput:
        """The task loss of one patient (one term, ``loss``)."""
        loss, logs = self.task_loss(self(batch), batch)
        return LossOutput({"loss": loss}, logs)

    def embed(self, batch: dict) -> Tensor:
        """The penultimate representation ``[H]``."""
        return self.represent(batch).reshape(-1)

    def predict(self, batch: dict) -> dict[str, Tensor | None]:
        """Subtype logits of the patient's site, or the survival risk."""
        out = self(batch).float()
        if self.task == "subtype":
            return {"logits": self.site_logits(out, batch), "risk": None}
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

