"""``dmsf_teacher``: the histology + transcriptomics teacher (paper Stage I; spec (b) "Teacher").

Per magnification (20x = ``bag``, 10x = ``bag_secondary``), :class:`TeacherExpert`:

1. ``H = ReLU(Linear(D_in, d)(X))`` on the ``grid x grid`` bag.
2. For each subspace s in (tumor, TME): the SNN gene embedding ``g_s`` (one :class:`.snn.MaxNet`
   per subspace, shared by both magnifications) is broadcast to every grid position, and a
   deformable cross-attention with the gene map as query and the patches as keys/values chooses
   where to look ("Tumor-to-H deformation"): ``U_s = G_s + DCA_s(LN(G_s), LN(H))``. One LayerNorm
   ``LN`` serves every encoder input, as in the code. The attention maps ``A_s`` are kept for DEV.
3. Selection (``selection_query``): ``fused`` (default; the code) queries with
   ``LN(Linear(2d, d)([U_T; U_E]))``, mixing both subspaces; ``subspace`` (paper Eqs. 4-5) with
   the subspace's own ``LN(U_s)``. Keys/values are the single gene token ``LN(g_s)``; each
   subspace's layer adds a multi-head attention output to its query (its own LayerNorm), averages
   over the grid and applies ``Linear - tanh`` (the official ``Pooler``). With one key the softmax
   is exactly 1, so the "selection" adds a gene-dependent constant: degenerate but faithful.
4. ``X_s = tanh(Linear(LN_out(.)))`` per subspace; logits ``= Linear(2d, C)([X_T; X_E])``.

Loss (spec (c), code form): ``task`` = task loss of the 20x plus the 10x logits; ``dev`` = DEV of
the tumor plus the TME attention across magnifications (``model.dev_weight`` = lambda 1e4, 0
switches it off; ``dev_form: code|paper``), only for batches of >= 2 patients, which the engine
enforces for training (``min_batch_size`` 2 while DEV is on); evaluation batches of 1 skip it.

CGC (``model.cgc``, spec (c) and (d) "CGC placement"): ``loss`` returns, per magnification and
subspace, the batch confidence of the partial logits as ``stats``; the engine sums them over the
micro-batches of an optimiser step and over ranks and calls :meth:`DMSFTeacher.adjust_gradients`
with the accumulated, rank-averaged gradients, where each magnification's classifier weight is
coordinated class row by class row (:func:`.losses.coordinate_rows`; encoder gradients and the
bias are untouched).

``model.withhold_genes`` (0, the paper; not in the paper or the code): during training each patient's
gene embeddings are replaced, with this probability, by a learned stand-in per subspace, so the
histology path alone must carry the task for those patients (a teacher that has to look; evaluation
and distillation always read the genes).

Predictions combine the two magnifications with the dual-expert rule of :mod:`.common`. The genes
each subspace reads (the training split's highly variable genes) are written by name to the run's
``fitted_choices.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo, Declaration, GradientContext, LossOutput
from .common import DMSF_VARIANTS, EXPERTS, DMSFBase, dmsf_model_defaults, stage_train
from .losses import CGC_MODES, DEV_FORMS, dev_loss
from .snn import MaxNet
from .subspaces import DEFAULT_SUBSPACES, SUBSPACES, teacher_genes

__all__ = ["SelectionLayer", "TeacherExpert", "DMSFTeacher"]


class SelectionLayer(nn.Module):
    """Gene-to-map "selection" attention (official ``TransFusionLayer``) and its ``Pooler``.

    Args:
        dim: model width.
        heads: attention heads.
        dropout: attention dropout.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.selection_heads ({heads}) must divide model.dim ({dim})")
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.pool = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        """``query`` [B, N, d] attends to ``key`` [B, M, d]; returns the pooled [B, d]."""
        q, k = self.norm(query), self.norm(key)
        out, _ = self.attn(q, k, k, need_weights=False)
        return torch.tanh(self.pool(self.norm(query + out).mean(1)))


class TeacherExpert(nn.Module):
    """The teacher at one magnification (module docstring, items 1-4).

    Args:
        in_dim: patch-feature width.
        n_out: head width (classes or survival bins).
        make_dca: factory of a deformable attention block.
        dim: model width d.
        selection_query: ``fused`` or ``subspace``.
        selection_heads: heads of the selection attention.
        dropout: attention dropout of the selection layers.
    """

    def __init__(self, in_dim: int, n_out: int, make_dca, dim: int, selection_query: str, selection_heads: int,
                 dropout: float):
        super().__init__()
        self.selection_query = selection_query
        self.fc = nn.Linear(in_dim, dim)
        self.ln_enc = nn.LayerNorm(dim)
        self.dca = nn.ModuleDict({s: make_dca() for s in SUBSPACES})
        self.fuse = nn.Linear(2 * dim, dim) if selection_query == "fused" else None
        self.select = nn.ModuleDict({s: SelectionLayer(dim, selection_heads, dropout) for s in SUBSPACES})
        self.ln_out = nn.LayerNorm(dim)
        self.out = nn.ModuleDict({s: nn.Linear(dim, dim) for s in SUBSPACES})
        self.classifier = nn.Linear(2 * dim, n_out)

    def forward(self, x: Tensor, genes: Mapping[str, Tensor]) -> dict[str, Any]:
        """Features, logits and attention maps of one magnification.

        Args:
            x: [B, N, D_in] fixed-size bag (N a perfect square).
            genes: subspace -> [B, d] gene embedding.

        Returns:
            ``{"parts": {s: [B, d]}, "features": [B, 2d], "logits": [B, C], "attention": {s: [B, heads, N, keys]}}``.
        """
        h = torch.relu(self.fc(x))
        h_n = self.ln_enc(h)
        n = h.shape[1]
        updated, attention, tokens = {}, {}, {}
        for s in SUBSPACES:
            g = genes[s].to(h.dtype)
            tokens[s] = self.ln_enc(g)[:, None, :]
            z, attention[s], _ = self.dca[s](tokens[s].expand(-1, n, -1), h_n, return_attention=True)
            updated[s] = g[:, None, :] + z
        fused = self.fuse(torch.cat([updated[s] for s in SUBSPACES], -1)) if self.fuse is not None else None
        parts = {}
        for s in SUBSPACES:
            query = self.ln_enc(fused if fused is not None else updated[s])
            parts[s] = torch.tanh(self.out[s](self.ln_out(self.select[s](query, tokens[s]))))
        features = torch.cat([parts[s] for s in SUBSPACES], -1)
        return {"parts": parts, "features": features, "logits": self.classifier(features), "attention": attention}


@METHODS.register("dmsf_teacher")
class DMSFTeacher(DMSFBase):
    """The DMSF teacher with CGC and IGC/DEV (module docstring). Reads both bags and the omics."""

    requires = frozenset({"bag", "bag_secondary", "fixed_bags", "omics"})
    display_name = "DMSF teacher"
    variants = DMSF_VARIANTS
    loss_terms = ("task", "dev")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Shared DMSF model settings; teacher stage: lr 2e-4, batch 8 (spec (d) [OURS])."""
        return {"model": dmsf_model_defaults(), "train": stage_train(2e-4, 8)}

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """Batches of >= 2 patients while DEV is on (its batch variance needs two)."""
        decl = super().declare(cfg)
        if float(cls.model_section(cfg)["dev_weight"]) > 0:
            decl = dataclasses.replace(decl, min_batch_size=2)
        return decl

    def __init__(self, cfg: dict, info: CohortInfo, frozen=None):
        super().__init__(cfg, info, frozen)
        m = self.mcfg
        query = m["selection_query"]
        if query not in ("fused", "subspace"):
            raise ConfigError(f"model.selection_query must be 'fused' or 'subspace', got {query!r}")
        if m["cgc_projection"] not in CGC_MODES:
            raise ConfigError(f"model.cgc_projection must be one of {CGC_MODES}, got {m['cgc_projection']!r}")
        if m["dev_form"] not in DEV_FORMS:
            raise ConfigError(f"model.dev_form must be one of {DEV_FORMS}, got {m['dev_form']!r}")
        self.dev_weight, self.use_cgc = float(m["dev_weight"]), bool(m["cgc"])
        genes = teacher_genes(info, m, seed=int(cfg.get("seed", 0)))
        for s in SUBSPACES:
            self.register_buffer(f"genes_{s}", torch.as_tensor(genes[s], dtype=torch.long))
        self.snn = nn.ModuleDict({s: MaxNet(len(genes[s]), self.dim, m["snn_hidden"], float(m["dropout"]),
                                            str(m["snn_activation"])) for s in SUBSPACES})
        dims = self.feature_dims()
        self.withhold = float(m.get("withhold_genes", 0.0))
        if not 0.0 <= self.withhold < 1.0:
            raise ConfigError(f"model.withhold_genes must be in [0, 1), got {self.withhold!r}")
        if self.withhold > 0:   # a learned stand-in for a withheld gene embedding, per subspace
            self.withheld = nn.ParameterDict({s: nn.Parameter(torch.zeros(self.dim)) for s in SUBSPACES})
        self.experts = nn.ModuleDict({e: TeacherExpert(dims[e], self.n_out, self.make_dca, self.dim, query,
                                                       int(m["selection_heads"]), float(m["dropout"]))
                                      for e in EXPERTS})

    def gene_indices(self, subspace: str) -> Tensor:
        """Indices (into the omics vector) of the genes a subspace's SNN reads."""
        return getattr(self, f"genes_{subspace}")

    def fitted_choices(self, genes: Sequence[str]) -> dict[str, Any]:
        """The genes each subspace's SNN reads (chosen on the training patients' variances), by name."""
        chosen = {s: [str(genes[int(i)]) for i in self.gene_indices(s).tolist()] for s in SUBSPACES}
        return {"teacher_genes": chosen, "hvg_fraction": float(self.mcfg.get("hvg_fraction", 0.3)),
                "hvg_random": bool(self.mcfg.get("hvg_random", False)),
                "subspaces": {k: list(v) for k, v in (self.mcfg.get("subspaces") or DEFAULT_SUBSPACES).items()}}

    def forward_experts(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Both magnifications' outputs (see :meth:`TeacherExpert.forward`)."""
        omics = batch["omics"].float()
        omics = omics.unsqueeze(0) if omics.dim() == 1 else omics
        genes = {s: self.snn[s](omics[:, self.gene_indices(s)]) for s in SUBSPACES}
        if self.training and self.withhold > 0:
            drop = torch.rand(omics.shape[0], 1, device=omics.device) < self.withhold
            genes = {s: torch.where(drop, self.withheld[s].to(g.dtype).expand_as(g), g) for s, g in genes.items()}
        return {e: self.experts[e](self.bag(batch, e), genes) for e in EXPERTS}

    def loss(self, batch: Mapping[str, Any]) -> LossOutput:
        """``task`` (both magnifications), ``dev`` (both subspaces, batches of >= 2) and CGC stats."""
        out = self.forward_experts(batch)
        logs: dict[str, float] = {}
        task = None
        stats: dict[str, Tensor] = {}
        for e in EXPERTS:
            t = self.task_loss(out[e]["logits"], batch)
            logs[f"task_{e}"] = float(t.detach())
            task = t if task is None else task + t
            if self.use_cgc:
                parts = out[e]["parts"]
                stats.update(self.cgc_stats(e, parts["tumor"], parts["tme"], self.experts[e].classifier, batch))
        terms = {"task": task}
        n = out["m20"]["logits"].shape[0]
        if self.dev_weight > 0 and n >= 2:
            dev = None
            for s in SUBSPACES:
                d = dev_loss(out["m10"]["attention"][s], out["m20"]["attention"][s], self.dev_weight,
                             str(self.mcfg["dev_form"]))
                logs[f"dev_{s}"] = float(d.detach())
                dev = d if dev is None else dev + d
            terms["dev"] = dev
        return LossOutput(terms, logs, stats)

    def adjust_gradients(self, ctx: GradientContext) -> None:
        """CGC on each magnification's classifier weight, with the step's summed confidences."""
        if not self.use_cgc:
            return
        for e in EXPERTS:
            self.cgc_apply(e, self.experts[e].classifier, ctx, str(self.mcfg["cgc_projection"]))

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """``[B, 4d]``: the 20x and 10x features ``[X_T; X_E]``."""
        out = self.forward_experts(batch)
        return torch.cat([out[e]["features"] for e in EXPERTS], -1)

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Dual-expert combination of the two magnifications' logits."""
        out = self.forward_experts(batch)
        return self.combine({e: out[e]["logits"] for e in EXPERTS}, batch)
