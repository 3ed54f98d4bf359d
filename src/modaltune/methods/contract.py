"""The contract's value types: what a method declares, what its loss returns, its stages.

- :class:`Declaration`: the inputs, batching, evaluation protocol, tasks, minimum batch, scalers and
  selection metric of a method with a given config (``Method.declare``).
- :class:`LossOutput`: named loss terms, logs and batch statistics (``Method.loss``).
- :class:`Stage`: one run of a method's protocol (``Method.stages``).
- :class:`GradientContext`: what a gradient hook sees before the optimiser step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.patient import BATCHING, INPUTS
from ..errors import ConfigError

__all__ = ["EVALUATIONS", "Declaration", "LossOutput", "as_loss_output", "Stage", "GradientContext"]

EVALUATIONS = ("probe", "predict")


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
