"""The method contract every registered method follows (see docs/architecture.md).

A method is an ``nn.Module`` that *declares* what it needs and how it is judged, and implements
``loss`` / ``embed`` / ``predict``. The engine acts on the declaration, never on the method's name:

- :meth:`Method.declare` returns a :class:`Declaration`: the inputs the dataset must build (bags at
  one or two magnifications, fixed-size bags, omics, text targets, report embeddings or tokens),
  how patients are batched (one patient, a list of ragged patients, or a stacked batch), the
  evaluation protocol (``probe``: linear probes on :meth:`embed`; ``predict``: the method's own
  :meth:`predict`), the tasks one run yields, and the smallest batch its loss is defined for.
- :meth:`Method.loss` returns a :class:`LossOutput`: named loss terms (tensors) that the engine
  weights (``train.loss_weights``) and sums, logs, and batch statistics that the engine sums over
  micro-batches and ranks for a gradient hook (:meth:`Method.adjust_gradients`).
- :meth:`Method.param_groups` gives learning rate and weight decay per group; the engine forwards
  epoch and optimiser-step hooks.
- :meth:`Method.stages` chains runs: a stage may start from an earlier stage's weights
  (``init_from``) or hold an earlier stage's frozen model (a teacher). A single-stage method (the
  default) is one run.

``family``, ``display_name`` and ``family_order`` place a method in benchmark tables, so a new
family needs no edit in the benchmark code. ``variants`` names the method's ablations (config
overrides with a table label), so ``modaltune benchmark --methods dmsf_teacher,dmsf_teacher:no_cgc``
runs a paper's ablation table in one command.
"""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from .contract import EVALUATIONS, Declaration, GradientContext, LossOutput, Stage, as_loss_output
from .info import CohortInfo

#: the contract's public names (value types defined in .contract and .info, the base class here)
__all__ = ["CohortInfo", "Declaration", "LossOutput", "Stage", "GradientContext", "Method", "EVALUATIONS",
           "as_loss_output"]


class Method(nn.Module):
    """Base class of registered methods (see the module docstring).

    Subclasses set the class attributes below (or override :meth:`declare` when the declaration
    depends on the config) and implement :meth:`loss`, :meth:`embed` and :meth:`predict`. With
    ``batching == "single"`` these receive one patient dict and return unbatched outputs
    (``embed`` ``[D]``; ``predict`` ``{"logits": [C] | None, "risk": [] | None}``); otherwise a
    batch and outputs with a leading batch dimension.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    batching: ClassVar[str] = "single"
    evaluation: ClassVar[str] = "predict"
    tasks: ClassVar[tuple[str, ...]] = ("subtype", "survival")
    #: values of ``model.task`` a benchmark trains one run each for; ``()`` = one multi-task run
    task_runs: ClassVar[tuple[str, ...]] = ()
    min_batch_size: ClassVar[int] = 1
    scalers: ClassVar[frozenset[str]] = frozenset()
    #: validation metric per task when ``train.select_metric`` is ``auto`` (e.g. {"subtype": "val_auc"})
    select_metrics: ClassVar[dict[str, str]] = {}
    family: ClassVar[str] = "other"
    family_order: ClassVar[int] = 100
    display_name: ClassVar[str] = ""
    #: named ablations: variant -> (table label, config overrides merged over the resolved config)
    variants: ClassVar[dict[str, tuple[str, dict]]] = {}
    #: values a run directory's stored config gets for keys written before they existed, so that an older
    #: run is rebuilt as it was trained (a default that changed would otherwise not fit its checkpoint)
    stored_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping[str, nn.Module] | None = None):
        super().__init__()
        self.cfg = cfg
        self.info = info
        self.frozen_runs = nn.ModuleDict(dict(frozen or {}))
        for module in self.frozen_runs.values():
            module.requires_grad_(False)
            module.eval()

    # ------------------------------------------------------------------ declaration
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Method defaults, merged under the user's config (``model``, ``train``, ``stages`` ...)."""
        return {"model": {}}

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """The declaration for ``cfg`` (default: from the class attributes and ``model.task``)."""
        tasks = cls.tasks
        task = (cfg.get("model") or {}).get("task")
        if cls.task_runs and task in cls.tasks:
            tasks = (task,)
        select = cls.select_metrics.get(tasks[0], "auto") if len(tasks) == 1 else "auto"
        return Declaration(inputs=frozenset(cls.requires), batching=cls.batching, evaluation=cls.evaluation,
                           tasks=tuple(tasks), min_batch_size=cls.min_batch_size, scalers=frozenset(cls.scalers),
                           select_metric=select)

    @classmethod
    def stages(cls, cfg: Mapping[str, Any]) -> list[Stage]:
        """The runs of this method's protocol (default: one run of itself)."""
        return [Stage("main", getattr(cls, "registry_name", cls.__name__))]

    @classmethod
    def frozen_slots(cls, cfg: Mapping[str, Any]) -> dict[str, str | None]:
        """Frozen runs the method holds, by slot: ``{slot: run directory or None}``."""
        return {}

    @classmethod
    def label(cls) -> str:
        """Name shown in tables."""
        return cls.display_name or getattr(cls, "registry_name", cls.__name__)

    # ------------------------------------------------------------------ training API
    def loss(self, batch: Any) -> LossOutput:
        """Loss terms of one training batch (see :class:`LossOutput`)."""
        raise NotImplementedError

    def embed(self, batch: Any) -> torch.Tensor:
        """Embedding(s) used by probes and ``modaltune embed``."""
        raise NotImplementedError

    def predict(self, batch: Any) -> dict[str, torch.Tensor | None]:
        """``{"logits": ..., "risk": ...}`` (``None`` where the method gives none)."""
        raise NotImplementedError

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters the optimiser updates."""
        return (p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("frozen_runs."))

    def param_groups(self, train: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Optimiser parameter groups (learning rate and weight decay per group).

        Default: ``train.param_groups`` (a list of ``{match: glob over parameter names, lr,
        weight_decay}``; the first match wins), parameters marked ``_no_weight_decay`` without
        weight decay, everything else at ``train.lr`` / ``train.weight_decay``.
        """
        lr, wd = float(train["lr"]), float(train["weight_decay"])
        specs = list(train.get("param_groups") or [])
        groups: list[dict[str, Any]] = [{"name": str(s.get("name") or s["match"]), "params": [],
                                         "lr": float(s.get("lr", lr)),
                                         "weight_decay": float(s.get("weight_decay", wd))} for s in specs]
        default = {"name": "default", "params": [], "lr": lr, "weight_decay": wd}
        no_decay = {"name": "no_weight_decay", "params": [], "lr": lr, "weight_decay": 0.0}
        for name, p in self.named_parameters():
            if not p.requires_grad or name.startswith("frozen_runs."):
                continue
            for s, g in zip(specs, groups):
                if fnmatch.fnmatchcase(name, str(s["match"])):
                    g["params"].append(p)
                    break
            else:
                (no_decay if getattr(p, "_no_weight_decay", False) else default)["params"].append(p)
        return [g for g in [default, *groups, no_decay] if g["params"]]

    def fitted_choices(self, genes: Sequence[str]) -> dict[str, Any]:
        """What the method itself chose from the training patients, for ``fitted_choices.json``.

        Args:
            genes: gene symbols in the order of the omics vector (to name selected genes).

        Returns:
            JSON-serialisable choices (default: none, and no file is written), e.g. the teacher's
            highly variable genes per subspace.
        """
        return {}

    def adjust_gradients(self, ctx: GradientContext) -> None:
        """Change gradients after backward, before the optimiser step (default: nothing)."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch."""

    def on_train_epoch_end(self, epoch: int) -> None:
        """Called at the end of every training epoch."""

    def on_after_optimizer_step(self, step: int) -> None:
        """Called after every optimiser step with its index (0-based), e.g. to update an EMA teacher."""

    def train(self, mode: bool = True):
        """Train/eval mode; frozen runs always stay in eval mode."""
        super().train(mode)
        for module in self.frozen_runs.values():
            module.eval()
        return self
