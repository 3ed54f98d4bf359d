"""The baselines of MICE's tables (spec ``mice.md`` (e)), built from MICE's own encoders.

The paper says only that all baselines "leverage the same modality-specific encoders as MICE"
[P §4.5]; the heads below are the spec's choices ([O] unless a reference is named):

- ``mice_report`` / ``mice_path`` / ``mice_gene``: one encoder -> ``Linear(256, n_bins)``. Patients
  lacking the modality get a learned missing token, so every method is scored on the same test
  patients (spec (k) 12). Per-cohort, from scratch.
- ``mice_early``: concatenation ``[p; g; r]`` (768) -> ``Linear(768, 256)-ReLU-Dropout(0.2)-
  Linear(256, n_bins)`` ("concatenates ... MLP classifier"). Per-cohort.
- ``mice_late``: a ``Linear(256, n_bins)`` per modality; the fused logits are the mean over the
  modalities the patient has (decision-level fusion; a patient with none uses all three
  synthesised tokens); the NLL is taken on the fused logits. Per-cohort. (Our ``*_cat``/``*_kp``
  methods are feature-level fusion, i.e. MICE's *early* fusion.)
- ``mice_multihead`` (ref 26): concatenation -> shared ``Linear(768, 256)-ReLU-Dropout`` -> one
  ``Linear(256, n_bins)`` per cancer type. Pre-train -> fine-tune as MICE, without ``L_cl``.
- ``mice_moe`` (ref 28, "no expert selected for all samples"): MICE reduced to its routed group:
  the pre-expert transformer on ``[z0; p; g; r]`` (no cancer token), **one** router shared by all
  cancer types, 15 experts (keep 9), ``O = LN(sum_i w_i Expert_i(X'))``, the fusion expert on ``[O]``
  (our reading of "MICE with only the routed group"), the head. Pre-train -> fine-tune, no ``L_cl``.

A missing modality in the multimodal baselines takes MICE's cancer-token synthesis
``MLPB_m^hold(E_k)``; in a single-cohort run that is one learned missing embedding per modality.
``model.modalities`` restricts the multimodal baselines as it does MICE (excluded = synthesised).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...registry import METHODS
from ..base import CohortInfo
from .common import MICEFamily, as_patients
from .encoders import CancerSynthesis, ModalityEncoders, assemble_tokens
from .layers import TF, Expert
from .router import Router
from .settings import MODEL_DEFAULTS, mice_config

__all__ = ["MICEUnimodal", "MICEReport", "MICEPath", "MICEGene", "MICEEarly", "MICELate", "MICEMultiHead",
           "MICEMoE"]

_ENCODER_KEYS = ("dim", "dropout", "path_attn_dim", "pool_from", "mamba", "genomics_encoder", "genomics_hidden",
                 "report_hidden", "cancer_types", "surv_alpha")
_ENCODERS = {key: MODEL_DEFAULTS[key] for key in _ENCODER_KEYS}
_MOE_KEYS = ("pre_expert", "expert_depth", "expert_heads", "expert_ranks", "keep_k", "router_hidden", "renormalise",
             "softplus_noise", "router_noise", "fusion_rank")


class MICEUnimodal(MICEFamily):
    """One MICE encoder and a linear hazard head; a learned token for patients lacking the modality."""

    modality: ClassVar[str] = ""

    @classmethod
    def used_modalities(cls, m: Mapping[str, Any]) -> list[str]:
        """Only the baseline's own modality."""
        return [cls.modality]

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """MICE's encoder widths; per-cohort training from scratch (20 epochs)."""
        return mice_config(cls.model_defaults, contrastive=False, per_cohort=True)

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        d = int(self.mcfg["dim"])
        self.encoders = ModalityEncoders(self.mcfg, info, [self.modality])
        self.missing = nn.Parameter(torch.randn(d))
        self.head = nn.Linear(d, self.n_bins)

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``logits`` ``[B, n_bins]``, ``h`` ``[B, D]`` (the token), ``real`` ``[B]``."""
        batch = as_patients(batch)
        idx, tok = self.encoders.encode(batch, self.modality, self.device)
        h = self.missing.float().expand(len(batch), -1)
        real = torch.zeros(len(batch), dtype=torch.bool, device=self.device)
        if idx:
            rows = torch.tensor(idx, device=self.device)
            h = h.index_put((rows,), tok.float())
            real[rows] = True
        return {"logits": self.head(h), "h": h, "real": real}


@METHODS.register("mice_report")
class MICEReport(MICEUnimodal):
    """Report only: ``MLPB(Dr, 512) -> MLPB(512, 256) -> Linear(256, n_bins)``."""

    modality = "report"
    display_name = "Report"
    model_defaults = {**_ENCODERS}


@METHODS.register("mice_path")
class MICEPath(MICEUnimodal):
    """Pathology only: MambaMIL -> ``Linear(256, n_bins)``."""

    modality = "pathology"
    display_name = "Path"
    model_defaults = {**_ENCODERS}


@METHODS.register("mice_gene")
class MICEGene(MICEUnimodal):
    """Genomics only: ``MLPB(G, 512) -> MLPB(512, 256) -> Linear(256, n_bins)``."""

    modality = "genomics"
    display_name = "Gene"
    model_defaults = {**_ENCODERS}


class _Multimodal(MICEFamily):
    """Base of the multimodal baselines: the three tokens, missing ones synthesised from ``E_k``."""

    model_defaults: ClassVar[dict[str, Any]] = {**_ENCODERS, "modalities": list(MODEL_DEFAULTS["modalities"]),
                                                "hidden": 256}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Per-cohort from scratch, or MICE's protocol without ``L_cl`` for the pan-cancer ones."""
        return mice_config(cls.model_defaults, contrastive=False, per_cohort=not cls.pan_cancer)

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        self.dim, self.drop = int(self.mcfg["dim"]), float(self.mcfg["dropout"])
        self.encoders = ModalityEncoders(self.mcfg, info)
        self.synthesis = CancerSynthesis(len(self.vocabulary), self.dim, self.drop)

    def tokens(self, batch: Sequence[Mapping]) -> tuple[Tensor, Tensor, Tensor]:
        """``(tokens [B, 3, D], real [B, 3], k [B])``."""
        k = self.cancer_ids(batch)
        tokens, real = assemble_tokens(self.encoders, batch, self.synthesis, k)
        return tokens, real, k

    def concat_trunk(self) -> nn.Sequential:
        """``Linear(3 D, hidden) -> ReLU -> Dropout``."""
        return nn.Sequential(nn.Linear(3 * self.dim, int(self.mcfg["hidden"])), nn.ReLU(), nn.Dropout(self.drop))


@METHODS.register("mice_early")
class MICEEarly(_Multimodal):
    """Early (feature-level) fusion: concatenation -> MLP -> hazards."""

    display_name = "Early"

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        self.trunk = self.concat_trunk()
        self.head = nn.Linear(int(self.mcfg["hidden"]), self.n_bins)

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``logits`` ``[B, n_bins]``, ``h`` ``[B, hidden]``, ``real`` ``[B, 3]``."""
        tokens, real, _ = self.tokens(as_patients(batch))
        h = self.trunk(tokens.flatten(1))
        return {"logits": self.head(h), "h": h, "real": real}


@METHODS.register("mice_late")
class MICELate(_Multimodal):
    """Late (decision-level) fusion: mean of per-modality hazard logits over the available modalities."""

    display_name = "Late"

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        self.heads = nn.ModuleList(nn.Linear(self.dim, self.n_bins) for _ in range(3))

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``logits`` (fused) ``[B, n_bins]``, ``per_modality`` ``[B, 3, n_bins]``, ``h`` (mean of the
        used tokens) ``[B, D]``, ``real`` ``[B, 3]``."""
        tokens, real, _ = self.tokens(as_patients(batch))
        per = torch.stack([head(tokens[:, j]).float() for j, head in enumerate(self.heads)], dim=1)
        use = torch.where(real.any(1, keepdim=True), real, torch.ones_like(real)).float()
        n = use.sum(1, keepdim=True)
        logits = (per * use[..., None]).sum(1) / n
        h = (tokens * use[..., None]).sum(1) / n
        return {"logits": logits, "per_modality": per, "h": h, "real": real}


@METHODS.register("mice_multihead")
class MICEMultiHead(_Multimodal):
    """Shared concatenation trunk, one hazard head per cancer type; pre-train -> fine-tune."""

    display_name = "MulHead"
    pan_cancer = True

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        self.trunk = self.concat_trunk()
        self.heads = nn.ModuleList(nn.Linear(int(self.mcfg["hidden"]), self.n_bins)
                                   for _ in range(len(self.vocabulary)))

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``logits`` ``[B, n_bins]`` from each patient's own cancer head, ``h`` ``[B, hidden]``."""
        tokens, real, k = self.tokens(as_patients(batch))
        h = self.trunk(tokens.flatten(1))
        logits = h.new_zeros(h.shape[0], self.n_bins, dtype=torch.float32)
        for c in sorted(set(k.tolist())):
            rows = torch.nonzero(k == c).reshape(-1)
            logits = logits.index_put((rows,), self.heads[c](h[rows]).float())
        return {"logits": logits, "h": h, "real": real}


@METHODS.register("mice_moe")
class MICEMoE(_Multimodal):
    """MICE's routed group alone: one shared noisy top-k router over 15 experts; pre-train -> fine-tune."""

    display_name = "MoE"
    pan_cancer = True
    model_defaults: ClassVar[dict[str, Any]] = {**_Multimodal.model_defaults,
                                                **{key: MODEL_DEFAULTS[key] for key in _MOE_KEYS}}

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        m, d = self.mcfg, self.dim
        depth, heads = int(m["expert_depth"]), int(m["expert_heads"])
        ranks = [int(r) for r in m["expert_ranks"]]
        self.z0 = nn.Parameter(torch.randn(1, d))
        pe = m["pre_expert"]
        self.pre_expert = TF(d, int(pe["depth"]), int(pe["heads"]), int(pe["dim_head"]), int(pe["mlp"]))
        self.router = Router(d, len(ranks), int(m["keep_k"]), int(m["router_hidden"]), bool(m["renormalise"]),
                             bool(m["softplus_noise"]), bool(m["router_noise"]))
        self.experts = nn.ModuleList(Expert(d, r, depth, heads) for r in ranks)
        self.norm = nn.LayerNorm(d)
        self.fusion = Expert(d, int(m["fusion_rank"]), depth, heads)
        self.head = nn.Linear(d, self.n_bins)

    def forward(self, batch: Sequence[Mapping]) -> dict[str, Tensor]:
        """``logits`` ``[B, n_bins]``, ``h`` ``[B, D]``, ``weights`` ``[B, E]``, ``real`` ``[B, 3]``."""
        tokens, real, _ = self.tokens(as_patients(batch))
        b = tokens.shape[0]
        y = self.pre_expert(torch.cat([self.z0.expand(b, -1)[:, None].float(), tokens], dim=1))
        u, x = y[:, 0], y[:, 1:]
        weights, _ = self.router(u)
        mix = x.new_zeros(b, self.dim, dtype=torch.float32)
        for i in torch.nonzero((weights != 0).any(0)).reshape(-1).tolist():
            mix = mix + weights[:, i:i + 1] * self.experts[i](x).float()
        h = self.fusion(self.norm(mix)[:, None].float())
        return {"logits": self.head(h), "h": h, "weights": weights, "real": real}
