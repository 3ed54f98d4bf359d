"""Missing-modality baselines of the disentangled paper: LM (linear mapping) and AE (autoencoder).

The paper's tables evaluate a "missing-modality" setting (train on WSI + RNA, test on WSI only;
Sec. IV-A, Tables I-II; spec (f) "LM / AE", citing [31]). Both baselines are ABMIL + SNN in which
the omics embedding is *predicted from the WSI embedding*:

* ``abmil_lm`` -- ``h_hat = Linear(128, 128)(h_wsi)``;
* ``abmil_ae`` -- ``h_hat = Linear(128, 64)-LayerNorm-Linear(64, 128)(h_wsi)``;

and the task head reads ``[h_wsi; h_hat]`` at training **and** at test, so the head never sees a
real omics embedding and inference needs no omics. The WSI branch is the paper's ABMIL and the
SNN the framework's MaxNet, both from :mod:`.pathomic`.

Deviation (spec (f) [OURS], (i) D17): the official model has no loss that ties ``h_hat`` to the
SNN embedding (its trainer is missing), which makes the SNN dead weight. Here the loss has two
named terms: ``loss`` (the task loss) and ``impute`` = ``MSE(h_hat, stopgrad(h_omic))``, counted
only for patients with both a slide and omics. Because of the stop-gradient and because the head
never reads ``h_omic``, nothing trains the SNN under these two terms: the target is the SNN's
fixed (randomly initialised) embedding of the genes. So ``model.omics_head: true`` (the default) adds
a third term, ``omics`` (the task loss of a separate linear head on ``h_omic``): the SNN learns a
task-informed omics embedding during training and the imputer learns to predict *that* from the
slide, which is what "missing-modality" learning means (train with both, test with slides only).
``omics_head: false`` gives the spec's literal two-term loss.

Inference (``predict``, ``embed``) never reads ``omics``: outputs are identical whether omics are
present, absent or noise. The declaration still lists ``omics`` because training needs it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import METHODS
from ..base import CohortInfo, LossOutput
from ..inputs import has_bag, has_omics
from .label_method import LabelMethod, TaskHead, merged_config
from .pathomic import PATHOMIC_DEFAULTS, PaperABMIL, SNNBranch

__all__ = ["ImputationMethod", "ABMILLinearMapping", "ABMILAutoencoder", "build_imputer"]


def build_imputer(kind: str, dim: int, hidden: int = 64) -> nn.Module:
    """The omics-embedding predictor: ``lm`` = ``Linear(dim, dim)``; ``ae`` = ``Linear(dim, hidden)-
    LayerNorm-Linear(hidden, dim)``."""
    if kind == "lm":
        return nn.Linear(dim, dim)
    return nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, dim))


class ImputationMethod(LabelMethod):
    """ABMIL + SNN with the omics embedding predicted from the WSI embedding (module docstring)."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Missing modality"
    family_order: ClassVar[int] = 15
    loss_terms: ClassVar[tuple[str, ...]] = ("loss", "impute", "omics")
    imputer: ClassVar[str] = "lm"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Branch settings (:data:`~.pathomic.PATHOMIC_DEFAULTS`), AE bottleneck, ``omics_head``."""
        extra = {"ae_hidden": 64} if cls.imputer == "ae" else {}
        return merged_config({**PATHOMIC_DEFAULTS, "snn_hidden": list(PATHOMIC_DEFAULTS["snn_hidden"]),
                              "omics_head": True, **extra})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        self.wsi = PaperABMIL(info.feature_dim, m["dim"], m["attn_dim"], m["attn_dropout"])
        self.omics = SNNBranch(info.n_genes, m["dim"], m["snn_hidden"], m["snn_dropout"], m["snn_activation"])
        self.predictor = build_imputer(self.imputer, m["dim"], int(m.get("ae_hidden", 64)))
        self.head = self.make_head(2 * m["dim"])
        self.omics_head: TaskHead | None = self.make_head(m["dim"]) if m.get("omics_head") else None

    def imputed(self, batch: dict) -> tuple[Tensor, Tensor]:
        """``(h_wsi, h_hat)``, both ``[1, dim]``, from the slide alone."""
        h_wsi = self.wsi(batch)
        return h_wsi, self.predictor(h_wsi)

    def represent(self, batch: dict) -> Tensor:
        """``[h_wsi; h_hat]`` ``[1, 2 dim]``; reads the slide only, never ``omics``."""
        return torch.cat(self.imputed(batch), dim=-1)

    def loss(self, batch: dict) -> LossOutput:
        """Terms ``loss`` (task), ``impute`` (MSE to the stopped SNN embedding) and, with
        ``omics_head``, ``omics`` (task loss of the omics head)."""
        h_wsi, h_hat = self.imputed(batch)
        task, logs = self.task_loss(self.head(torch.cat([h_wsi, h_hat], dim=-1)).reshape(-1), batch)
        terms = {"loss": task}
        paired = has_bag(batch) and has_omics(batch)
        h_omic = self.omics(batch) if has_omics(batch) else None
        if paired:
            impute = F.mse_loss(h_hat.float(), h_omic.detach().float())
        else:
            impute = (0 * h_hat).sum()
        terms["impute"] = impute
        logs["impute"] = float(impute.detach())
        if self.omics_head is not None:
            if h_omic is not None:
                omics_loss, _ = self.task_loss(self.omics_head(h_omic).reshape(-1), batch)
            else:
                omics_loss = sum((0 * p).sum() for p in self.omics_head.parameters())
            terms["omics"] = omics_loss
            logs["omics"] = float(omics_loss.detach())
        return LossOutput(terms, logs)


@METHODS.register("abmil_lm")
class ABMILLinearMapping(ImputationMethod):
    """LM baseline: ABMIL + SNN, omics embedding predicted by a linear map of the WSI embedding."""

    imputer = "lm"
    display_name = "LM (ABMIL+SNN)"


@METHODS.register("abmil_ae")
class ABMILAutoencoder(ImputationMethod):
    """AE baseline: ABMIL + SNN, omics embedding predicted by a LayerNorm bottleneck of the WSI embedding."""

    imputer = "ae"
    display_name = "AE (ABMIL+SNN)"
