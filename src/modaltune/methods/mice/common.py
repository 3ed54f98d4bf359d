"""What MICE and its baselines share: settings, the cancer-type vocabulary, the survival term, outputs.

Every method of the MICE family predicts ``n_bins`` discrete-time hazard logits per patient from a
ragged list of patients (``batching = "list"``), is scored on its own risk ``-sum_t S_t`` (spec
``mice.md`` (b) 8) and is trained with the NLL of Zadeh & Schmid at ``alpha = 0`` (spec (c): the code
has no extra uncensored term). A subclass implements :meth:`MICEFamily.forward` returning at least
``{"logits": [B, n_bins], "h": [B, D]}``.

The cancer-type vocabulary is ``model.cancer_types`` or, by default, the run's site vocabulary
(``info.sites``, which a fine-tuning run inherits from its pre-training run so every per-cancer
tensor keeps its rows); an external cohort reaches a row through ``data.site_map``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor

from ...errors import ConfigError
from ..base import CohortInfo, Declaration, LossOutput, Method, Stage
from ..inputs import flag, scalar
from ..losses import nll_survival_loss, survival_risk
from .settings import INPUT_OF, MODEL_DEFAULTS, SCALER_OF, model_settings

__all__ = ["MICEFamily", "as_patients"]


def as_patients(batch: Any) -> list[Mapping]:
    """A list of patient dicts (a single patient dict becomes a list of one)."""
    if isinstance(batch, Mapping):
        return [batch]
    return list(batch)


class MICEFamily(Method):
    """Base of MICE and its baselines (see the module docstring).

    Class attributes: ``model_defaults`` (the ``model`` section), ``pan_cancer`` (``True``: the
    pre-train -> fine-tune protocol as stages ``pretrain`` (pooled) and ``finetune`` (per site)).
    """

    batching: ClassVar[str] = "list"
    evaluation: ClassVar[str] = "predict"
    tasks: ClassVar[tuple[str, ...]] = ("survival",)
    task_runs: ClassVar[tuple[str, ...]] = ()
    min_batch_size: ClassVar[int] = 1
    family: ClassVar[str] = "MICE"
    family_order: ClassVar[int] = 50
    loss_terms: ClassVar[tuple[str, ...]] = ("survival",)
    model_defaults: ClassVar[dict[str, Any]] = MODEL_DEFAULTS
    pan_cancer: ClassVar[bool] = False

    @classmethod
    def settings(cls, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The checked ``model`` settings of ``cfg`` over this class's defaults."""
        return model_settings(cfg, cls.model_defaults)

    @classmethod
    def used_modalities(cls, m: Mapping[str, Any]) -> list[str]:
        """The modalities whose inputs the method reads (default: ``model.modalities``)."""
        return list(m["modalities"])

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """Inputs and scalers of the used modalities; list batching; scored on its own risk."""
        mods = cls.used_modalities(cls.settings(cfg))
        return Declaration(inputs=frozenset(INPUT_OF[x] for x in mods), batching="list", evaluation="predict",
                           tasks=("survival",), min_batch_size=1,
                           scalers=frozenset(SCALER_OF[x] for x in mods if x in SCALER_OF))

    @classmethod
    def stages(cls, cfg: Mapping[str, Any]) -> list[Stage]:
        """Pan-cancer methods: pooled pre-training, then per-site fine-tuning from it; else one run."""
        name = getattr(cls, "registry_name", cls.__name__)
        if not cls.pan_cancer:
            return [Stage("main", name)]
        return [Stage("pretrain", name, scope="pooled"),
                Stage("finetune", name, scope="per_site", init_from="pretrain")]

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        self.mcfg = self.settings(cfg)
        self.vocabulary = [str(s) for s in (self.mcfg.get("cancer_types") or info.sites)]
        if not self.vocabulary:
            raise ConfigError("MICE needs a cancer-type vocabulary: the run has no sites and model.cancer_types is "
                              "empty")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ConfigError(f"model.cancer_types has duplicates: {self.vocabulary}")
        self.n_bins = int(info.n_bins)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def cancer_index(self, site: str) -> int:
        """Row of ``site`` (through ``data.site_map``) in the cancer-type vocabulary.

        Raises:
            ConfigError: the site is not in the vocabulary.
        """
        name = self.info.site_map.get(str(site), str(site))
        if name not in self.vocabulary:
            raise ConfigError(f"site '{site}' is not in MICE's cancer-type vocabulary {self.vocabulary}; map it with "
                              "data.site_map (e.g. {HANCOCK: HNSC}) or list it in model.cancer_types")
        return self.vocabulary.index(name)

    def cancer_ids(self, batch: Sequence[Mapping]) -> Tensor:
        """``[B]`` cancer ids (long, on the model's device)."""
        return torch.tensor([self.cancer_index(p.get("site", "")) for p in batch], dtype=torch.long,
                            device=self.device)

    def survival_term(self, logits: Tensor, batch: Sequence[Mapping]) -> tuple[Tensor, int]:
        """Mean NLL (``model.surv_alpha``, 0 = the code) over the patients with a known bin.

        Returns:
            ``(loss, n)``; with no such patient ``(0 * logits.sum(), 0)`` (graph kept).
        """
        rows, bins, events = [], [], []
        for i, p in enumerate(batch):
            b = int(scalar(p, "survival_bin", -1).item())
            if flag(p, "has_survival", True) and b >= 0:
                rows.append(i)
                bins.append(b)
                events.append(float(scalar(p, "event", 0.0).item()))
        if not rows:
            return logits.float().sum() * 0.0, 0
        dev = logits.device
        loss = nll_survival_loss(logits[torch.tensor(rows, device=dev)], torch.tensor(bins, device=dev),
                                 torch.tensor(events, device=dev), alpha=float(self.mcfg.get("surv_alpha", 0.0)))
        return loss, len(rows)

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``{"logits": [B, n_bins], "h": [B, D], ...}`` of a list of patients."""
        raise NotImplementedError

    def loss(self, batch: Any) -> LossOutput:
        """The survival term (``survival``) of a batch; subclasses add terms."""
        batch = as_patients(batch)
        out = self(batch)
        surv, n = self.survival_term(out["logits"], batch)
        return LossOutput({"survival": surv}, {"survival_counted": float(n)})

    def predict(self, batch: Any) -> dict[str, Tensor | None]:
        """``{"logits": None, "risk": [B]}`` with risk ``-sum_t S_t``."""
        return {"logits": None, "risk": survival_risk(self(as_patients(batch))["logits"])}

    def embed(self, batch: Any) -> Tensor:
        """The representation before the hazard head ``[B, D]``."""
        return self(as_patients(batch))["h"]
