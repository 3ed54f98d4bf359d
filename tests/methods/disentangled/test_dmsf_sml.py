"""The other task and models of the family: the survival teacher, the SML baseline (10x only), and every
method's loss under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from dmsf_helpers import batch_of, build, tiny_cfg

from modaltune.methods.disentangled.sml import batch_similarity_loss
from modaltune.runs.builders import declaration


def test_survival_teacher(two_mag_cohort, two_mag_split):
    teacher, cfg, info = build("dmsf_teacher", two_mag_cohort, two_mag_split, "model.task=survival")
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 4)
    out = teacher.loss(batch)
    assert teacher.experts["m20"].classifier.out_features == info.n_bins
    assert set(out.stats) == {f"cgc_{e}_{s}" for e in ("m20", "m10") for s in ("tumor", "tme")}
    known = (batch["has_survival"] & (batch["survival_bin"] >= 0)).sum()
    assert all(0 < float(v) <= float(known) for v in out.stats.values())      # sums of likelihoods in (0, 1]
    teacher.eval()
    with torch.no_grad():
        pred = teacher.predict(batch)
    assert pred["logits"] is None and pred["risk"].shape == (4,) and torch.isfinite(pred["risk"]).all()


def test_sml_reads_the_10x_bag_and_omics(two_mag_cohort, two_mag_split):
    cfg = tiny_cfg("sml")
    decl = declaration(cfg)
    assert decl.inputs == {"bag_secondary", "fixed_bags", "omics"} and decl.min_batch_size == 2
    assert declaration(tiny_cfg("sml", "model.batch_loss_weight=0")).min_batch_size == 1
    sml, cfg, info = build("sml", two_mag_cohort, two_mag_split)
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 3)
    assert "bag" not in batch and batch["bag_secondary"].shape == (3, 64, info.feature_dim_secondary)
    out = sml.loss(batch)
    assert set(out.terms) == {"task", "batch"} and set(out.stats) == {"cgc_m10_tumor", "cgc_m10_tme"}
    sum(out.terms.values()).backward()
    assert sml.snn["tumor"].net[0].weight.grad is not None
    sml.eval()
    with torch.no_grad():
        assert sml.predict(batch)["logits"].shape == (3, info.n_classes)
        assert sml.embed(batch).shape == (3, 32)


def test_batch_similarity_loss_is_zero_for_matching_similarities():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert float(batch_similarity_loss(g, g * 3)) == pytest.approx(0.0, abs=1e-7)
    assert float(batch_similarity_loss(g, torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))) > 0


@pytest.mark.parametrize("method", ["dmsf_teacher", "dmsf_student", "sml"])
def test_losses_under_bf16_autocast(two_mag_cohort, two_mag_split, method):
    model, cfg, _ = build(method, two_mag_cohort, two_mag_split)
    batch = batch_of(two_mag_cohort, two_mag_split, cfg, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(batch)
    total = sum(out.terms.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
