"""ABMIL + SNN fusion baselines of the disentangled paper's tables: Concat, Add and Bilinear.

The disentangled histology-transcriptomics paper (Zhang et al., Sec. IV-A "Comparisons"; spec (f))
compares its teacher with three late fusions of the *same two branches*:

* WSI branch -- the paper's ABMIL: plain (non-gated) attention ``Linear(D,128)-Tanh-Linear(128,1)``
  scores the **raw** patch features, their softmax-weighted mean ``[1,D]`` is projected by
  ``Linear(D,128)`` (spec (f) "ABMIL", "Concat / Add / Bilinear"). This differs from
  :class:`~modaltune.encoders.mil.ABMIL`, which embeds the patches first, so it is built here from
  :class:`~modaltune.encoders.mil.NonGatedAttention`.
* Genomics branch -- the framework's own SNN
  (:class:`~modaltune.methods.disentangled.snn.MaxNet`: 64-48-32-128, ELU, AlphaDropout, final
  ReLU) on the whole omics vector, imported, not copied.

Fusions (registered names):

* ``abmil_snn_cat`` -- ``[h_wsi; h_omic]`` (256) -> task head.
* ``abmil_snn_add`` -- ``h_wsi + h_omic`` (128) -> task head.
* ``abmil_snn_bilinear`` -- Pathomic Fusion's gated bilinear fusion (Chen et al., IEEE TMI 2020;
  :class:`GatedBilinearFusion`): per modality a ``Linear+ReLU`` view ``h_m`` gated by
  ``sigmoid(z_m)``, ``z_m = Bilinear(x_wsi, x_omic)``, then ``Linear+ReLU+Dropout``; a 1 is
  appended to both gated vectors and their flattened outer product goes through two
  ``Linear-Norm-ReLU-Dropout`` encoders of width ``mmhid`` (128); no skip connection.
  Deviation: LayerNorm instead of the official BatchNorm1d, because our batches hold one patient
  (BatchNorm over one sample is undefined in training). Choices where the spec is silent: the
  norm sits between the Linear and the ReLU, and only in the two post-fusion encoders; the gated
  vectors keep the branch width (``fusion_dim`` 128, i.e. no down-scaling).

A patient without a slide (or without omics) gets the branch's learned "missing" embedding, as
the other multi-modal baselines do. The attention has no dropout by default (the spec's scorer has
none); the SNN's AlphaDropout is 0.1 as in the framework's MaxNet.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...encoders.mil import NonGatedAttention
from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo
from ..disentangled.snn import MaxNet
from ..inputs import as_bag, as_omics, has_bag, has_omics
from .label_method import LabelMethod, merged_config

__all__ = ["PaperABMIL", "SNNBranch", "GatedBilinearFusion", "PATHOMIC_DEFAULTS", "ABMILSNNMethod",
           "ABMILSNNConcat", "ABMILSNNAdd", "ABMILSNNBilinear"]

#: model settings shared by the ABMIL + SNN baselines (and by ``abmil_lm`` / ``abmil_ae``).
PATHOMIC_DEFAULTS: dict[str, Any] = {
    "dim": 128,                    # width of both branch embeddings (spec: Linear(1024,128), SNN 128)
    "attn_dim": 128,               # hidden width of the plain attention scorer
    "attn_dropout": 0.0,           # dropout after the attention tanh (the spec's scorer has none)
    "snn_hidden": [64, 48, 32],    # MaxNet hidden widths
    "snn_dropout": 0.1,            # MaxNet AlphaDropout
    "snn_activation": "elu",       # elu (official code) | selu (SNN paper)
}


class PaperABMIL(nn.Module):
    """The disentangled paper's ABMIL branch: plain attention pooling of raw features + projection.

    Args:
        in_dim: patch feature width ``D``.
        dim: output width (128).
        attn_dim: hidden width of the scorer ``Linear(D, attn_dim)-Tanh-Linear(attn_dim, 1)``.
        dropout: dropout after the scorer's tanh.
    """

    def __init__(self, in_dim: int, dim: int = 128, attn_dim: int = 128, dropout: float = 0.0):
        super().__init__()
        if in_dim <= 0:
            raise ConfigError(f"the ABMIL branch needs patch features (cohort feature_dim is {in_dim})")
        self.attention = NonGatedAttention(in_dim, attn_dim, dropout)
        self.proj = nn.Linear(in_dim, dim)
        self.out_dim = dim
        self.missing = nn.Parameter(torch.randn(1, dim) * 0.02)

    def attention_weights(self, bag: Tensor) -> Tensor:
        """Softmax attention ``[B, N]`` over the raw patch features ``bag`` ``[B, N, D]``."""
        return self.attention.weights(bag)

    def forward(self, batch: dict) -> Tensor:
        """Slide embedding ``[1, dim]`` of one patient (the learned missing embedding without a slide)."""
        if not has_bag(batch):
            return self.missing
        bag, _ = as_bag(batch, self.missing.device)
        return self.proj(self.attention(bag.float()))


class SNNBranch(nn.Module):
    """The framework's MaxNet SNN on the whole omics vector + a learned missing-omics embedding.

    Args:
        n_genes: omics width ``G``.
        dim: output width (128).
        hidden: MaxNet hidden widths.
        dropout: AlphaDropout rate.
        activation: ``elu`` | ``selu``.
    """

    def __init__(self, n_genes: int, dim: int = 128, hidden=(64, 48, 32), dropout: float = 0.1,
                 activation: str = "elu"):
        super().__init__()
        if n_genes <= 0:
            raise ConfigError(f"the SNN branch needs transcriptomics (cohort n_genes is {n_genes})")
        self.net = MaxNet(n_genes, out_dim=dim, hidden=tuple(hidden), dropout=dropout, activation=activation)
        self.out_dim = dim
        self.missing = nn.Parameter(torch.randn(1, dim) * 0.02)

    def forward(self, batch: dict) -> Tensor:
        """Omics embedding ``[1, dim]`` of one patient (the learned missing embedding without omics)."""
        if not has_omics(batch):
            return self.missing
        return self.net(as_omics(batch, self.missing.device))


class GatedBilinearFusion(nn.Module):
    """Pathomic Fusion's gated bilinear (Kronecker) fusion without skip (see the module docstring).

    Args:
        dim1: width of the first modality's vector (WSI).
        dim2: width of the second modality's vector (omics).
        fusion_dim: width of each gated vector before the outer product.
        mmhid: width of the two post-fusion encoders (the output width).
        dropout: dropout of the gated vectors, of the outer product and of both encoders.
        gate1: gate the first modality by ``sigmoid(Bilinear(x1, x2))``.
        gate2: gate the second modality likewise.
        norm: ``layer`` (LayerNorm after each post-fusion Linear) or ``none``.
    """

    def __init__(self, dim1: int, dim2: int, fusion_dim: int = 128, mmhid: int = 128, dropout: float = 0.25,
                 gate1: bool = True, gate2: bool = True, norm: str = "layer"):
        super().__init__()
        if norm not in ("layer", "none"):
            raise ConfigError(f"model.fusion_norm must be 'layer' or 'none', got {norm!r}")
        f = int(fusion_dim)
        self.gate1, self.gate2 = bool(gate1), bool(gate2)
        self.h1 = nn.Sequential(nn.Linear(dim1, f), nn.ReLU())
        self.h2 = nn.Sequential(nn.Linear(dim2, f), nn.ReLU())
        self.z1 = nn.Bilinear(dim1, dim2, f)
        self.z2 = nn.Bilinear(dim1, dim2, f)
        self.o1 = nn.Sequential(nn.Linear(f, f), nn.ReLU(), nn.Dropout(dropout))
        self.o2 = nn.Sequential(nn.Linear(f, f), nn.ReLU(), nn.Dropout(dropout))
        self.post_drop = nn.Dropout(dropout)

        def encoder(d_in: int) -> nn.Sequential:
            layers = [nn.Linear(d_in, mmhid)] + ([nn.LayerNorm(mmhid)] if norm == "layer" else [])
            return nn.Sequential(*layers, nn.ReLU(), nn.Dropout(dropout))

        self.encoder1 = encoder((f + 1) * (f + 1))
        self.encoder2 = encoder(mmhid)
        self.out_dim = int(mmhid)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Fuse ``x1`` ``[B, dim1]`` and ``x2`` ``[B, dim2]`` into ``[B, mmhid]``."""
        h1, h2 = self.h1(x1), self.h2(x2)
        if self.gate1:
            h1 = torch.sigmoid(self.z1(x1, x2)) * h1
        if self.gate2:
            h2 = torch.sigmoid(self.z2(x1, x2)) * h2
        o1, o2 = self.o1(h1), self.o2(h2)
        o1 = torch.cat([o1, o1.new_ones(o1.shape[0], 1)], dim=1)
        o2 = torch.cat([o2, o2.new_ones(o2.shape[0], 1)], dim=1)
        fused = torch.einsum("bi,bj->bij", o1, o2).flatten(1)
        return self.encoder2(self.encoder1(self.post_drop(fused)))


class ABMILSNNMethod(LabelMethod):
    """The paper's ABMIL branch + the framework's SNN branch, fused by :attr:`fusion`."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Multi-modal"
    family_order: ClassVar[int] = 30
    fusion: ClassVar[str] = "cat"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Branch settings (:data:`PATHOMIC_DEFAULTS`) and, for ``bilinear``, the fusion's."""
        extra = {"mmhid": 128, "fusion_dim": 128, "fusion_dropout": 0.25, "gate_wsi": True, "gate_omic": True,
                 "fusion_norm": "layer"} if cls.fusion == "bilinear" else {}
        return merged_config({**PATHOMIC_DEFAULTS, "snn_hidden": list(PATHOMIC_DEFAULTS["snn_hidden"]), **extra})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        self.wsi = PaperABMIL(info.feature_dim, m["dim"], m["attn_dim"], m["attn_dropout"])
        self.omics = SNNBranch(info.n_genes, m["dim"], m["snn_hidden"], m["snn_dropout"], m["snn_activation"])
        if self.fusion == "bilinear":
            self.fuser = GatedBilinearFusion(m["dim"], m["dim"], m["fusion_dim"], m["mmhid"], m["fusion_dropout"],
                                             m["gate_wsi"], m["gate_omic"], m["fusion_norm"])
            width = self.fuser.out_dim
        else:
            width = 2 * m["dim"] if self.fusion == "cat" else m["dim"]
        self.head = self.make_head(width)

    def represent(self, batch: dict) -> Tensor:
        """Fused representation ``[1, H]`` of one patient."""
        h_wsi, h_omic = self.wsi(batch), self.omics(batch)
        if self.fusion == "cat":
            return torch.cat([h_wsi, h_omic], dim=-1)
        if self.fusion == "add":
            return h_wsi + h_omic
        return self.fuser(h_wsi, h_omic)


@METHODS.register("abmil_snn_cat")
class ABMILSNNConcat(ABMILSNNMethod):
    """Concat baseline of the disentangled paper: ``[ABMIL; SNN]`` -> linear head."""

    fusion = "cat"
    display_name = "Concat (ABMIL+SNN)"


@METHODS.register("abmil_snn_add")
class ABMILSNNAdd(ABMILSNNMethod):
    """Add baseline of the disentangled paper: ``ABMIL + SNN`` -> linear head."""

    fusion = "add"
    display_name = "Add (ABMIL+SNN)"


@METHODS.register("abmil_snn_bilinear")
class ABMILSNNBilinear(ABMILSNNMethod):
    """Bilinear baseline of the disentangled paper: Pathomic gated bilinear fusion -> linear head."""

    fusion = "bilinear"
    display_name = "Bilinear (ABMIL+SNN)"


@METHODS.register("abmil_plain")
class PlainABMILMethod(LabelMethod):
    """The disentangled paper's ABMIL row: plain (non-gated) attention pooling of the raw patch features,
    ``Linear(D, 128)``, task head (spec (f) "ABMIL"); the gated ABMIL of ModalTune's tables is ``abmil``."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag"})
    family: ClassVar[str] = "WSI"
    family_order: ClassVar[int] = 10
    display_name: ClassVar[str] = "ABMIL (plain)"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Branch width and scorer width of the paper's code (128)."""
        return merged_config({"dim": 128, "attn_dim": 128, "attn_dropout": 0.0})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        self.wsi = PaperABMIL(info.feature_dim, int(m["dim"]), int(m["attn_dim"]), float(m["attn_dropout"]))
        self.head = self.make_head(int(m["dim"]))

    def represent(self, batch: dict) -> Tensor:
        """Slide embedding ``[1, 128]`` of one patient."""
        return self.wsi(batch)
