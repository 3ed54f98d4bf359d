"""The student never reads genomics (spec (j) 6): predict/embed without omics and unchanged under omics
noise, no SNN in its state, a silent teacher at inference, and a teacher that gets no gradient and stays in
eval mode during distillation."""

from __future__ import annotations

import pytest
import torch
from dmsf_helpers import batch_of, build

from modaltune.errors import ConfigError
from modaltune.methods.disentangled.common import EXPERTS


@pytest.fixture(scope="module")
def models(two_mag_cohort, two_mag_split):
    teacher, _, _ = build("dmsf_teacher", two_mag_cohort, two_mag_split)
    student, cfg, _ = build("dmsf_student", two_mag_cohort, two_mag_split)
    distill, _, _ = build("dmsf_distill", two_mag_cohort, two_mag_split, frozen={"teacher": teacher})
    return teacher, student, distill, cfg


def test_student_declares_no_omics(models):
    _, student, distill, _ = models
    assert "omics" not in type(student).requires
    assert "omics" in type(distill).requires                 # the teacher's input during training only


@pytest.mark.parametrize("which", ["student", "distill"])
def test_inference_ignores_omics(models, two_mag_cohort, two_mag_split, which):
    _, student, distill, cfg = models
    method = student if which == "student" else distill
    method.eval()
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 3, omics=False)
    assert "omics" not in batch
    with torch.no_grad():
        logits, emb = method.predict(batch)["logits"], method.embed(batch)
        noisy = {**batch, "omics": torch.randn(3, two_mag_cohort.n_genes) * 100}
        assert torch.equal(method.predict(noisy)["logits"], logits)
        assert torch.equal(method.embed(noisy), emb)
    assert logits.shape == (3, 2) and emb.shape == (3, 4 * 16)


def test_state_dicts_hold_no_gene_encoder(models):
    teacher, student, distill, _ = models
    assert any("snn" in k for k in teacher.state_dict())
    for method in (student, distill):
        kept = [k for k in method.state_dict() if not k.startswith("frozen_runs.")]
        assert not any("snn" in k or "genes_" in k for k in kept)
    trainable = lambda m: sorted(n for n, p in m.named_parameters() if p.requires_grad)  # noqa: E731
    assert trainable(distill) == trainable(student)
    assert sorted(k for k in distill.state_dict() if not k.startswith("frozen_runs.")) == sorted(student.state_dict())


def test_teacher_is_silent_at_inference(models, two_mag_cohort, two_mag_split):
    teacher, _, distill, cfg = models
    fired = []
    handles = [m.register_forward_hook(lambda *a: fired.append(1)) for m in teacher.modules()]
    try:
        distill.eval()
        batch = batch_of(two_mag_cohort, two_mag_split, cfg, 2)
        with torch.no_grad():
            distill.predict(batch)
            distill.embed(batch)
        assert fired == []
        distill.train()
        distill.loss(batch)                                    # the hooks work: the teacher runs in the loss
        assert fired
    finally:
        for h in handles:
            h.remove()


def test_teacher_gets_no_gradient_and_stays_in_eval_mode(models, two_mag_cohort, two_mag_split):
    teacher, _, distill, cfg = models
    distill.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    out = distill.loss(batch_of(two_mag_cohort, two_mag_split, cfg, 4))
    assert set(out.terms) == {"task", "kd", "feat"}
    sum(out.terms.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for e in EXPERTS for p in distill.experts[e].classifier.parameters())
    assert not any(m.training for m in teacher.modules())


def test_distillation_needs_its_teacher_only_for_training(two_mag_cohort, two_mag_split):
    alone, cfg, _ = build("dmsf_distill", two_mag_cohort, two_mag_split)   # as an evaluated run is rebuilt
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 2)
    alone.eval()
    with torch.no_grad():
        assert set(alone.loss(batch).terms) == {"task"}
    alone.train()
    with pytest.raises(ConfigError, match="teacher_run"):
        alone.loss(batch)


def test_a_teacher_on_another_grid_or_width_is_refused(models, two_mag_cohort, two_mag_split):
    teacher, _, _, _ = models
    with pytest.raises(ConfigError, match="data.grid"):
        build("dmsf_distill", two_mag_cohort, two_mag_split, "data.grid=10", frozen={"teacher": teacher})
    with pytest.raises(ConfigError, match="model.dim"):
        build("dmsf_distill", two_mag_cohort, two_mag_split, "model.dim=8", frozen={"teacher": teacher})
