"""ABMIL + SNN fusion baselines of the disentangled paper (abmil_snn_cat / _add / _bilinear)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.encoders.mil import GatedAttention, NonGatedAttention
from modaltune.methods.base import CohortInfo
from modaltune.methods.baselines.pathomic import GatedBilinearFusion, PaperABMIL
from modaltune.methods.disentangled.snn import MaxNet
from modaltune.registry import METHODS

D, G = 6, 20
NAMES = ("abmil_snn_cat", "abmil_snn_add", "abmil_snn_bilinear")
TINY = {"dim": 8, "attn_dim": 4, "snn_hidden": [8, 8], "snn_dropout": 0.0}
TINY_BILINEAR = {"mmhid": 6, "fusion_dim": 3, "fusion_dropout": 0.0}


def _info(n_classes: int = 3) -> CohortInfo:
    return CohortInfo(feature_dim=D, n_genes=G, pathways=[np.arange(0, 10), np.arange(10, 20)],
                      pathway_names=["TUMOR_A", "TME_B"], n_classes=n_classes, n_bins=4, sites=["GBMLGG"])


def _build(name: str, task: str = "subtype", **model):
    cls = METHODS.get(name)
    cfg = copy.deepcopy(cls.default_config())
    cfg["model"].update(TINY)
    if name.endswith("bilinear"):
        cfg["model"].update(TINY_BILINEAR)
    cfg["model"].update(task=task, **model)
    return cls(cfg, _info())


def _patient(seed: int = 0, n: int = 7, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    p = {"bag": torch.randn(n, D, generator=g), "omics": torch.randn(G, generator=g),
         "has_wsi": torch.tensor(True), "has_omics": torch.tensor(True), "site": "GBMLGG",
         "subtype": torch.tensor(1), "survival_bin": torch.tensor(2), "event": torch.tensor(1.0),
         "has_survival": torch.tensor(True)}
    p.update(kw)
    return p


def test_registration_and_declaration():
    for name in NAMES:
        cls = METHODS.get(name)
        assert cls.registry_name == name and cls.family == "Multi-modal" and cls.display_name
        decl = cls.declare(cls.default_config())
        assert decl.inputs == frozenset({"bag", "omics"}) and decl.evaluation == "predict"
        assert cls.task_runs == ("subtype", "survival")
        m = cls.default_config()["model"]
        assert m["dim"] == 128 and m["attn_dim"] == 128 and m["snn_hidden"] == [64, 48, 32]
    assert METHODS.get("abmil_snn_bilinear").default_config()["model"]["mmhid"] == 128


@pytest.mark.parametrize("name", NAMES)
def test_shapes_both_tasks(name):
    torch.manual_seed(0)
    width = {"abmil_snn_cat": 16, "abmil_snn_add": 8, "abmil_snn_bilinear": 6}[name]
    for task in ("subtype", "survival"):
        m = _build(name, task).eval()
        p = _patient()
        out = m.loss(p)
        assert set(out.terms) == {"loss"} and torch.isfinite(out.total) and out.logs["counted"] == 1.0
        assert m.represent(p).shape == (1, width) and m.embed(p).shape == (width,)
        pred = m.predict(p)
        if task == "subtype":
            assert pred["logits"].shape == (3,) and pred["risk"] is None
        else:
            assert pred["logits"] is None and pred["risk"].dim() == 0


def test_branches_are_the_papers_abmil_and_the_framework_snn():
    m = _build("abmil_snn_cat")
    assert isinstance(m.wsi.attention, NonGatedAttention) and isinstance(m.omics.net, MaxNet)
    assert m.wsi.attention.V[0].in_features == D        # scores the raw features
    assert m.wsi.proj.in_features == D and m.wsi.proj.out_features == 8


def test_paper_abmil_pools_raw_features_then_projects():
    torch.manual_seed(1)
    enc = PaperABMIL(D, dim=5, attn_dim=4).eval()
    bag = torch.randn(9, D)
    lin1, lin2 = enc.attention.V[0], enc.attention.w
    scores = torch.tanh(bag @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias   # [9,1]
    a = torch.softmax(scores[:, 0], dim=0)
    expected = (a[:, None] * bag).sum(0) @ enc.proj.weight.T + enc.proj.bias
    got = enc({"bag": bag})
    assert torch.allclose(got[0], expected, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_missing_modality_flags_are_honoured(name):
    torch.manual_seed(0)
    m = _build(name).eval()
    base = m.predict(_patient(0))["logits"]
    # without the slide flag the bag is never read: any bag gives the same output
    a = m.predict(_patient(0, has_wsi=torch.tensor(False)))["logits"]
    b = m.predict(_patient(0, has_wsi=torch.tensor(False), bag=torch.randn(3, D) * 50))["logits"]
    assert torch.equal(a, b) and not torch.allclose(a, base)
    # likewise for omics
    a = m.predict(_patient(0, has_omics=torch.tensor(False)))["logits"]
    b = m.predict(_patient(0, has_omics=torch.tensor(False), omics=torch.randn(G) * 50))["logits"]
    assert torch.equal(a, b) and not torch.allclose(a, base)
    # an empty bag counts as no slide
    empty = m.predict(_patient(0, bag=torch.zeros(0, D)))["logits"]
    assert torch.equal(empty, m.predict(_patient(0, has_wsi=torch.tensor(False)))["logits"])


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_both_branches(name):
    torch.manual_seed(0)
    for task in ("subtype", "survival"):
        m = _build(name, task)
        m.loss(_patient(3)).total.backward()
        assert _grad_norm(m.wsi.attention) > 0 and _grad_norm(m.wsi.proj) > 0, task
        assert _grad_norm(m.omics.net) > 0, task
        assert m.wsi.missing.grad is None and m.omics.missing.grad is None   # real inputs: stand-ins unused


def _layer_norm(v: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    return (v - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def test_bilinear_fusion_matches_a_hand_computation():
    torch.manual_seed(2)
    fus = GatedBilinearFusion(dim1=3, dim2=2, fusion_dim=2, mmhid=4, dropout=0.0).eval()
    x1, x2 = torch.randn(1, 3), torch.randn(1, 2)

    def lin(layer, v):
        return v @ layer.weight.T + layer.bias

    def bil(layer, a, b):   # z_k = a^T W_k b + c_k
        return torch.stack([a[0] @ layer.weight[k] @ b[0] for k in range(layer.out_features)])[None] + layer.bias

    h1 = torch.relu(lin(fus.h1[0], x1)) * torch.sigmoid(bil(fus.z1, x1, x2))
    h2 = torch.relu(lin(fus.h2[0], x2)) * torch.sigmoid(bil(fus.z2, x1, x2))
    o1 = torch.relu(lin(fus.o1[0], h1))
    o2 = torch.relu(lin(fus.o2[0], h2))
    o1, o2 = torch.cat([o1, torch.ones(1, 1)], 1), torch.cat([o2, torch.ones(1, 1)], 1)
    kron = torch.stack([o1[0, i] * o2[0, j] for i in range(3) for j in range(3)])[None]   # 9 = (2+1)(2+1)
    e1 = torch.relu(_layer_norm(lin(fus.encoder1[0], kron), fus.encoder1[1]))
    e2 = torch.relu(_layer_norm(lin(fus.encoder2[0], e1), fus.encoder2[1]))
    assert torch.allclose(fus(x1, x2), e2, atol=1e-6)
    # the appended 1s keep the unimodal terms: the last entries of the product are o1 and o2 themselves
    assert torch.allclose(kron[0, 2::3], o1[0]) and torch.allclose(kron[0, 6:9], o2[0])


def test_bilinear_gates_can_be_switched_off():
    torch.manual_seed(3)
    fus = GatedBilinearFusion(3, 2, fusion_dim=2, mmhid=4, dropout=0.0, gate1=False, gate2=False, norm="none").eval()
    x1, x2 = torch.randn(1, 3), torch.randn(1, 2)
    with torch.no_grad():
        fus.z1.weight.normal_()
        fus.z2.weight.normal_()
    y = fus(x1, x2)
    with torch.no_grad():   # gates off: the bilinear weights are not used
        fus.z1.weight.mul_(100)
        fus.z2.weight.mul_(100)
    assert torch.equal(y, fus(x1, x2))
    assert not any(isinstance(mod, torch.nn.LayerNorm) for mod in fus.modules())


def test_abmil_gated_switch_in_the_wsi_baseline():
    cfg = copy.deepcopy(METHODS.get("abmil").default_config())
    assert cfg["model"]["gated"] is True
    cfg["model"].update(dim=8, attn_dim=4, dropout=0.0)
    info = _info()
    assert isinstance(METHODS.get("abmil")(cfg, info).wsi.encoder.attention, GatedAttention)
    cfg["model"]["gated"] = False
    m = METHODS.get("abmil")(cfg, info)
    assert isinstance(m.wsi.encoder.attention, NonGatedAttention)
    assert m.predict(_patient())["logits"].shape == (3,)
    # late fusion reads the same nested setting
    late = copy.deepcopy(METHODS.get("abmil_cat").default_config())
    assert late["model"]["wsi"]["gated"] is True
