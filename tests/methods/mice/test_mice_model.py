"""The MICE method (spec mice.md (b), (j) 3, 5-7, 12): the size table at K = 30, invariance to the
order of the modality tokens, missing-modality synthesis and its gradients, gradient routing per
cancer type, determinism, the modality ablation, the declaration and the protocol."""

from __future__ import annotations

import pytest
import torch

from modaltune.config import resolve_config
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.registry import METHODS


def _zero(p: torch.nn.Parameter) -> bool:
    return p.grad is None or not bool(p.grad.any())


def _all_zero(module: torch.nn.Module) -> bool:
    return all(_zero(p) for p in module.parameters())


def _any_nonzero(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and bool(p.grad.any()) for p in module.parameters())


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_of_the_size_table_at_k30():
    cfg = resolve_config("mice")
    info = CohortInfo(feature_dim=1024, n_genes=20245, report_dim=768, n_bins=5, sites=[f"T{i}" for i in range(30)])
    with torch.device("meta"):           # shapes only: no 44 M parameters allocated
        m = METHODS.get("mice")(cfg, info)
    assert len(m.specialized) == len(m.routers) == len(m.group_norms) == 30
    assert {_count(e) for e in m.specialized} == {593_280}
    assert {_count(r) for r in m.routers} == {107_487}
    assert [e.rank for e in m.overlapping] == list(range(8, 121, 8))
    assert _count(m.overlapping[0]) == 77_072 and _count(m.overlapping[-1]) == 1_109_488
    assert _count(m.overlapping) == 8_899_200
    assert _count(m.pre_expert) == 1_182_976
    assert _count(m.consensual) == _count(m.fusion) == 593_280
    enc = m.encoders.encoders
    assert _count(enc["genomics"]) == 10_497_280
    assert _count(enc["report"]) == 525_056
    assert _count(enc["pathology"].feature) == 262_400
    assert _count(enc["pathology"].mamba_block) == 437_760
    assert m.synthesis.cancer_tokens.shape == (30, 256) and m.head.weight.shape == (5, 256)
    total = _count(m)
    assert total == 44_318_504 and round(total / 1e6, 1) == 44.3      # "trainable ~ 44.3 M"


def test_permuting_the_modality_tokens_leaves_the_logits_unchanged(build, patient):
    m = build("mice")
    batch = [patient(0, "A"), patient(1, "B", omics=False), patient(2, "C", wsi=False)]
    with torch.no_grad():
        out = m(batch)
        base = m.fuse(out["tokens"], out["k"])["logits"]
        torch.testing.assert_close(base, out["logits"], rtol=0, atol=0)
        for perm in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
            moved = m.fuse(out["tokens"][:, perm], out["k"])["logits"]
            assert (moved - base).abs().max() <= 1e-5
        other = m.fuse(out["tokens"].flip(0), out["k"])["logits"]    # other patients' tokens: other logits
        assert (other - base).abs().max() > 1e-4


def test_a_patient_without_genomics_gets_the_synthesised_token_exactly(build, patient):
    m = build("mice")
    batch = [patient(0, "A"), patient(1, "C", omics=False), patient(2, "B", omics=False)]
    out = m(batch)
    for i, site in ((1, "C"), (2, "B")):     # exact whoever else lacks genomics in the batch
        k = m.vocabulary.index(site)
        with torch.no_grad():
            expected = m.synthesis.hold["genomics"](m.synthesis.cancer_tokens[k:k + 1])[0]
        assert torch.equal(out["tokens"][i, 1], expected)
    assert out["real"].tolist() == [[True, True, True], [True, False, True], [True, False, True]]
    assert torch.isfinite(out["logits"]).all()
    # a present modality is the encoder's output, not the synthesis
    assert not torch.equal(out["tokens"][0, 1], m.synthesis.hold["genomics"](m.synthesis.cancer_tokens[:1])[0])


def test_gradients_of_a_patient_without_genomics(build, patient):
    m = build("mice")
    batch = [patient(0, "A"), patient(1, "C", omics=False)]
    out = m(batch)
    out["logits"][1].sum().backward()                 # patient 1's output only
    genomics = m.encoders.encoders["genomics"]
    assert all(p.grad is not None for p in genomics.parameters())   # it ran (for patient 0) ...
    assert _all_zero(genomics)                                      # ... but patient 1 sends it nothing
    k = m.vocabulary.index("C")
    assert m.synthesis.cancer_tokens.grad[k].abs().sum() > 0
    assert _any_nonzero(m.synthesis.hold["genomics"])


def test_synthesised_tokens_get_no_gradient_from_the_contrastive_loss(build, patient):
    m = build("mice")
    batch = [patient(0, "A"), patient(1, "C", omics=False), patient(2, "B", wsi=False, report=False)]
    m.loss(batch).terms["contrastive"].backward()
    assert _all_zero(m.synthesis)                     # E and every hold block
    assert _any_nonzero(m.encoders.encoders["pathology"]) and _any_nonzero(m.encoders.encoders["report"])
    assert _any_nonzero(m.encoders.encoders["genomics"])
    assert _all_zero(m.pre_expert) and _all_zero(m.head)        # tokens are taken before the pre-expert TF


def test_the_projection_head_carries_the_contrastive_term_and_only_it(build, patient):
    from modaltune.methods.losses import multiview_contrastive

    batch = [patient(0, "A"), patient(1, "C", omics=False), patient(2, "B")]
    assert build("mice").contrast_head is None                       # the code's setting: no head
    m = build("mice", contrastive_head="mlp", contrastive_head_dim=7)
    out = m(batch)
    real = out["real"]
    ref = multiview_contrastive(m.contrast_head(out["tokens"][real]), torch.nonzero(real)[:, 0], 0.1, "supcon_out")
    terms = m.loss(batch).terms
    torch.testing.assert_close(terms["contrastive"], ref)
    assert m.contrast_head[-1].out_features == 7
    terms["survival"].backward()
    assert _all_zero(m.contrast_head)                  # survival never trains the head
    m.zero_grad()
    m.loss(batch).terms["contrastive"].backward()
    assert _any_nonzero(m.contrast_head) and _any_nonzero(m.encoders.encoders["genomics"])
    assert _all_zero(m.head) and _all_zero(m.synthesis)
    with pytest.raises(ConfigError, match="contrastive_head"):
        build("mice", contrastive_head="linear")


def test_a_patient_with_no_modality_still_predicts_and_is_reported(build, patient):
    m = build("mice")
    batch = [patient(0, "A"), patient(1, "B", wsi=False, omics=False, report=False)]
    risk = m.predict(batch)["risk"]
    assert risk.shape == (2,) and torch.isfinite(risk).all()
    alone = m.predict([batch[1]])["risk"]
    torch.testing.assert_close(alone, risk[1:], rtol=0, atol=1e-6)
    info = m.introspect(batch)
    assert info["no_modality"].tolist() == [False, True]
    assert info["attention"][1] is None and float(info["attention"][0].sum()) == pytest.approx(1.0, abs=1e-5)
    out = m.loss(batch)
    assert out.logs["no_modality"] == 1.0 and torch.isfinite(out.total)


def test_a_batch_of_one_cancer_type_updates_only_that_types_parameters(build, patient):
    m = build("mice")
    k = m.vocabulary.index("B")
    batch = [patient(0, "B"), patient(1, "B", omics=False), patient(2, "B", report=False)]
    m.loss(batch).total.backward()
    for j in range(len(m.vocabulary)):
        touched = j == k
        for group in (m.specialized, m.routers, m.group_norms):
            assert _any_nonzero(group[j]) == touched, (type(group[j]).__name__, j)
        assert bool(m.synthesis.cancer_tokens.grad[j].any()) == touched
    assert _any_nonzero(m.consensual) and _any_nonzero(m.fusion) and _any_nonzero(m.pre_expert)


def test_overlapping_experts_with_weight_zero_get_zero_gradient(build, patient):
    m = build("mice")
    batch = [patient(0, "A")]
    with torch.no_grad():
        weights = m(batch)["weights"][0]
    assert int((weights != 0).sum()) == m.mcfg["keep_k"] < len(m.overlapping)
    m.loss(batch).total.backward()
    for i, expert in enumerate(m.overlapping):
        assert _any_nonzero(expert) == bool(weights[i] != 0), i


def test_same_seed_gives_identical_weights_losses_and_predictions(build, patient):
    batch = [patient(0, "A"), patient(1, "B", omics=False), patient(2, "C", wsi=False)]
    runs = []
    for _ in range(2):
        m = build("mice", seed=7).train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        torch.manual_seed(11)                       # dropout and router noise
        loss = m.loss(batch).total
        loss.backward()
        opt.step()
        m.eval()
        runs.append((float(loss), {k: v.clone() for k, v in m.state_dict().items()}, m.predict(batch)["risk"]))
    (l1, s1, r1), (l2, s2, r2) = runs
    assert l1 == l2 and torch.equal(r1, r2)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    other = build("mice", seed=8)
    assert not torch.equal(other.z0, s1["z0"])


def test_modality_ablation_drops_the_encoder_and_the_input(build, patient, tiny_cfg):
    cfg = tiny_cfg("mice", modalities=["report", "pathology"])
    decl = METHODS.get("mice").declare(cfg)
    assert decl.inputs == frozenset({"bag", "report_embedding"}) and decl.scalers == frozenset({"bag",
                                                                                              "report_embedding"})
    m = build("mice", modalities=["report", "pathology"])
    assert set(m.encoders.encoders) == {"pathology", "report"}
    batch = [patient(0, "A"), patient(1, "B")]       # both have omics: ignored, synthesised
    out = m(batch)
    assert out["real"][:, 1].tolist() == [False, False]
    k = m.vocabulary.index("A")
    with torch.no_grad():
        assert torch.equal(out["tokens"][0, 1], m.synthesis.hold["genomics"](m.synthesis.cancer_tokens[k:k + 1])[0])
    assert torch.isfinite(m.loss(batch).terms["contrastive"])
    with pytest.raises(ConfigError, match="modalities"):
        METHODS.get("mice").declare(tiny_cfg("mice", modalities=["slides"]))


def test_declaration_defaults_and_stages():
    cls = METHODS.get("mice")
    cfg = resolve_config("mice")
    decl = cls.declare(cfg)
    assert decl.inputs == frozenset({"bag", "omics", "report_embedding"})
    assert decl.batching == "list" and decl.evaluation == "predict" and decl.tasks == ("survival",)
    assert decl.scalers == frozenset({"bag", "report_embedding"})
    assert cls.loss_terms == ("survival", "contrastive") and cls.family == "MICE" and cls.family_order == 50
    stages = cls.stages(cfg)
    assert [(s.name, s.method, s.scope, s.init_from) for s in stages] == [
        ("pretrain", "mice", "pooled", None), ("finetune", "mice", "per_site", "pretrain")]
    assert cfg["data"]["n_bins"] == 5 and cfg["data"]["bag_cap"] is None
    tr = cfg["train"]
    assert (tr["lr"], tr["weight_decay"], tr["schedule"], tr["warmup_epochs"]) == (1e-4, 1e-5, "constant", 0)
    assert cfg["stages"]["pretrain"]["train"] == {"batch_size": 4, "drop_last": True, "epochs": 30,
                                                  "loss_weights": {"survival": 2.0, "contrastive": 1.0}}
    assert cfg["stages"]["finetune"]["train"] == {"batch_size": 1, "drop_last": None, "epochs": 20,
                                                  "select_initial": True,   # "no fine-tuning" competes
                                                  "select_scope": "pooled",  # the sites share one epoch
                                                  "loss_weights": {"survival": 1.0, "contrastive": 0.0}}
    m = cfg["model"]
    assert (m["keep_k"], m["temperature"], m["contrastive_form"], m["genomics_encoder"]) == (9, 0.1, "supcon_out",
                                                                                             "mlp")
    assert (m["renormalise"], m["softplus_noise"], m["surv_alpha"]) == (False, False, 0.0)


def test_snn_encoder_unknown_sites_and_site_map(build, patient, info):
    from modaltune.encoders.genomics import SNNEncoder

    assert isinstance(build("mice", genomics_encoder="snn").encoders.encoders["genomics"], SNNEncoder)
    m = build("mice")
    with pytest.raises(ConfigError, match="site_map"):
        m.predict([patient(0, "HANCOCK")])
    mapped = CohortInfo(**{**info.to_dict(), "site_map": {"HANCOCK": "B"}})
    m2 = build("mice", info_=mapped)
    m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.predict([patient(0, "HANCOCK")])["risk"], m.predict([patient(0, "B")])["risk"])


def test_bf16_autocast_forward_and_backward(build, patient):
    m = build("mice").train()
    batch = [patient(0, "A"), patient(1, "B", omics=False)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.loss(batch)
    out.total.backward()
    assert torch.isfinite(out.total) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_encoder_widths_must_end_at_dim_but_only_for_built_encoders(build):
    with pytest.raises(ConfigError, match="genomics_hidden"):
        build("mice", genomics_hidden=[16, 24])
    m = build("mice", genomics_hidden=[16, 24], modalities=["pathology", "report"])   # not built: not checked
    assert "genomics" not in m.encoders.encoders


def test_group_outputs_can_be_replaced_for_attribution(build, patient):
    from modaltune.errors import InputError

    m = build("mice")
    batch = [patient(0, "A"), patient(1, "B", omics=False)]
    with torch.no_grad():
        out = m(batch)
        same = m(batch, replace={"consensual": out["consensual"]})
        mean = m(batch, replace={"overlapping": out["overlapping"].mean(0)})
    torch.testing.assert_close(same["logits"], out["logits"], rtol=0, atol=0)
    assert torch.equal(mean["overlapping"][0], mean["overlapping"][1])
    assert not torch.allclose(mean["logits"], out["logits"])
    with pytest.raises(InputError, match="expert group"):
        m(batch, replace={"fusion": out["h"]})


def test_clean_router_variant_renormalises_the_kept_weights(build, patient):
    from modaltune.methods.mice.model import MICE

    batch = [patient(i, site) for i, site in enumerate("AABB")]
    default = build("mice").introspect(batch)["weights"]
    assert (default.sum(1) < 1 - 1e-4).all()      # the official router drops the mass of the 6 discarded
    over = MICE.variants["clean_router"][1]
    m = build("mice", **over["model"])
    assert all(r.renormalise and r.softplus_noise for r in m.routers)
    w = m.introspect(batch)["weights"]
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    assert ((w != 0).sum(1) == m.mcfg["keep_k"]).all()


def test_no_router_noise_variant_reaches_every_router(build):
    from modaltune.methods.mice.model import MICE

    over = MICE.variants["no_router_noise"][1]
    assert all(r.noise for r in build("mice").routers)          # the official noisy top-k by default
    assert not any(r.noise for r in build("mice", **over["model"]).routers)
    assert not build("mice_moe", **over["model"]).router.noise   # the MoE baseline reads the same key


def test_dropped_expert_group_is_a_zero_token_and_learns_nothing(build, patient):
    from modaltune.methods.mice.model import MICE

    batch = [patient(i, site) for i, site in enumerate("AABB")]
    over = MICE.variants["no_specialized"][1]
    m = build("mice", **over["model"]).eval()
    out = m(batch)
    assert torch.equal(out["specialized"], torch.zeros_like(out["specialized"]))
    torch.testing.assert_close(out["logits"], m(batch, replace={"specialized": torch.zeros(m.dim)})["logits"])
    with torch.no_grad():                        # the specialized experts no longer matter
        for p in m.specialized.parameters():
            p.add_(1.0)
    torch.testing.assert_close(m(batch)["logits"], out["logits"])
    m.train()
    m.loss(batch).terms["survival"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.specialized.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.consensual.parameters())
    assert build("mice").mcfg["drop_groups"] == []
    for bad in (["fusion"], ["overlapping", "specialized", "consensual"], ["consensual", "consensual"]):
        with pytest.raises(ConfigError, match="drop_groups"):
            build("mice", drop_groups=bad)
