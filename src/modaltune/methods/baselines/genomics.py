"""Genomics baselines of ModalTune Sec. 4.2 / Table 2: MLP, SNN, S-MLP and Gene Mixer.

All read the standardised bulk transcriptomics ``omics`` [G] of one patient.

* ``mlp`` -- two ReLU layers (256, 256) with dropout.
* ``snn`` -- self-normalising network (Klambauer et al. 2017): SELU + AlphaDropout, LeCun init.
* ``smlp`` -- S-MLP (Elmarakeby et al. 2021, P-NET): sparse gene -> pathway layer (weights only
  for member genes), tanh, then a dense layer.
* ``gene_mixer`` -- ModalTune's transcriptomics encoder (per-pathway SNN tokens, MLP-mixer,
  compression to 64 tokens of 768) mean-pooled, + linear head.

Widths are not given by the ModalTune paper; we use 256-wide layers as in the SNN of
Chen et al. (Pathomic Fusion / MCAT). Pathways come from the cohort's gene sets; a cohort
without gene sets falls back to contiguous chunks of 100 genes. A patient without omics is
represented by a learned "missing-omics" embedding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...encoders.genomics import MLPEncoder, SNNEncoder, SparsePathwayMLP
from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo
from ..inputs import as_omics, has_omics
from .label_method import LabelMethod, cohort_pathways, merged_config

__all__ = ["OmicsBranch", "OMICS_ENCODER_DEFAULTS", "build_omics_branch", "MLPMethod", "SNNMethod",
           "SMLPMethod", "GeneMixerMethod"]

OMICS_ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": [256, 256], "dropout": 0.25},
    "snn": {"hidden": [256, 256], "dropout": 0.25},
    "smlp": {"units_per_pathway": 1, "hidden": [256], "dropout": 0.25},
    "gene_mixer": {"dim": 256, "depth": 3, "n_tokens": 64, "out_dim": 768, "dropout": 0.25},
}


class _PooledMixer(nn.Module):
    def __init__(self, info: CohortInfo, m: dict):
        super().__init__()
        from ...encoders.omics import TranscriptomicsEncoder

        self.enc = TranscriptomicsEncoder(cohort_pathways(info), info.n_genes, dim=m["dim"], depth=m["depth"],
                                          n_tokens=m["n_tokens"], out_dim=m["out_dim"], dropout=m["dropout"])
        self.out_dim = self.enc.out_dim

    def forward(self, omics: Tensor) -> Tensor:
        return self.enc.forward_pooled(omics)


class OmicsBranch(nn.Module):
    """One transcriptomics encoder + learned missing-omics embedding: patient dict -> [1,H]."""

    def __init__(self, encoder: nn.Module, out_dim: int):
        super().__init__()
        self.encoder = encoder
        self.out_dim = out_dim
        self.missing = nn.Parameter(torch.randn(1, out_dim) * 0.02)

    def forward(self, batch: dict) -> Tensor:
        """Embed omics ``[B, G]`` -> ``[B, H]``."""
        if not has_omics(batch):
            return self.missing
        return self.encoder(as_omics(batch, self.missing.device))


def build_omics_branch(kind: str, m: dict, info: CohortInfo) -> OmicsBranch:
    """Build the ``kind`` ("mlp" | "snn" | "smlp" | "gene_mixer") branch from settings ``m``."""
    if info.n_genes <= 0:
        raise ConfigError(f"the {kind} baseline needs transcriptomics (cohort n_genes is {info.n_genes})")
    if kind == "mlp":
        enc: nn.Module = MLPEncoder(info.n_genes, m["hidden"], m["dropout"])
    elif kind == "snn":
        enc = SNNEncoder(info.n_genes, m["hidden"], m["dropout"])
    elif kind == "smlp":
        enc = SparsePathwayMLP(info.n_genes, cohort_pathways(info), m["units_per_pathway"], m["hidden"], m["dropout"])
    elif kind == "gene_mixer":
        enc = _PooledMixer(info, m)
    else:
        raise ConfigError(f"unknown omics branch {kind!r}; known: {sorted(OMICS_ENCODER_DEFAULTS)}")
    return OmicsBranch(enc, enc.out_dim)


class _OmicsMethod(LabelMethod):
    requires: ClassVar[frozenset[str]] = frozenset({"omics"})
    family: ClassVar[str] = "Genomics"
    family_order: ClassVar[int] = 20
    kind: ClassVar[str] = ""

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return merged_config({k: (list(v) if isinstance(v, list) else v)
                              for k, v in OMICS_ENCODER_DEFAULTS[cls.kind].items()})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        self.omics = build_omics_branch(self.kind, self.mcfg, info)
        self.head = self.make_head(self.omics.out_dim)

    def represent(self, batch: dict) -> Tensor:
        return self.omics(batch)


@METHODS.register("mlp")
class MLPMethod(_OmicsMethod):
    """MLP on bulk transcriptomics + linear head."""

    kind = "mlp"
    display_name = "MLP"


@METHODS.register("snn")
class SNNMethod(_OmicsMethod):
    """SNN (Klambauer et al. 2017) on bulk transcriptomics + linear head."""

    kind = "snn"
    display_name = "SNN"


@METHODS.register("smlp")
class SMLPMethod(_OmicsMethod):
    """S-MLP (P-NET style sparse gene -> pathway network) + linear head."""

    kind = "smlp"
    display_name = "S-MLP"


@METHODS.register("gene_mixer")
class GeneMixerMethod(_OmicsMethod):
    """Gene Mixer: ModalTune's transcriptomics encoder, mean-pooled, + linear head."""

    kind = "gene_mixer"
    display_name = "Gene Mixer"
