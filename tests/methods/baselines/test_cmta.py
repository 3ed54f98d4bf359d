"""CMTA baseline (cmta) and the gene-set token selection it shares with MCAT (model.token_sets)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.methods.baselines.cmta import TokenTransformer
from modaltune.methods.baselines.multimodal import token_pathways
from modaltune.registry import METHODS

D, G = 6, 24
SETS = [np.arange(0, 6), np.arange(6, 12), np.arange(12, 18), np.arange(18, 24)]
SET_NAMES = ["TUMOR_CELL_CYCLE", "TME_IMMUNE", "TUMOR_HYPOXIA", "OTHER"]
TINY = {"dim": 8, "heads": 2, "dropout": 0.0, "omics_dropout": 0.0}


def _info(pathways=SETS, names=SET_NAMES, n_genes: int = G) -> CohortInfo:
    return CohortInfo(feature_dim=D, n_genes=n_genes, pathways=list(pathways), pathway_names=list(names),
                      n_classes=4, n_bins=4, sites=["GBMLGG"])


def _build(task: str = "subtype", info: CohortInfo | None = None, name: str = "cmta", **model):
    cls = METHODS.get(name)
    cfg = copy.deepcopy(cls.default_config())
    cfg["model"].update(TINY if name == "cmta" else {"dim": 8, "heads": 2, "layers": 1, "ff_dim": 8, "dropout": 0.0})
    cfg["model"].update(task=task, **model)
    return cls(cfg, info or _info())


def _patient(seed: int = 0, n: int = 7, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    p = {"bag": torch.randn(n, D, generator=g), "omics": torch.randn(G, generator=g),
         "has_wsi": torch.tensor(True), "has_omics": torch.tensor(True), "site": "GBMLGG",
         "subtype": torch.tensor(3), "survival_bin": torch.tensor(0), "event": torch.tensor(1.0),
         "has_survival": torch.tensor(True)}
    p.update(kw)
    return p


def test_registration_and_defaults():
    cls = METHODS.get("cmta")
    assert cls.registry_name == "cmta" and cls.family == "Multi-modal" and cls.display_name == "CMTA"
    assert cls.declare(cls.default_config()).inputs == frozenset({"bag", "omics"})
    m = cls.default_config()["model"]
    assert m["token_sets"] is None and m["align"] is False and m["dim"] == 256
    assert METHODS.get("mcat").default_config()["model"]["token_sets"] is None


@pytest.mark.parametrize("task", ["subtype", "survival"])
def test_shapes_both_tasks(task):
    torch.manual_seed(0)
    m = _build(task).eval()
    for n in (1, 7, 16):   # a single patch, a non-square and a square bag (PPEG pads to a square)
        p = _patient(n=n)
        out = m.loss(p)
        assert set(out.terms) == {"loss"} and torch.isfinite(out.total)
        assert m.embed(p).shape == (8,)
        t = m.class_tokens(p)
        assert all(v.shape == (1, 8) for v in t.values())
        pred = m.predict(p)
        assert (pred["logits"].shape == (4,)) if task == "subtype" else (pred["risk"].dim() == 0)


def test_token_transformer_returns_the_class_token_and_unpadded_tokens():
    torch.manual_seed(0)
    enc = TokenTransformer(8, 2, landmarks=4, dropout=0.0, ppeg=True).eval()
    cls, tokens = enc(torch.randn(1, 7, 8))
    assert cls.shape == (1, 8) and tokens.shape == (1, 7, 8)
    genes = TokenTransformer(8, 2, landmarks=5, dropout=0.0, ppeg=False)
    assert genes.ppeg is None and genes(torch.randn(1, 4, 8))[1].shape == (1, 4, 8)


def test_gene_tokens_follow_the_cohort_sets_or_chunks():
    assert _build().inputs.tokenizer.n_pathways == 4
    m = _build(token_sets=["TUMOR_*", "TME_*"])
    assert m.inputs.tokenizer.n_pathways == 3
    assert m.gene_encoder.layer1.attn.num_landmarks == 4               # min(dim/2, P + 1): exact attention
    chunked = _build(info=_info(pathways=[], names=[], n_genes=250))
    assert chunked.inputs.tokenizer.n_pathways == 3                   # contiguous chunks of 100 genes


def test_token_pathways_globs_and_errors():
    info = _info()
    assert [p.tolist() for p in token_pathways(info, None)] == [p.tolist() for p in SETS]
    picked = token_pathways(info, ["TUMOR_*", "TME_*"])
    assert [p.tolist() for p in picked] == [SETS[0].tolist(), SETS[1].tolist(), SETS[2].tolist()]   # cohort order
    assert [p.tolist() for p in token_pathways(info, ["TME_*"])] == [SETS[1].tolist()]
    with pytest.raises(ConfigError, match="matches no gene set"):
        token_pathways(info, ["NOPE_*"])
    with pytest.raises(ConfigError, match="list of gene-set name globs"):
        token_pathways(info, "TUMOR_*")
    empty = _info(pathways=[SETS[0], np.zeros(0, np.int64)], names=["TUMOR_A", "TME_EMPTY"])
    with pytest.raises(ConfigError):
        token_pathways(empty, ["TME_*"])


def test_mcat_token_sets():
    torch.manual_seed(0)
    assert _build(name="mcat").inputs.tokenizer.n_pathways == 4
    m = _build(name="mcat", token_sets=["TUMOR_*", "TME_*"]).eval()
    assert m.inputs.tokenizer.n_pathways == 3
    assert m.coattention(_patient(n=5)).shape == (1, 3, 5)
    assert m.predict(_patient())["logits"].shape == (4,)


def test_missing_modality_flags_are_honoured():
    torch.manual_seed(0)
    m = _build().eval()
    base = m.predict(_patient(1))["logits"]
    a = m.predict(_patient(1, has_wsi=torch.tensor(False)))["logits"]
    b = m.predict(_patient(1, has_wsi=torch.tensor(False), bag=torch.randn(4, D) * 50))["logits"]
    assert torch.equal(a, b) and not torch.allclose(a, base)
    a = m.predict(_patient(1, has_omics=torch.tensor(False)))["logits"]
    b = m.predict(_patient(1, has_omics=torch.tensor(False), omics=torch.randn(G) * 50))["logits"]
    assert torch.equal(a, b) and not torch.allclose(a, base)


def test_translation_crosses_modalities():
    torch.manual_seed(0)
    m = _build().eval()
    p = _patient(2)
    t = m.class_tokens(p)
    other_omics = m.class_tokens(dict(p, omics=torch.randn(G) * 3))
    other_bag = m.class_tokens(dict(p, bag=torch.randn(7, D) * 3))
    # the encoders read one modality each; the decoders read the other one through the cross-attention
    assert torch.equal(t["enc_p"], other_omics["enc_p"]) and not torch.allclose(t["dec_p"], other_omics["dec_p"])
    assert torch.equal(t["enc_g"], other_bag["enc_g"]) and not torch.allclose(t["dec_g"], other_bag["dec_g"])


@pytest.mark.parametrize("task", ["subtype", "survival"])
def test_gradients_reach_both_modalities(task):
    torch.manual_seed(0)
    m = _build(task)
    m.loss(_patient(3)).total.backward()
    for part in (m.inputs.patch_proj, m.inputs.tokenizer, m.path_encoder, m.gene_encoder, m.p_in_g, m.g_in_p,
                 m.path_decoder, m.gene_decoder):
        assert any(q.grad is not None and q.grad.any() for q in part.parameters()), type(part).__name__


def test_alignment_option():
    torch.manual_seed(0)
    m = _build(align=True).eval()
    p = _patient(4)
    out = m.loss(p)
    assert set(out.terms) == {"loss", "align"}
    t = m.class_tokens(p)
    expected = F.l1_loss(t["dec_p"], t["enc_p"]) + F.l1_loss(t["dec_g"], t["enc_g"])
    assert torch.allclose(out.terms["align"], expected, atol=1e-6)
    plain = _build().eval()
    plain.load_state_dict(m.state_dict())
    assert torch.allclose(plain.loss(p).terms["loss"], out.terms["loss"], atol=1e-6)
