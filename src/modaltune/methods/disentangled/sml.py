"""``sml``: the conference model (Subspace Multimodal Learning, MICCAI 2024), a baseline of the tables.

Spec (b) "SML baseline": one magnification (10x, ``bag_secondary``) and the two gene subspaces of
:mod:`.subspaces`. Per subspace s:

1. ``H = ReLU(Linear(D_in, d)(X))``; ``g_s`` = the subspace's :class:`.snn.MaxNet` embedding;
2. ``h_s = Linear(2d, d)([H; G_s])`` with ``G_s`` the gene embedding broadcast over the grid;
3. ``U_s = h_s + DCA_s(h_s, H)`` (deformable cross-attention, query ``h_s``, keys/values ``H``);
4. ``X_s = Linear(d, d)(tanh(Linear(d, d)(mean over the grid of U_s)))`` (``Pooler`` + projection).

``logits = Linear(2d, C)([X_T; X_E])``; CGC on that classifier exactly as in the teacher. The extra
"batch loss" per subspace is the MSE between the batch's similarity matrix of the gene embeddings
``g_s`` and that of the DCA's sampling positions, weighted ``model.batch_loss_weight`` (0.5 each).
Our reading where the spec gives no detail [OURS]: both similarities are cosine similarities of the
flattened vectors, gradients flow through both, no LayerNorm before the attention. The batch
loss needs batches of >= 2 patients (``min_batch_size`` 2 while it is on; evaluation batches of 1
skip it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo, Declaration, GradientContext, LossOutput
from .common import DMSFBase, dmsf_model_defaults, stage_train
from .losses import CGC_MODES
from .snn import MaxNet
from .subspaces import SUBSPACES, teacher_genes

__all__ = ["batch_similarity_loss", "SML"]


def batch_similarity_loss(genes: Tensor, positions: Tensor) -> Tensor:
    """MSE between the cosine-similarity matrices of ``genes`` [B, d] and ``positions`` [B, ...]."""
    g = F.normalize(genes.float().reshape(genes.shape[0], -1), dim=-1)
    p = F.normalize(positions.float().reshape(positions.shape[0], -1), dim=-1)
    return F.mse_loss(p @ p.t(), g @ g.t())


@METHODS.register("sml")
class SML(DMSFBase):
    """The conference model: 10x only, two gene subspaces, CGC, batch similarity loss (module docstring)."""

    requires = frozenset({"bag_secondary", "fixed_bags", "omics"})
    display_name = "SML"
    loss_terms = ("task", "batch")
    two_magnifications: ClassVar[bool] = False

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Shared DMSF model settings + ``batch_loss_weight`` 0.5; lr 2e-4, batch 8 (as the teacher)."""
        return {"model": {**dmsf_model_defaults(), "batch_loss_weight": 0.5}, "train": stage_train(2e-4, 8)}

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """Batches of >= 2 patients while the batch loss is on."""
        decl = super().declare(cfg)
        if float(cls.model_section(cfg).get("batch_loss_weight", 0.5)) > 0:
            decl = dataclasses.replace(decl, min_batch_size=2)
        return decl

    def __init__(self, cfg: dict, info: CohortInfo, frozen=None):
        super().__init__(cfg, info, frozen)
        m = self.mcfg
        if m["cgc_projection"] not in CGC_MODES:
            raise ConfigError(f"model.cgc_projection must be one of {CGC_MODES}, got {m['cgc_projection']!r}")
        self.use_cgc, self.batch_weight = bool(m["cgc"]), float(m.get("batch_loss_weight", 0.5))
        genes = teacher_genes(info, m, seed=int(cfg.get("seed", 0)))
        for s in SUBSPACES:
            self.register_buffer(f"genes_{s}", torch.as_tensor(genes[s], dtype=torch.long))
        d = self.dim
        self.snn = nn.ModuleDict({s: MaxNet(len(genes[s]), d, m["snn_hidden"], float(m["dropout"]),
                                            str(m["snn_activation"])) for s in SUBSPACES})
        self.fc = nn.Linear(int(info.feature_dim_secondary), d)
        self.mix = nn.ModuleDict({s: nn.Linear(2 * d, d) for s in SUBSPACES})
        self.dca = nn.ModuleDict({s: self.make_dca() for s in SUBSPACES})
        self.pool = nn.ModuleDict({s: nn.Linear(d, d) for s in SUBSPACES})
        self.proj = nn.ModuleDict({s: nn.Linear(d, d) for s in SUBSPACES})
        self.classifier = nn.Linear(2 * d, self.n_out)

    def encode(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """``{"parts": {s: [B, d]}, "genes": {s: [B, d]}, "positions": {s: ...}, "logits": [B, C]}``."""
        omics = batch["omics"].float()
        omics = omics.unsqueeze(0) if omics.dim() == 1 else omics
        h = torch.relu(self.fc(self.bag(batch, "m10")))
        n = h.shape[1]
        parts, genes, positions = {}, {}, {}
        for s in SUBSPACES:
            genes[s] = self.snn[s](omics[:, getattr(self, f"genes_{s}")])
            q = self.mix[s](torch.cat([h, genes[s].to(h.dtype)[:, None, :].expand(-1, n, -1)], -1))
            z, _, positions[s] = self.dca[s](q, h, return_attention=True)
            pooled = torch.tanh(self.pool[s]((q + z).mean(1)))
            parts[s] = self.proj[s](pooled)
        logits = self.classifier(torch.cat([parts[s] for s in SUBSPACES], -1))
        return {"parts": parts, "genes": genes, "positions": positions, "logits": logits}

    def loss(self, batch: Mapping[str, Any]) -> LossOutput:
        """``task``, ``batch`` (both subspaces, batches of >= 2) and CGC stats."""
        out = self.encode(batch)
        task = self.task_loss(out["logits"], batch)
        terms, logs = {"task": task}, {"task": float(task.detach())}
        stats = self.cgc_stats("m10", out["parts"]["tumor"], out["parts"]["tme"], self.classifier, batch) \
            if self.use_cgc else {}
        if self.batch_weight > 0 and out["logits"].shape[0] >= 2:
            b = sum(batch_similarity_loss(out["genes"][s], out["positions"][s]) for s in SUBSPACES)
            terms["batch"] = self.batch_weight * b
            logs["batch"] = float(b.detach())
        return LossOutput(terms, logs, stats)

    def adjust_gradients(self, ctx: GradientContext) -> None:
        """CGC on the classifier weight (as the teacher's)."""
        if self.use_cgc:
            self.cgc_apply("m10", self.classifier, ctx, str(self.mcfg["cgc_projection"]))

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """``[B, 2d]``: ``[X_T; X_E]``."""
        parts = self.encode(batch)["parts"]
        return torch.cat([parts[s] for s in SUBSPACES], -1)

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Subtype logits of each patient's site, or the survival risk."""
        logits = self.encode(batch)["logits"]
        return self.combine({"m20": logits, "m10": logits}, batch)
