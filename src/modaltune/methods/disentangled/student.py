"""``dmsf_student``: the WSI-only student (paper Stage II, Sec. III-D.1; spec (b) "Student").

Per magnification, :class:`StudentExpert`:

1. ``H = ReLU(Linear(D_in, d)(X))`` on the ``grid x grid`` bag; ``Z = H + DCA(LN(H))``, deformable
   *self*-attention ("H-to-H deformation", Eqs. 8-9).
2. Informative Token Aggregation (:class:`~modaltune.encoders.clustering.TokenAggregation`): DPC-KNN
   (``ita_k`` = 5 neighbours, ``ita_variant: code|paper``, deterministic tie-break instead of the
   official random noise, spec (k) Q5) clusters the LayerNorm-ed tokens into **2** prototypes,
   merged with learned weights. The count is fixed at 2 (not the official ``ceil(0.0008 N)``, which
   is 2 only at N = 2,500, spec (i) D13) so the feature ``[P_1; P_2]`` has the width of the
   teacher's ``[X_T; X_E]``. Prototype order is the clustering's score order, as in the code
   (spec (k) Q6).
3. ``logits = Linear(2d, C)([P_1; P_2])``.

The student reads no genomics at all: no SNN, no gene input; ``predict`` and ``embed`` use
``bag`` and ``bag_secondary`` only. This stage trains on labels only (``task`` = task loss of the
20x plus the 10x logits, spec (c) "Student warm-up"); its selected epoch is "Ours (Stu)" and the
starting point of ``dmsf_distill``. Predictions combine the magnifications with the dual-expert
rule of :mod:`.common`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ...encoders.clustering import TokenAggregation
from ...registry import METHODS
from ..base import CohortInfo, LossOutput
from .common import EXPERTS, DMSFBase, dmsf_model_defaults, stage_train

__all__ = ["StudentExpert", "DMSFStudent", "N_PROTOTYPES"]

#: prototypes per magnification (matched to the teacher's two subspaces)
N_PROTOTYPES = 2


class StudentExpert(nn.Module):
    """The student at one magnification (module docstring, items 1-3).

    Args:
        in_dim: patch-feature width.
        n_out: head width (classes or survival bins).
        make_dca: factory of a deformable attention block.
        dim: model width d.
        k: neighbours of the DPC-KNN density.
        variant: ``code`` or ``paper`` DPC-KNN.
    """

    def __init__(self, in_dim: int, n_out: int, make_dca, dim: int, k: int = 5, variant: str = "code"):
        super().__init__()
        self.fc = nn.Linear(in_dim, dim)
        self.ln = nn.LayerNorm(dim)
        self.dca = make_dca()
        self.ita = TokenAggregation(dim, N_PROTOTYPES, k, variant)  # type: ignore[arg-type]
        self.classifier = nn.Linear(N_PROTOTYPES * dim, n_out)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{"features": [B, 2d], "logits": [B, C], "assignment": [B, N]}`` of a bag ``[B, N, D_in]``."""
        h = torch.relu(self.fc(x))
        z = h + self.dca(self.ln(h))
        merged, assignment = self.ita(z)
        features = merged.reshape(merged.shape[0], -1)
        return {"features": features, "logits": self.classifier(features), "assignment": assignment}


@METHODS.register("dmsf_student")
class DMSFStudent(DMSFBase):
    """The WSI-only DMSF student trained on labels (module docstring)."""

    requires = frozenset({"bag", "bag_secondary", "fixed_bags"})
    display_name = "DMSF student"
    loss_terms: tuple[str, ...] = ("task",)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Shared DMSF model settings; student stage: lr 2e-4, batch 16 (spec (d) [OURS])."""
        return {"model": dmsf_model_defaults(), "train": stage_train(2e-4, 16)}

    def __init__(self, cfg: dict, info: CohortInfo, frozen=None):
        super().__init__(cfg, info, frozen)
        dims = self.feature_dims()
        self.experts = nn.ModuleDict({e: StudentExpert(dims[e], self.n_out, self.make_dca, self.dim,
                                                       int(self.mcfg["ita_k"]), str(self.mcfg["ita_variant"]))
                                      for e in EXPERTS})

    def forward_experts(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Both magnifications' outputs (see :meth:`StudentExpert.forward`); reads only the bags."""
        return {e: self.experts[e](self.bag(batch, e)) for e in EXPERTS}

    def task_terms(self, out: Mapping[str, Mapping[str, Tensor]], batch: Mapping[str, Any]
                   ) -> tuple[Tensor, dict[str, float]]:
        """Sum of the two magnifications' task losses, and their logs."""
        total, logs = None, {}
        for e in EXPERTS:
            t = self.task_loss(out[e]["logits"], batch)
            logs[f"task_{e}"] = float(t.detach())
            total = t if total is None else total + t
        return total, logs  # type: ignore[return-value]

    def loss(self, batch: Mapping[str, Any]) -> LossOutput:
        """``task``: the task loss of the 20x plus the 10x logits."""
        task, logs = self.task_terms(self.forward_experts(batch), batch)
        return LossOutput({"task": task}, logs)

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """``[B, 4d]``: the 20x and 10x prototype features."""
        out = self.forward_experts(batch)
        return torch.cat([out[e]["features"] for e in EXPERTS], -1)

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Dual-expert combination of the two magnifications' logits."""
        out = self.forward_experts(batch)
        return self.combine({e: out[e]["logits"] for e in EXPERTS}, batch)

    @torch.no_grad()
    def introspect(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Per magnification, the ITA cluster of every token (``assignment_m20`` / ``assignment_m10``
        ``[B, grid**2]``, in the fixed bag's order): which patches the student groups together."""
        out = self.forward_experts(batch)
        return {f"assignment_{e}": out[e]["assignment"] for e in EXPERTS}
