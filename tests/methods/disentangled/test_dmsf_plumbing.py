"""Teacher/student plumbing (spec (j) 7): shapes of spec (b) at grid 50, the dual-expert rule, KD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dmsf_helpers import batch_of, build

from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.methods.disentangled.common import DMSFBase, choose_10x, dmsf_model_defaults
from modaltune.methods.disentangled.losses import kd_kl_loss
from modaltune.methods.disentangled.student import StudentExpert
from modaltune.methods.disentangled.teacher import TeacherExpert
from modaltune.methods.losses import survival_risk


def _paper_dca():
    base = DMSFBase.__new__(DMSFBase)
    base.mcfg, base.dim = dmsf_model_defaults(), 128
    return base.make_dca


def test_teacher_shapes_at_grid_50():
    torch.manual_seed(0)
    expert = TeacherExpert(32, 4, _paper_dca(), 128, "fused", 8, 0.1).eval()
    genes = {"tumor": torch.rand(2, 128), "tme": torch.rand(2, 128)}
    with torch.no_grad():
        out = expert(torch.randn(2, 2500, 32), genes)
    assert out["attention"]["tumor"].shape == (2, 8, 2500, 144)
    assert out["features"].shape == (2, 256) and out["logits"].shape == (2, 4)
    assert out["parts"]["tme"].shape == (2, 128)
    assert torch.allclose(out["attention"]["tme"].sum(-1), torch.ones(2, 8, 2500), atol=1e-5)


def test_student_shapes_at_grid_50():
    torch.manual_seed(0)
    expert = StudentExpert(32, 3, _paper_dca(), 128).eval()
    with torch.no_grad():
        out = expert(torch.randn(1, 2500, 32))
    assert out["features"].shape == (1, 256) and out["logits"].shape == (1, 3)
    assert set(out["assignment"].unique().tolist()) == {0, 1}


def test_choose_10x_per_row_ties_go_to_20x():
    l20 = torch.tensor([[2.0, 0.0], [0.0, 0.1], [1.0, 0.0], [0.3, 0.3]])
    l10 = torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])     # row 2: same confidence
    assert choose_10x(l20, l10).tolist() == [False, True, False, False]


def _info(task="subtype", sites=("A",), counts=(3,)):
    offsets, total = {}, 0
    for s, c in zip(sites, counts):
        offsets[s], total = total, total + c
    return CohortInfo(feature_dim=8, feature_dim_secondary=8, n_classes=max(2, total) if len(sites) > 1 else counts[0],
                      class_counts=dict(zip(sites, counts)), class_offsets=offsets, sites=list(sites), task=task)


def _base(info, **model):
    return DMSFBase({"model": {"task": info.task, **model}}, info)


def test_dual_expert_predictions():
    method = _base(_info())
    l20 = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    l10 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    out = method.combine({"m20": l20, "m10": l10}, {"site": ["A", "A"]})["logits"]
    assert torch.equal(out[0], l20[0]) and torch.equal(out[1], l10[1])
    mean = _base(_info(), combine="mean").combine({"m20": l20, "m10": l10}, {"site": ["A", "A"]})["logits"]
    assert torch.allclose(mean.exp(), (l20.softmax(-1) + l10.softmax(-1)) / 2)
    # pooled head: each row gets its own site's classes
    pooled = _base(_info(sites=("A", "B"), counts=(2, 3)))
    l = torch.arange(10.0).reshape(2, 5)
    rows = pooled.combine({"m20": l, "m10": l}, {"site": ["B", "A"]})["logits"]
    assert [r.tolist() for r in rows] == [[2.0, 3.0, 4.0], [5.0, 6.0]]


def test_dual_expert_survival():
    method = _base(_info(task="survival"))
    l20, l10 = torch.tensor([[3.0, -3.0, 0, 0]]), torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    risk = method.combine({"m20": l20, "m10": l10}, {"site": ["A"]})["risk"]
    assert torch.allclose(risk, survival_risk(l20))                          # 20x is the more confident
    mean = _base(_info(task="survival"), combine="mean").combine({"m20": l20, "m10": l10}, {"site": ["A"]})
    assert torch.allclose(mean["risk"], (survival_risk(l20) + survival_risk(l10)) / 2)


def test_balanced_class_weights_from_training_counts():
    info = _info(sites=("A", "B"), counts=(2, 3))
    info.train_class_counts = {"A": [6, 2], "B": [1, 0, 4]}
    assert _base(info).class_weights.tolist() == [1.0, 3.0, 4.0, 1.0, 1.0]
    assert _base(info, class_weights="none").class_weights.tolist() == [1.0] * 5


def test_weighted_task_loss(two_mag_cohort, two_mag_split):
    teacher, cfg, info = build("dmsf_teacher", two_mag_cohort, two_mag_split)
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 6)
    logits = torch.randn(6, info.n_classes)
    y = batch["subtype"]
    w = teacher.class_weights
    keep = y >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep], y[keep], weight=w)
    assert float(teacher.task_loss(logits, batch)) == pytest.approx(float(expected), rel=1e-6)
    assert w.max() > 1                                     # the synthetic classes are imbalanced


def test_kd_is_t2_kl_batchmean():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    sm = lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)  # noqa: E731
    ps, pt = sm(s / 2), sm(t / 2)
    manual = 4 * (pt * (np.log(pt) - np.log(ps))).sum() / 4
    assert float(kd_kl_loss(torch.tensor(s), torch.tensor(t), 2.0)) == pytest.approx(manual, rel=1e-5)
    assert float(kd_kl_loss(torch.tensor(t), torch.tensor(t), 2.0)) == pytest.approx(0.0, abs=1e-7)


def test_options_are_checked(two_mag_cohort, two_mag_split):
    teacher, _, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split, "model.selection_query=subspace")
    assert teacher.experts["m20"].fuse is None
    for bad in ("model.selection_query=both", "model.combine=vote", "model.cgc_projection=reflect",
                "model.dev_form=eq7", "model.class_weights=inverse", "model.task=grade"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            build("dmsf_teacher", two_mag_cohort, two_mag_split, bad)


def test_withheld_genes_cut_the_gene_path_for_chosen_patients_in_training_only(two_mag_cohort, two_mag_split):
    teacher, cfg, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split, "model.withhold_genes=0.5",
                            "model.dropout=0")
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, n=8)
    shifted = {**batch, "omics": batch["omics"] + 3.0}
    teacher.train()
    torch.manual_seed(1)
    a = teacher.forward_experts(batch)["m20"]["logits"]
    torch.manual_seed(1)
    b = teacher.forward_experts(shifted)["m20"]["logits"]
    same = (a - b).abs().amax(-1) < 1e-6
    assert 0 < int(same.sum()) < 8                      # withheld patients ignore their expression, others do not
    withheld = [i for i in range(8) if bool(same[i])]
    torch.manual_seed(1)
    teacher.zero_grad()
    teacher.forward_experts(batch)["m20"]["logits"][withheld].sum().backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0 for p in teacher.snn.parameters())
    assert float(teacher.withheld["tumor"].grad.abs().max()) > 0
    teacher.eval()
    with torch.no_grad():
        c, d = (teacher.forward_experts(x)["m20"]["logits"] for x in (batch, shifted))
    assert bool(((c - d).abs().amax(-1) > 1e-6).all())  # evaluation always reads the genes
    plain, _, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split)
    assert not any("withheld" in k for k in plain.state_dict())   # the paper's teacher is unchanged
    with pytest.raises(ConfigError, match="withhold_genes"):
        build("dmsf_teacher", two_mag_cohort, two_mag_split, "model.withhold_genes=1")
