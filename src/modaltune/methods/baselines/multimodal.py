"""Early-fusion multi-modal baselines of ModalTune Sec. 4.2 / Table 2: MCAT and SurvPath.

Both turn the transcriptomics into pathway tokens with the per-pathway SNN of
:class:`modaltune.encoders.omics.PathwayTokenizer` (one 256-d token per pathway of the cohort's
gene sets) and project patch features to the same width.

``mcat`` -- Chen et al., Multimodal Co-Attention Transformer for survival prediction in gigapixel
whole slide images, ICCV 2021. Genomic-guided co-attention: the pathway tokens are the queries
of a single-head attention over the patch embeddings, giving one WSI token per pathway; each
modality then goes through its own 2-layer transformer encoder (8 heads, FFN 512), gated
attention pooling and a ``Linear + ReLU`` "rho" layer; the two 256-d vectors are concatenated
and fused by ``Linear(512,256) ReLU Linear(256,256) ReLU``. Choices left open / changed: MCAT
grouped genes into 6 functional signatures; here the tokens are the cohort's pathways (as in
SurvPath and ModalTune). ``model.token_sets`` (:func:`token_pathways`) picks which gene sets become
tokens: ``null`` = all of them; a list of globs over gene-set names, e.g. ``["TUMOR_*", "TME_*"]``,
gives the disentangled paper's MCAT baseline tumor / microenvironment tokens instead of the
official code's arbitrary contiguous gene chunks (spec (i) D17).

``survpath`` -- Jaume et al., Modeling dense multimodal interactions between biological
pathways and histology for survival prediction, CVPR 2024. Pathway and patch tokens are
concatenated and pass one pre-norm single-head attention layer with SurvPath's sparse pattern:
pathway queries attend to pathways and patches (P->P, P->H), patch queries attend to pathways
only (H->P), there is no patch-to-patch attention, so cost is linear in the number of patches.
As in SurvPath the attention's value width is dim/2 (no output projection); then a pre-norm
feed-forward, LayerNorm, mean pooling of each modality's tokens, concatenation, and an MLP
(dim -> dim/4, ReLU) before the task head. Choices left open: no residual around the attention
(SurvPath's default), dropout 0.1.

``model.tokens`` picks what meets the patches (spec ``mice.md`` (e), (f) 9): ``pathways`` (default,
the papers' setting) or ``report``: the report's token states ``[L, Dr]`` from the frozen report
encoder (the declared input ``report_tokens``, cached per cohort and encoder; every real token, at
most the encoder's maximum length, so no padding mask is needed) through one ``Linear(Dr, dim)``
in place of the pathway tokenizer, as MICE's MCAT/SurvPath baselines "substitute the genomics
features with text features" [MICE §4.5]. The pathology side is unchanged; the method then reads
no expression. ``mcat_report`` / ``survpath_report`` (:mod:`modaltune.methods.mice.token_baselines`)
register this variant with MICE's protocol.

Missing modalities: a patient without a slide gets one learned "missing-WSI" token in place of
its patches; a patient without omics gets learned "missing" pathway tokens; with report tokens, a
patient without a report (or with an empty one) gets one learned "missing-report" token in place
of the report's tokens (MICE's learned missing embedding of a single-cohort run), so MCAT's
co-attention yields one WSI token and SurvPath's attention sees one context token.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from ...encoders.mil import GatedAttention
from ...encoders.omics import PathwayTokenizer
from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo, Declaration
from ..disentangled.subspaces import match_gene_sets
from ..inputs import as_bag, as_omics, as_report_tokens, has_bag, has_omics, has_report_tokens
from .label_method import LabelMethod, cohort_pathways, merged_config

__all__ = ["SurvPathAttention", "MCATMethod", "SurvPathMethod", "token_pathways", "TOKEN_SOURCES"]

#: values of ``model.tokens``: what meets the patches
TOKEN_SOURCES = ("pathways", "report")


def token_pathways(info: CohortInfo, token_sets: list[str] | None) -> list:
    """Gene index arrays of the gene sets used as tokens.

    Args:
        info: the cohort (gene sets and their names).
        token_sets: ``None`` = every gene set (:func:`cohort_pathways`, contiguous chunks when the
            cohort has none); else ``fnmatch`` globs over gene-set names, in the cohort's order.

    Raises:
        ConfigError: ``token_sets`` is not a list of strings or matches no non-empty gene set.
    """
    if token_sets is None:
        return cohort_pathways(info)
    if isinstance(token_sets, str) or not all(isinstance(t, str) for t in token_sets):
        raise ConfigError(f"model.token_sets must be null or a list of gene-set name globs, got {token_sets!r}")
    hits = [info.pathways[i] for i in match_gene_sets(list(info.pathway_names), token_sets)
            if len(info.pathways[i]) > 0]
    if not hits:
        shown = ", ".join(map(str, list(info.pathway_names)[:8])) or "none"
        raise ConfigError(f"model.token_sets = {list(token_sets)} matches no gene set with genes; the cohort's gene "
                          f"sets start: {shown}")
    return hits


class _TwoModalityInputs(nn.Module):
    """Context tokens [1,P,dim] (pathways, or the report's projected tokens) and projected patch
    tokens [1,N,dim], with learned stand-ins for a missing modality."""

    def __init__(self, info: CohortInfo, dim: int, dropout: float, patch_proj: nn.Module,
                 pathways: list | None = None, tokens: str = "pathways"):
        super().__init__()
        self.source = tokens
        if tokens == "report":
            if info.feature_dim <= 0 or info.report_dim <= 0:
                raise ConfigError("MCAT/SurvPath with model.tokens=report need patch features and report token "
                                  "states (declared input report_tokens; the cohort needs reports)")
            self.report_proj = nn.Linear(info.report_dim, dim)
            n_missing = 1
        else:
            if info.feature_dim <= 0 or info.n_genes <= 0:
                raise ConfigError("multi-modal baselines need both patch features and transcriptomics")
            paths = cohort_pathways(info) if pathways is None else pathways
            self.tokenizer = PathwayTokenizer(paths, info.n_genes, dim=dim, dropout=dropout)
            n_missing = self.tokenizer.n_pathways
        self.patch_proj = patch_proj
        self.missing_patch = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        missing = nn.Parameter(torch.randn(1, n_missing, dim) * 0.02)
        if tokens == "report":
            self.missing_report = missing
        else:
            self.missing_pathways = missing

    def context(self, batch: dict) -> Tensor:
        """The context tokens [1,P,dim] of one patient (its learned stand-in when it lacks them)."""
        dev = self.missing_patch.device
        if self.source == "report":
            return self.report_proj(as_report_tokens(batch, dev)) if has_report_tokens(batch) else self.missing_report
        return self.tokenizer(as_omics(batch, dev)) if has_omics(batch) else self.missing_pathways

    def forward(self, batch: dict) -> tuple[Tensor, Tensor]:
        p = self.context(batch)
        if has_bag(batch):
            h = self.patch_proj(as_bag(batch, self.missing_patch.device)[0].float())
        else:
            h = self.missing_patch
        return p, h


class _TokenSource:
    """``model.tokens`` of MCAT and SurvPath: the context tokens and the declared inputs they need."""

    @classmethod
    def token_source(cls, cfg: Mapping[str, Any] | None) -> str:
        """``pathways`` or ``report`` for ``cfg`` (over the method's defaults).

        Raises:
            ConfigError: an unknown source, or ``model.token_sets`` with report tokens.
        """
        model = {**cls.default_config()["model"], **((cfg or {}).get("model") or {})}
        source = model.get("tokens") or "pathways"
        if source not in TOKEN_SOURCES:
            raise ConfigError(f"model.tokens must be one of {list(TOKEN_SOURCES)}, got {source!r}")
        if source == "report" and model.get("token_sets") is not None:
            raise ConfigError("model.token_sets picks gene sets as tokens; it has no meaning with model.tokens=report")
        return source

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """The declaration, with ``report_tokens`` in place of ``omics`` for report tokens."""
        decl = super().declare(cfg)  # type: ignore[misc]
        if cls.token_source(cfg) != "report":
            return decl
        return dataclasses.replace(decl, inputs=(decl.inputs - {"omics"}) | {"report_tokens"})


def _encoder(dim: int, heads: int, ff: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff, dropout=dropout, activation="relu",
                                       batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


@METHODS.register("mcat")
class MCATMethod(_TokenSource, LabelMethod):
    """MCAT (Chen et al. 2021): genomic-guided co-attention + per-modality transformers,
    gated attention pooling and concatenation fusion."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Multi-modal"
    family_order: ClassVar[int] = 30
    display_name: ClassVar[str] = "MCAT"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """MCAT's settings (width, heads, layers, dropout) on the shared baseline schedule."""
        return merged_config({"dim": 256, "heads": 8, "layers": 2, "ff_dim": 512, "dropout": 0.25,
                              "token_sets": None, "tokens": "pathways"})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        d, p = m["dim"], m["dropout"]
        proj = nn.Sequential(nn.Linear(info.feature_dim, d), nn.ReLU(), nn.Dropout(p))
        tokens = self.token_source(cfg)
        paths = token_pathways(info, m.get("token_sets")) if tokens == "pathways" else None
        self.inputs = _TwoModalityInputs(info, d, p, proj, paths, tokens)
        self.coattn = nn.MultiheadAttention(d, num_heads=1, batch_first=True)
        self.path_tf = _encoder(d, m["heads"], m["ff_dim"], m["layers"], p)
        self.omic_tf = _encoder(d, m["heads"], m["ff_dim"], m["layers"], p)
        self.path_pool = GatedAttention(d, d, p)
        self.omic_pool = GatedAttention(d, d, p)
        self.path_rho = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(p))
        self.omic_rho = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(p))
        self.fusion = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())
        self.head = self.make_head(d)

    def coattention(self, batch: dict) -> Tensor:
        """Co-attention weights [1,P,N] of each context token (pathway or report token) over the patches."""
        p, h = self.inputs(batch)
        return self.coattn(p, h, h, need_weights=True)[1]

    def represent(self, batch: dict) -> Tensor:
        """Fused representation of one patient."""
        p, h = self.inputs(batch)
        wsi_tokens, _ = self.coattn(p, h, h, need_weights=False)  # [1,P,d] genomic-guided WSI tokens
        h_path = self.path_rho(self.path_pool(self.path_tf(wsi_tokens)))
        h_omic = self.omic_rho(self.omic_pool(self.omic_tf(p)))
        return self.fusion(torch.cat([h_path, h_omic], dim=-1))


class SurvPathAttention(nn.Module):
    """SurvPath's sparse multimodal attention over ``[pathways; patches]``.

    Pathway queries attend over all tokens; patch queries attend over pathway tokens only.

    Args:
        dim: token width.
        dim_head: query/key/value width (single head, no output projection).
        dropout: dropout on the attention weights.
    """

    def __init__(self, dim: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim_head, bias=False)
        self.scale = dim_head ** -0.5
        self.drop = nn.Dropout(dropout)

    def forward(self, pathways: Tensor, patches: Tensor, return_attention: bool = False):
        """``pathways`` [B,P,dim], ``patches`` [B,N,dim] -> tokens [B,P+N,dim_head]
        (and the pathway-row / patch-row attention maps when asked)."""
        n_p = pathways.shape[1]
        q, k, v = self.to_qkv(self.norm(torch.cat([pathways, patches], dim=1))).chunk(3, dim=-1)
        q = q * self.scale
        qp, qh = q[:, :n_p], q[:, n_p:]
        a_p = self.drop(torch.softmax((qp @ k.transpose(-1, -2)).float(), dim=-1).to(v.dtype))  # [B,P,P+N]
        a_h = self.drop(torch.softmax((qh @ k[:, :n_p].transpose(-1, -2)).float(), dim=-1).to(v.dtype))  # [B,N,P]
        out = torch.cat([a_p @ v, a_h @ v[:, :n_p]], dim=1)
        return (out, a_p, a_h) if return_attention else out


class _FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@METHODS.register("survpath")
class SurvPathMethod(_TokenSource, LabelMethod):
    """SurvPath (Jaume et al. 2024): one sparse multimodal attention layer over pathway and patch
    tokens, mean pooling per modality, concatenation, MLP + task head."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Multi-modal"
    family_order: ClassVar[int] = 30
    display_name: ClassVar[str] = "SurvPath"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """SurvPath's settings on the shared baseline schedule."""
        return merged_config({"dim": 256, "dropout": 0.1, "omics_dropout": 0.25, "tokens": "pathways"})

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        d, p = m["dim"], m["dropout"]
        self.inputs = _TwoModalityInputs(info, d, m["omics_dropout"], nn.Linear(info.feature_dim, d),
                                         tokens=self.token_source(cfg))
        inner = d // 2
        self.attn = SurvPathAttention(d, inner, p)
        self.ff = _FeedForward(inner, p)
        self.norm = nn.LayerNorm(inner)
        self.to_embed = nn.Sequential(nn.Linear(2 * inner, d // 4), nn.ReLU())
        self.head = self.make_head(d // 4)

    def represent(self, batch: dict) -> Tensor:
        """Fused representation of one patient."""
        p, h = self.inputs(batch)
        x = self.norm(self.ff(self.attn(p, h)))
        n_p = p.shape[1]
        z = torch.cat([x[:, :n_p].mean(1), x[:, n_p:].mean(1)], dim=-1)
        return self.to_embed(z)
