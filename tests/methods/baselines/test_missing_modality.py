"""LM / AE missing-modality baselines (abmil_lm, abmil_ae): imputation loss, omics never read at inference."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.methods.base import CohortInfo
from modaltune.registry import METHODS

D, G = 6, 20
NAMES = ("abmil_lm", "abmil_ae")
TINY = {"dim": 8, "attn_dim": 4, "snn_hidden": [8, 8], "snn_dropout": 0.0}


def _info() -> CohortInfo:
    return CohortInfo(feature_dim=D, n_genes=G, pathways=[np.arange(G)], pathway_names=["ALL"], n_classes=3,
                      n_bins=4, sites=["GBMLGG"])


def _build(name: str, task: str = "subtype", **model):
    cls = METHODS.get(name)
    cfg = copy.deepcopy(cls.default_config())
    cfg["model"].update(TINY)
    if name == "abmil_ae":
        cfg["model"]["ae_hidden"] = 4
    cfg["model"].update(task=task, **{"omics_head": False, **model})   # the spec's two terms unless asked
    return cls(cfg, _info())


def _patient(seed: int = 0, n: int = 7, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    p = {"bag": torch.randn(n, D, generator=g), "omics": torch.randn(G, generator=g),
         "has_wsi": torch.tensor(True), "has_omics": torch.tensor(True), "site": "GBMLGG",
         "subtype": torch.tensor(2), "survival_bin": torch.tensor(1), "event": torch.tensor(0.0),
         "has_survival": torch.tensor(True)}
    p.update(kw)
    return p


def test_registration_declaration_and_default_imputers():
    for name in NAMES:
        cls = METHODS.get(name)
        assert cls.registry_name == name and cls.display_name and cls.family == "Missing modality"
        assert cls.declare(cls.default_config()).inputs == frozenset({"bag", "omics"})   # omics: training only
        assert {"loss", "impute"} <= set(cls.loss_terms)
        assert cls.default_config()["model"]["omics_head"] is True     # the SNN learns a task-informed target
    info = CohortInfo(feature_dim=16, n_genes=G, n_classes=4, sites=["GBMLGG"])
    lm = METHODS.get("abmil_lm")(METHODS.get("abmil_lm").default_config(), info)
    assert isinstance(lm.predictor, torch.nn.Linear) and (lm.predictor.in_features, lm.predictor.out_features) == (
        128, 128)
    ae = METHODS.get("abmil_ae")(METHODS.get("abmil_ae").default_config(), info)
    kinds = [type(mod) for mod in ae.predictor]
    assert kinds == [torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Linear]
    assert (ae.predictor[0].in_features, ae.predictor[0].out_features, ae.predictor[2].out_features) == (128, 64, 128)
    assert lm.head.fc.in_features == 256 and ae.head.fc.in_features == 256   # head reads [h_wsi; h_hat]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_terms_both_tasks(name):
    torch.manual_seed(0)
    for task in ("subtype", "survival"):
        m = _build(name, task).eval()
        p = _patient()
        out = m.loss(p)
        assert set(out.terms) == {"loss", "impute"} and torch.isfinite(out.total)
        assert out.logs["counted"] == 1.0 and out.logs["impute"] >= 0
        assert m.embed(p).shape == (16,)
        pred = m.predict(p)
        assert (pred["logits"].shape == (3,)) if task == "subtype" else (pred["risk"].dim() == 0)


@pytest.mark.parametrize("name", NAMES)
def test_inference_never_reads_omics(name):
    torch.manual_seed(0)
    m = _build(name).eval()
    calls = []
    m.omics.register_forward_hook(lambda *a: calls.append(1))
    p = _patient(1)
    ref_pred, ref_emb = m.predict(p)["logits"], m.embed(p)
    no_key = {k: v for k, v in p.items() if k not in ("omics", "has_omics")}
    noise = dict(p, omics=torch.randn(G) * 100)
    absent = dict(p, has_omics=torch.tensor(False))
    for q in (no_key, noise, absent):
        assert torch.equal(m.predict(q)["logits"], ref_pred) and torch.equal(m.embed(q), ref_emb)
    s = _build(name, "survival").eval()
    assert torch.equal(s.predict(no_key)["risk"], s.predict(noise)["risk"])
    assert not calls   # the SNN never ran during predict/embed


@pytest.mark.parametrize("name", NAMES)
def test_impute_term_is_mse_to_the_stopped_snn_embedding(name):
    torch.manual_seed(0)
    m = _build(name).eval()
    p = _patient(2)
    out = m.loss(p)
    h_wsi = m.wsi(p)
    expected = F.mse_loss(m.predictor(h_wsi), m.omics(p))
    assert torch.allclose(out.terms["impute"], expected, atol=1e-6)
    out.terms["impute"].backward()
    assert all(q.grad is None or not q.grad.any() for q in m.omics.parameters())      # stop-gradient
    assert any(q.grad is not None and q.grad.any() for q in m.predictor.parameters())
    assert any(q.grad is not None and q.grad.any() for q in m.wsi.parameters())       # imputation shapes the WSI branch


@pytest.mark.parametrize("name", NAMES)
def test_impute_is_zero_without_a_pair(name):
    torch.manual_seed(0)
    m = _build(name)
    for q in (_patient(3, has_omics=torch.tensor(False)), _patient(3, has_wsi=torch.tensor(False))):
        out = m.loss(q)
        assert out.terms["impute"].item() == 0.0 and out.terms["impute"].requires_grad
        out.total.backward()
    # a patient without a slide is represented by the learned missing embedding
    a = m.eval().predict(_patient(4, has_wsi=torch.tensor(False)))["logits"]
    b = m.predict(_patient(4, has_wsi=torch.tensor(False), bag=torch.randn(2, D)))["logits"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_omics_head_option_trains_the_snn(name):
    torch.manual_seed(0)
    m = _build(name, omics_head=True)
    out = m.loss(_patient(5))
    assert set(out.terms) == {"loss", "impute", "omics"}
    out.terms["omics"].backward()
    assert any(q.grad is not None and q.grad.any() for q in m.omics.net.parameters())
    # inference is still omics-free
    m.eval()
    p = _patient(5)
    assert torch.equal(m.predict(p)["logits"], m.predict(dict(p, omics=torch.randn(G) * 9))["logits"])
