"""MICE (Zhou et al., "A multimodal foundation model to enhance generalizability and data efficiency
for pan-cancer prognosis prediction") as a registered method, ``"mice"``.

Architecture (spec ``mice.md`` (b); widths from the official code, all ``model.*`` keys, see
:mod:`~modaltune.methods.mice.settings`):

1. one token per modality (:mod:`~modaltune.methods.mice.encoders`): MambaMIL on the WSI bag,
   an MLP (or SNN) on the expression vector, an MLP on the frozen report embedding; a missing
   modality's token is ``MLPB_m^hold(E_k)`` from the patient's cancer token ``E_k``;
2. pre-expert transformer ``TF(2, 4, 128, 128)`` on ``[z0; MLPB^cls(E_k); p; g; r]`` (code only):
   row 0 (``u``) drives the router, rows 1-4 (``X'``) feed every expert;
3. collaborative experts (:mod:`~modaltune.methods.mice.layers`): overlapping
   ``O = LN_k(sum_i w_i Expert_{r_i}(X'))`` with the weights of cancer ``k``'s noisy top-k router
   (:mod:`~modaltune.methods.mice.router`, 9 of 15 kept), specialized ``S = gamma Expert^k_64(X')``
   (one per cancer type), consensual ``C = Expert_64(X')`` (everyone);
4. fusion expert on ``[O; S; C]`` -> ``h``; ``Linear(256, n_bins)`` hazard logits; risk ``-sum_t S_t``.

Losses (spec (c)): survival NLL (``alpha = 0``) as term ``survival``, and the multi-view contrastive
loss over the batch's *real* unimodal tokens (before the pre-expert transformer) as term
``contrastive``; the engine weighs them with ``train.loss_weights`` (pre-training ``2 / 1``, the
paper's ratio; fine-tuning ``1 / 0``). Protocol: :meth:`MICEFamily.stages` (pooled pre-training,
per-site fine-tuning from it; the engine hands over weights, fitted state and vocabulary).

Everything per cancer type (router, ``LN_k``, specialized expert, ``E_k``) is applied per group of
patients of that type, so a batch of one type leaves every other type's parameters without gradient
(and AdamW without an update). The overlapping experts are computed only when some patient of the
batch keeps them (the code computes all 15; the result is the same, since a weight of 0 contributes
exactly 0). No transformer has positions and all read class tokens, so the output does not depend on
the order of the modality tokens. Patients with no modality at all still get a prediction from
their cancer token; ``loss`` logs how many (``no_modality``), :meth:`MICE.introspect` flags them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...registry import METHODS
from ..base import CohortInfo, LossOutput
from ..losses import multiview_contrastive, survival_risk
from .common import MICEFamily, as_patients
from .encoders import CancerSynthesis, ModalityEncoders, assemble_tokens
from .layers import MLPB, TF, Expert
from .router import Router
from .settings import GROUPS, MODEL_DEFAULTS, mice_config

__all__ = ["MICE", "GROUPS"]


def _put(dst: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """``dst`` with ``dst[rows] = values`` (out of place, differentiable, dtype of ``dst``)."""
    return dst.index_put((rows,), values.to(dst.dtype))


@METHODS.register("mice")
class MICE(MICEFamily):
    """MICE: modality tokens -> pre-expert TF -> consensual / specialized / overlapping experts -> fusion."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics", "report_embedding"})
    scalers: ClassVar[frozenset[str]] = frozenset({"bag", "report_embedding"})
    display_name: ClassVar[str] = "MICE"
    loss_terms: ClassVar[tuple[str, ...]] = ("survival", "contrastive")
    pan_cancer: ClassVar[bool] = True
    #: ``mice:no_contrastive``: pre-training on the survival loss alone (the paper's contrastive
    #: ablation, with the rest of MICE unchanged)
    #: ``mice:projection_head``: the contrastive term on a SimCLR projection head over the tokens.
    #: ``mice:clean_router``: the router with its kept weights renormalised and a softplus noise
    #: scale (the official code's quirks, the default, switched off; spec (i) 15).
    #: ``mice:no_router_noise``: top-k on the router's mean in training too (no noise), an ablation of
    #: the noisy gating itself (``benchmarks/README.md``, issue 12).
    #: ``mice:no_specialized``: the specialized experts' group (and with it the unbounded gain
    #: ``gamma``) replaced by a zero token before the fusion expert (``model.drop_groups``).
    variants: ClassVar[dict[str, tuple[str, dict]]] = {
        "no_contrastive": ("no contrastive term",
                           {"stages": {"pretrain": {"train": {"loss_weights": {"contrastive": 0.0}}}}}),
        "projection_head": ("contrastive projection head", {"model": {"contrastive_head": "mlp"}}),
        "clean_router": ("renormalised router", {"model": {"renormalise": True, "softplus_noise": True}}),
        "no_router_noise": ("noise-free router", {"model": {"router_noise": False}}),
        "no_specialized": ("no specialized experts", {"model": {"drop_groups": ["specialized"]}})}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Code widths, paper protocol (spec (b), (d)); stage settings under ``stages``."""
        return mice_config(MODEL_DEFAULTS)

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping | None = None):
        super().__init__(cfg, info, frozen)
        m = self.mcfg
        d, drop, n_types = int(m["dim"]), float(m["dropout"]), len(self.vocabulary)
        depth, heads = int(m["expert_depth"]), int(m["expert_heads"])
        self.dim = d
        self.encoders = ModalityEncoders(m, info)
        self.synthesis = CancerSynthesis(n_types, d, drop)
        self.z0 = nn.Parameter(torch.randn(1, d))
        self.cancer_proj = MLPB(d, d, drop)
        pe = m["pre_expert"]
        self.pre_expert = TF(d, int(pe["depth"]), int(pe["heads"]), int(pe["dim_head"]), int(pe["mlp"]))
        ranks = [int(r) for r in m["expert_ranks"]]
        self.routers = nn.ModuleList(
            Router(d, len(ranks), int(m["keep_k"]), int(m["router_hidden"]), bool(m["renormalise"]),
                   bool(m["softplus_noise"]), bool(m["router_noise"])) for _ in range(n_types))
        self.overlapping = nn.ModuleList(Expert(d, r, depth, heads) for r in ranks)
        self.group_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(n_types))
        self.specialized = nn.ModuleList(Expert(d, int(m["specialized_rank"]), depth, heads) for _ in range(n_types))
        self.consensual = Expert(d, int(m["consensual_rank"]), depth, heads)
        self.fusion = Expert(d, int(m["fusion_rank"]), depth, heads)
        self.head = nn.Linear(d, self.n_bins)
        self.contrast_head = None
        if m.get("contrastive_head", "none") == "mlp":
            self.contrast_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, int(m["contrastive_head_dim"])))

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Sequence[Mapping], replace: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Everything MICE computes for a list of patients.

        Args:
            batch: patient dicts (see :mod:`modaltune.data.patient`).
            replace: optional group outputs to use instead of the computed ones (``[D]`` or
                ``[B, D]`` by name in :data:`GROUPS`), e.g. training means for group attribution.

        Returns:
            dict with ``tokens`` ``[B, 3, D]`` (pathology, genomics, report; synthesised where
            ``real`` ``[B, 3]`` is false), ``k`` ``[B]``, and the outputs of :meth:`fuse`.
        """
        batch = as_patients(batch)
        k = self.cancer_ids(batch)
        tokens, real = assemble_tokens(self.encoders, batch, self.synthesis, k)
        out = self.fuse(tokens, k, replace)
        out.update(tokens=tokens, real=real, k=k)
        return out

    def _groups(self, k: Tensor) -> list[tuple[int, Tensor]]:
        ids = k.tolist()
        return [(c, torch.tensor([i for i, x in enumerate(ids) if x == c], device=k.device))
                for c in sorted(set(ids))]

    def fuse(self, tokens: Tensor, k: Tensor, replace: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Pre-expert transformer, expert groups, fusion and head on modality tokens.

        Args:
            tokens: ``[B, M, D]`` modality tokens (any order: the result does not depend on it).
            k: ``[B]`` cancer ids.
            replace: see :meth:`forward`.

        Returns:
            dict with ``logits`` ``[B, n_bins]``, ``h`` ``[B, D]``, ``u`` ``[B, D]``, ``weights``
            ``[B, E]`` (routing), ``gamma`` ``[B]``, and ``overlapping`` / ``specialized`` /
            ``consensual`` ``[B, D]``.
        """
        b, d = tokens.shape[0], self.dim
        t = self.cancer_proj(self.synthesis.cancer_tokens[k]).float()
        seq = torch.cat([self.z0.expand(b, -1)[:, None].float(), t[:, None], tokens.float()], dim=1)
        y = self.pre_expert(seq)
        u, x = y[:, 0], y[:, 1:]
        groups = self._groups(k)
        weights = tokens.new_zeros(b, len(self.overlapping), dtype=torch.float32)
        gamma = tokens.new_zeros(b, dtype=torch.float32)
        for c, rows in groups:
            w, g = self.routers[c](u[rows])
            weights, gamma = _put(weights, rows, w), _put(gamma, rows, g)
        mix = tokens.new_zeros(b, d, dtype=torch.float32)
        for i in torch.nonzero((weights != 0).any(0)).reshape(-1).tolist():
            mix = mix + weights[:, i:i + 1] * self.overlapping[i](x).float()
        over, spec = torch.zeros_like(mix), torch.zeros_like(mix)
        for c, rows in groups:
            over = _put(over, rows, self.group_norms[c](mix[rows]))
            spec = _put(spec, rows, gamma[rows, None] * self.specialized[c](x[rows]).float())
        outs = {"overlapping": over, "specialized": spec, "consensual": self.consensual(x).float()}
        for name in self.mcfg["drop_groups"]:
            outs[name] = torch.zeros_like(mix)
        for name, value in (replace or {}).items():
            if name not in outs:
                raise InputError(f"MICE.fuse: unknown expert group '{name}'", fix=f"replace one of {GROUPS}")
            outs[name] = value.to(mix).expand(b, d)
        h = self.fusion(torch.stack([outs[g] for g in GROUPS], dim=1))
        return {"logits": self.head(h), "h": h, "u": u, "weights": weights, "gamma": gamma, **outs}

    # ------------------------------------------------------------------ training / inference
    def loss(self, batch: Any) -> LossOutput:
        """Terms ``survival`` (NLL, alpha 0) and ``contrastive`` (over the real tokens only, through
        the projection head when ``model.contrastive_head`` is ``mlp``)."""
        batch = as_patients(batch)
        out = self(batch)
        surv, n = self.survival_term(out["logits"], batch)
        real = out["real"]
        owner = torch.nonzero(real)[:, 0]
        feats = out["tokens"][real]
        if self.contrast_head is not None:
            feats = self.contrast_head(feats.float())
        contrast = multiview_contrastive(feats, owner, float(self.mcfg["temperature"]),
                                         str(self.mcfg["contrastive_form"]))
        logs = {"survival_counted": float(n), "no_modality": float((~real.any(1)).sum())}
        return LossOutput({"survival": surv, "contrastive": contrast}, logs)

    @torch.no_grad()
    def introspect(self, batch: Any) -> dict[str, Any]:
        """Per-patient internals for the router-weights-per-site and expert-group analyses.

        Returns:
            dict with ``case_id`` / ``site`` (lists), ``weights`` ``[B, E]``, ``gamma`` ``[B]``,
            ``overlapping`` / ``specialized`` / ``consensual`` / ``h`` ``[B, D]``, ``real``
            ``[B, 3]`` (which modality tokens are real), ``no_modality`` ``[B]`` (predicted from the
            cancer token alone), ``risk`` ``[B]`` and ``attention`` (per patient the MambaMIL
            weights over its patches, or ``None``). Call in eval mode for noise-free routing.
        """
        batch = as_patients(batch)
        out = self(batch)
        keys = ("weights", "gamma", "h", "real", *GROUPS)
        res: dict[str, Any] = {key: out[key] for key in keys}
        res.update(case_id=[str(p.get("case_id", "")) for p in batch], site=[str(p.get("site", "")) for p in batch],
                   no_modality=~out["real"].any(1), risk=survival_risk(out["logits"]),
                   attention=[self.encoders.attention(p, self.device) for p in batch])
        return res


@METHODS.register("mice_scratch")
class MICEScratch(MICE):
    """MICE trained on each site alone, from scratch: no pan-cancer pre-training.

    The reference of the pre-training study (does pre-training on every site help a site,
    especially with little data?): the same architecture and survival loss as MICE's fine-tuning,
    on the per-cohort schedule of the from-scratch baselines (spec (e): 20 epochs, one patient per
    step); with one site in a run there is one cancer type, so the specialized expert and the router
    of that type are the whole cancer-specific part.
    """

    display_name: ClassVar[str] = "MICE (per site, no pre-training)"
    loss_terms: ClassVar[tuple[str, ...]] = ("survival",)
    pan_cancer: ClassVar[bool] = False
    variants: ClassVar[dict[str, tuple[str, dict]]] = {}   # no pre-training, so no contrastive term to remove

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """MICE's widths on the per-cohort schedule, survival loss only."""
        cfg = mice_config(MODEL_DEFAULTS, contrastive=False, per_cohort=True)
        cfg["train"]["loss_weights"] = {"survival": 1.0}
        return cfg
