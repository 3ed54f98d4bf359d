"""CMTA baseline of the disentangled paper's tables (Zhou & Chen, "Cross-Modal Translation and
Alignment for Survival Analysis", ICCV 2023; spec (f) "CMTA").

Per patient (``d`` = ``model.dim``):

1. Tokens: patches ``Linear(D, d)+ReLU`` -> ``[1, N, d]``; genes -> one SNN token per gene set
   (:class:`~modaltune.encoders.omics.PathwayTokenizer`, as MCAT) -> ``[1, P, d]``. The gene sets are
   the cohort's (``info.pathways``; contiguous chunks of 100 genes when it has none, like
   :func:`~.label_method.cohort_pathways`), or those matched by ``model.token_sets`` globs
   (:func:`~.multimodal.token_pathways`). The official code used 4 arbitrary contiguous chunks of
   the 431 genes (spec (i) D17); chunks remain the fallback.
2. Encoders (:class:`TokenTransformer`, TransMIL-style): a learned class token, a pre-norm Nystrom
   attention layer, PPEG (pathology only), a second layer, LayerNorm. The gene encoder has no PPEG
   (gene sets have no spatial layout) and uses ``min(landmarks, P + 1)`` landmarks, which makes
   its Nystrom attention exact softmax attention up to the pseudo-inverse iterations.
3. Translation: single-head cross-attention "P-in-G" (each pathology token queries the gene
   tokens: pathology re-expressed from genomics) and "G-in-P" (each gene token queries the
   pathology tokens).
4. Decoders: a pathology decoder on P-in-G and a gene decoder on G-in-P, built like the encoders.
5. Fusion: per modality the mean of the encoder and decoder class tokens; the two are concatenated
   and fused by ``Linear(2d, d)+ReLU`` -> task head.

CMTA's own cohort-alignment loss (L1 between the decoder class token, translated from the other
modality, and the encoder class token) is not in the disentangled paper's shipped trainer (spec
(f)), so it is off by default; ``model.align: true`` adds it as the loss term ``align``
(``L1(dec_p, stopgrad(enc_p)) + L1(dec_g, stopgrad(enc_g))``; weigh it with
``train.loss_weights.align``).

Sizes where the paper is silent are CPU-friendly: width 256 and 8 heads (as the other early-fusion
baselines here), Nystrom landmarks ``d/2``, dropout 0.1. Missing modalities use MCAT's learned
stand-ins (one missing-patch token, learned missing gene tokens).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...encoders.mil import PPEG, NystromAttention
from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo, LossOutput
from .label_method import LabelMethod, merged_config
from .multimodal import _TwoModalityInputs, token_pathways

__all__ = ["TokenTransformer", "CMTAMethod"]


class _NystromLayer(nn.Module):
    """Pre-norm residual Nystrom self-attention (TransMIL's layer)."""

    def __init__(self, dim: int, heads: int, landmarks: int, pinv_iterations: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.dim ({dim}) must be divisible by model.heads ({heads})")
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim, heads=heads, dim_head=dim // heads, num_landmarks=landmarks,
                                     pinv_iterations=pinv_iterations, residual=True, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.norm(x))


class TokenTransformer(nn.Module):
    """TransMIL-style encoder of a token sequence: class token, layer, [PPEG], layer, LayerNorm.

    Args:
        dim: token width.
        heads: attention heads.
        landmarks: Nystrom landmarks.
        pinv_iterations: pseudo-inverse iterations.
        dropout: dropout on each attention output.
        ppeg: apply TransMIL's pyramid position encoding between the layers (the tokens are then
            padded to a square by repeating the first ones cyclically, as TransMIL does).
    """

    def __init__(self, dim: int, heads: int, landmarks: int, pinv_iterations: int = 6, dropout: float = 0.1,
                 ppeg: bool = True):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layer1 = _NystromLayer(dim, heads, landmarks, pinv_iterations, dropout)
        self.ppeg = PPEG(dim) if ppeg else None
        self.layer2 = _NystromLayer(dim, heads, landmarks, pinv_iterations, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens ``[B, n, dim]`` -> (class token ``[B, dim]``, encoded tokens ``[B, n, dim]``)."""
        b, n, _ = x.shape
        side = 0
        if self.ppeg is not None:
            side = math.ceil(math.sqrt(n))
            extra = side * side - n
            if extra:
                x = torch.cat([x, x[:, torch.arange(extra, device=x.device) % n]], dim=1)
        h = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        h = self.layer1(h)
        if self.ppeg is not None:
            h = self.ppeg(h, side)
        h = self.norm(self.layer2(h))
        return h[:, 0], h[:, 1:n + 1]


@METHODS.register("cmta")
class CMTAMethod(LabelMethod):
    """CMTA (Zhou & Chen 2023): per-modality encoders, cross-modal translation, decoders, fusion of
    the averaged encoder/decoder class tokens."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Multi-modal"
    family_order: ClassVar[int] = 30
    display_name: ClassVar[str] = "CMTA"
    loss_terms: ClassVar[tuple[str, ...]] = ("loss", "align")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """CMTA's settings (module docstring) on the shared baseline schedule."""
        return merged_config({"dim": 256, "heads": 8, "landmarks": None, "pinv_iterations": 6, "dropout": 0.1,
                              "omics_dropout": 0.25, "cross_heads": 1, "token_sets": None, "align": False})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        d, p = int(m["dim"]), float(m["dropout"])
        pathways = token_pathways(info, m.get("token_sets"))
        self.inputs = _TwoModalityInputs(info, d, float(m["omics_dropout"]),
                                         nn.Sequential(nn.Linear(info.feature_dim, d), nn.ReLU()), pathways)
        land = int(m.get("landmarks") or max(1, d // 2))
        gene_land = min(land, len(pathways) + 1)
        heads, iters = int(m["heads"]), int(m["pinv_iterations"])
        self.path_encoder = TokenTransformer(d, heads, land, iters, p, ppeg=True)
        self.gene_encoder = TokenTransformer(d, heads, gene_land, iters, p, ppeg=False)
        self.p_in_g = nn.MultiheadAttention(d, int(m["cross_heads"]), batch_first=True)
        self.g_in_p = nn.MultiheadAttention(d, int(m["cross_heads"]), batch_first=True)
        self.path_decoder = TokenTransformer(d, heads, land, iters, p, ppeg=True)
        self.gene_decoder = TokenTransformer(d, heads, gene_land, iters, p, ppeg=False)
        self.fusion = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU())
        self.head = self.make_head(d)

    def class_tokens(self, batch: dict) -> dict[str, Tensor]:
        """Encoder and decoder class tokens ``[1, d]`` of one patient: ``enc_p``, ``enc_g``, ``dec_p``, ``dec_g``."""
        p_tok, h_tok = self.inputs(batch)  # gene tokens [1,P,d], patch tokens [1,N,d]
        enc_p, path = self.path_encoder(h_tok)
        enc_g, gene = self.gene_encoder(p_tok)
        p_in_g = self.p_in_g(path, gene, gene, need_weights=False)[0]   # [1,N,d] pathology from genes
        g_in_p = self.g_in_p(gene, path, path, need_weights=False)[0]   # [1,P,d] genes from pathology
        dec_p, _ = self.path_decoder(p_in_g)
        dec_g, _ = self.gene_decoder(g_in_p)
        return {"enc_p": enc_p, "enc_g": enc_g, "dec_p": dec_p, "dec_g": dec_g}

    def _fuse(self, t: dict[str, Tensor]) -> Tensor:
        path = (t["enc_p"] + t["dec_p"]) / 2
        gene = (t["enc_g"] + t["dec_g"]) / 2
        return self.fusion(torch.cat([path, gene], dim=-1))

    def represent(self, batch: dict) -> Tensor:
        """Fused representation ``[1, d]`` of one patient."""
        return self._fuse(self.class_tokens(batch))

    def loss(self, batch: dict) -> LossOutput:
        """The task loss (``loss``) and, with ``model.align``, CMTA's alignment term (``align``)."""
        if not self.mcfg.get("align"):
            return super().loss(batch)
        t = self.class_tokens(batch)
        task, logs = self.task_loss(self.head(self._fuse(t)).reshape(-1), batch)
        align = F.l1_loss(t["dec_p"], t["enc_p"].detach()) + F.l1_loss(t["dec_g"], t["enc_g"].detach())
        logs["align"] = float(align.detach())
        return LossOutput({"loss": task, "align": align}, logs)
