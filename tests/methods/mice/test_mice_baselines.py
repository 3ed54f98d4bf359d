"""The baselines of MICE's tables (spec mice.md (e)): registration, declaration, protocol, shapes, and
what distinguishes each (learned missing token, decision-level mean, per-cancer head, shared router)."""

from __future__ import annotations

import pytest
import torch

from modaltune.config import resolve_config
from modaltune.registry import METHODS

BASELINES = {"mice_report": ({"report_embedding"}, "Report"), "mice_path": ({"bag"}, "Path"),
             "mice_gene": ({"omics"}, "Gene"), "mice_early": ({"bag", "omics", "report_embedding"}, "Early"),
             "mice_late": ({"bag", "omics", "report_embedding"}, "Late"),
             "mice_multihead": ({"bag", "omics", "report_embedding"}, "MulHead"),
             "mice_moe": ({"bag", "omics", "report_embedding"}, "MoE")}
PAN_CANCER = {"mice_multihead", "mice_moe"}


def _batch(patient):
    return [patient(0, "A"), patient(1, "B", omics=False), patient(2, "C", wsi=False, report=False),
            patient(3, "A", wsi=False, omics=False, report=False)]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_registration_declaration_and_protocol(name):
    cls = METHODS.get(name)
    cfg = resolve_config(name)
    decl = cls.declare(cfg)
    inputs, label = BASELINES[name]
    assert decl.inputs == frozenset(inputs) and decl.batching == "list" and decl.evaluation == "predict"
    assert decl.tasks == ("survival",) and decl.scalers == frozenset(inputs) - {"omics"}
    assert cls.label() == label and cls.family == "MICE" and cls.loss_terms == ("survival",)
    stages = [(s.name, s.scope, s.init_from) for s in cls.stages(cfg)]
    if name in PAN_CANCER:         # MICE's protocol without L_cl
        assert stages == [("pretrain", "pooled", None), ("finetune", "per_site", "pretrain")]
        assert cfg["stages"]["pretrain"]["train"]["loss_weights"] == {"survival": 2.0}
        assert cfg["stages"]["finetune"]["train"]["epochs"] == 20
    else:                          # per cohort, from scratch
        assert stages == [("main", "run", None)] and cfg["stages"] is None
        assert cfg["train"]["epochs"] == 20 and cfg["train"]["batch_size"] == 1
    assert cfg["data"]["n_bins"] == 5 and cfg["train"]["schedule"] == "constant"


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_forward_loss_and_predict_shapes(name, build, patient):
    m = build(name).train()
    batch = _batch(patient)
    out = m.loss(batch)
    assert set(out.terms) == {"survival"} and torch.isfinite(out.terms["survival"])
    out.total.backward()
    assert any(p.grad is not None and bool(p.grad.any()) for p in m.parameters())
    m.eval()
    pred = m.predict(batch)
    assert pred["logits"] is None and pred["risk"].shape == (4,) and torch.isfinite(pred["risk"]).all()
    emb = m.embed(batch)
    assert emb.shape[0] == 4 and emb.dim() == 2
    torch.testing.assert_close(m.predict(batch[1:2])["risk"], pred["risk"][1:2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,modality", [("mice_report", "report"), ("mice_path", "pathology"),
                                           ("mice_gene", "genomics")])
def test_unimodal_patients_lacking_the_modality_get_the_learned_missing_token(name, modality, build, patient):
    m = build(name)
    assert list(m.encoders.encoders) == [modality]
    out = m(_batch(patient))
    have = {"report": [True, True, False, False], "pathology": [True, True, False, False],
            "genomics": [True, False, True, False]}[modality]
    assert out["real"].tolist() == have
    for i, real in enumerate(have):
        assert torch.equal(out["h"][i], m.missing) != real


def test_late_fusion_is_the_mean_of_the_available_modalities_logits(build, patient):
    m = build("mice_late")
    out = m(_batch(patient))
    per = out["per_modality"]
    torch.testing.assert_close(out["logits"][0], per[0].mean(0))                  # all three
    torch.testing.assert_close(out["logits"][1], per[1, [0, 2]].mean(0))          # no genomics
    torch.testing.assert_close(out["logits"][2], per[2, 1])                       # genomics only
    torch.testing.assert_close(out["logits"][3], per[3].mean(0))                  # none: synthesised ones


def test_multihead_uses_each_patients_own_cancer_head(build, patient):
    m = build("mice_multihead")
    batch = _batch(patient)
    before = m.predict(batch)["risk"]
    with torch.no_grad():
        m.heads[m.vocabulary.index("B")].bias.add_(3.0)
    after = m.predict(batch)["risk"]
    changed = (after - before).abs() > 1e-6
    assert changed.tolist() == [False, True, False, False]


def test_moe_routes_with_one_shared_router_and_has_no_cancer_specific_experts(build, patient):
    m = build("mice_moe")
    out = m(_batch(patient))
    assert ((out["weights"] != 0).sum(1) == m.mcfg["keep_k"]).all()
    names = {n.split(".")[0] for n, _ in m.named_parameters()}
    assert names == {"encoders", "synthesis", "z0", "pre_expert", "router", "experts", "norm", "fusion", "head"}
