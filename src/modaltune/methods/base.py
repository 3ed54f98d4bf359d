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
family needs no edit in the benchmark code.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..data.patient import BATCHING, INPUTS
from ..errors import ConfigError

__all__ = ["CohortInfo", "Declaration", "LossOutput", "Stage", "GradientContext", "Method", "EVALUATIONS",
           "as_loss_output"]

EVALUATIONS = ("probe", "predict")


@dataclass
class CohortInfo:
    """What a method needs to know about the data to build itself (written to ``cohort_info.json``).

    Attributes:
        feature_dim: width of the primary patch features (of ``data.magnification`` when it is
            ``secondary``).
        feature_dim_secondary: width of the second magnification's features (0 = none).
        n_genes: length of the omics vector.
        pathways: gene indices of each gene set.
        pathway_names: names of the gene sets.
        n_classes: width of a subtype head. One site: ``max(2, K)``; several sites (a pooled head):
            the sum of the sites' class counts, each site owning the slice
            ``class_offsets[site] : class_offsets[site] + class_counts[site]``, so class 0 of one
            site is never class 0 of another.
        class_counts: number of subtype classes per site.
        class_offsets: first logit of each site's classes in a pooled head.
        n_bins: number of survival bins.
        sites: the site vocabulary (order fixes per-site parameters such as MICE's cancer tokens);
            inherited unchanged by chained runs.
        site_map: extra site names mapped onto the vocabulary (an external cohort fine-tuned from
            a pre-trained model, e.g. ``{"HANCOCK": "HNSC"}``).
        text_dim: width of the prompt text embeddings.
        report_dim: width of the report embeddings (0 = none).
        task: the prediction task of a single-task run (``subtype`` | ``survival``) or ``multi``.
        train_class_counts: training patients per local class and site (for class weights).
        gene_variance: variance of each gene's stored expression over the training patients (for
            highly-variable-gene selection; unstandardised values).
    """

    feature_dim: int = 0
    feature_dim_secondary: int = 0
    n_genes: int = 0
    pathways: list[np.ndarray] = field(default_factory=list)
    pathway_names: list[str] = field(default_factory=list)
    n_classes: int = 2
    class_counts: dict[str, int] = field(default_factory=dict)
    class_offsets: dict[str, int] = field(default_factory=dict)
    n_bins: int = 4
    sites: list[str] = field(default_factory=list)
    site_map: dict[str, str] = field(default_factory=dict)
    text_dim: int = 384
    report_dim: int = 0
    task: str = "multi"
    train_class_counts: dict[str, list[int]] = field(default_factory=dict)
    gene_variance: list[float] = field(default_factory=list)

    def site_index(self, site: str) -> int:
        """Index of ``site`` (or the site it maps to) in :attr:`sites`.

        Raises:
            ConfigError: the site is not in the vocabulary.
        """
        name = self.site_map.get(str(site), str(site))
        try:
            return self.sites.index(name)
        except ValueError:
            raise ConfigError(f"site '{site}' is not in the model's site vocabulary {self.sites}; map it with "
                              "data.site_map (e.g. {EXTERNAL: TCGA_SITE})") from None

    def subtype_slice(self, site: str) -> slice:
        """Logits of ``site``'s subtype classes in a head of width :attr:`n_classes`.

        With one site the whole head is the site's (as before pooled heads existed).
        """
        name = self.site_map.get(str(site), str(site))
        if len(self.class_offsets) <= 1 or name not in self.class_offsets:
            return slice(0, self.n_classes)
        start = int(self.class_offsets[name])
        return slice(start, start + int(self.class_counts[name]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = dataclasses.asdict(self)
        d["pathways"] = [np.asarray(p).astype(int).tolist() for p in self.pathways]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CohortInfo":
        """Inverse of :meth:`to_dict` (unknown keys are ignored; missing ones take defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["pathways"] = [np.asarray(p, dtype=np.int64) for p in kw.get("pathways", [])]
        return cls(**kw)


@dataclass(frozen=True)
class Declaration:
    """What a method (with a given config) needs from the engine.

    Attributes:
        inputs: subset of :data:`modaltune.data.patient.INPUTS` the dataset must provide.
        batching: ``single`` (one patient dict per step), ``list`` (a list of ragged patient
            dicts) or ``stack`` (one dict of stacked tensors; needs fixed-size bags).
        evaluation: ``probe`` (probes fitted on :meth:`Method.embed`) or ``predict``.
        tasks: the metrics one run yields (``subtype``, ``survival``).
        min_batch_size: the smallest training batch the loss is defined for.
        scalers: inputs standardised per dimension with statistics of the training patients
            (``bag``, ``bag_secondary``, ``report_embedding``).
        select_metric: the validation metric that picks the epoch when ``train.select_metric`` is
            ``auto`` (``auto``: balanced accuracy for subtypes, C-index for survival).
    """

    inputs: frozenset[str] = frozenset({"bag", "omics"})
    batching: str = "single"
    evaluation: str = "predict"
    tasks: tuple[str, ...] = ("subtype", "survival")
    min_batch_size: int = 1
    scalers: frozenset[str] = frozenset()
    select_metric: str = "auto"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.inputs) - set(INPUTS))
        if unknown:
            raise ConfigError(f"unknown declared input(s) {unknown}; known: {sorted(INPUTS)}")
        if self.batching not in BATCHING:
            raise ConfigError(f"batching must be one of {BATCHING}, not '{self.batching}'")
        if self.evaluation not in EVALUATIONS:
            raise ConfigError(f"evaluation must be one of {EVALUATIONS}, not '{self.evaluation}'")
        bad = sorted(set(self.scalers) - {"bag", "bag_secondary", "report_embedding"})
        if bad:
            raise ConfigError(f"unknown scaler(s) {bad}; inputs that can be standardised: bag, bag_secondary, "
                              "report_embedding")


@dataclass
class LossOutput:
    """What :meth:`Method.loss` returns.

    Attributes:
        terms: named scalar loss terms; the engine multiplies each by ``train.loss_weights[name]``
            (default 1) and sums them. A term that carries no gradient (e.g. no label in the batch)
            may be a zero tensor or be left out.
        logs: floats logged per epoch as ``train_<name>``.
        stats: tensors the engine sums over the micro-batches of one optimiser step and over ranks,
            then hands to :meth:`Method.adjust_gradients` (e.g. a batch confidence).
    """

    terms: dict[str, torch.Tensor]
    logs: dict[str, float] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        """The unweighted sum of the terms (what the engine minimises with unit weights)."""
        values = [v for v in self.terms.values() if v is not None]
        if not values:
            raise ValueError("LossOutput has no terms")
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out

    def __iter__(self):
        """Unpack as ``(total, logs)``, the shape of the single-loss contract."""
        return iter((self.total, self.logs))


def as_loss_output(value: Any) -> LossOutput:
    """Accept a :class:`LossOutput` or the older ``(loss, logs)`` tuple (one term ``loss``)."""
    if isinstance(value, LossOutput):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        loss, logs = value
        return LossOutput({"loss": loss}, dict(logs or {}))
    if isinstance(value, torch.Tensor):
        return LossOutput({"loss": value})
    raise TypeError(f"Method.loss must return a LossOutput or (loss, logs), not {type(value).__name__}")


@dataclass(frozen=True)
class Stage:
    """One run of a method's protocol.

    Attributes:
        name: the stage's name (``main``, ``pretrain``, ``finetune``, ``teacher``, ...); the config
            section ``stages.<name>`` holds its settings.
        method: the registered method trained in this stage.
        scope: ``run`` (per site or pooled, as ``data.pan_cancer`` says), ``pooled`` (one run over
            all sites, ``data.pretrain_only_sites`` included) or ``per_site``.
        init_from: an earlier stage whose selected weights, fitted state and vocabularies start
            this stage.
        frozen: ``(slot, stage)`` pairs: the earlier stage's model is handed to this stage's method
            as a frozen module (a teacher).
    """

    name: str
    method: str
    scope: str = "run"
    init_from: str | None = None
    frozen: tuple[tuple[str, str], ...] = ()


@dataclass
class GradientContext:
    """Everything a gradient hook sees, between backward and the optimiser step.

    Attributes:
        params: trainable parameters by name; their ``.grad`` is the (accumulated, rank-averaged)
            gradient of the weighted loss, after the configured policy.
        term_grads: per-term gradients (same averaging) when the policy asked for them.
        stats: :attr:`LossOutput.stats` summed over micro-batches and ranks.
        step: the optimiser step about to be taken.
    """

    params: dict[str, nn.Parameter]
    term_grads: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0


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
