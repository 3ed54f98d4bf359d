"""Class weights of the label-trained baselines (``model.class_weights``), as the disentangled
framework's official trainer applies to every model of its tables."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.registry import METHODS

D, G = 6, 12
TINY = {"snn": {"hidden": [8, 8], "dropout": 0.0}, "abmil_plain": {"dim": 8, "attn_dim": 4},
        "abmil_lm": {"dim": 8, "attn_dim": 4, "snn_hidden": [8, 8], "snn_dropout": 0.0, "omics_head": False}}


def _info(counts=None) -> CohortInfo:
    """Two sites in one pooled head: A has 2 classes, B 3."""
    return CohortInfo(feature_dim=D, n_genes=G, pathways=[np.arange(G)], pathway_names=["ALL"], n_classes=5,
                      class_counts={"A": 2, "B": 3}, class_offsets={"A": 0, "B": 2}, n_bins=4, sites=["A", "B"],
                      train_class_counts=counts if counts is not None else {"A": [6, 2], "B": [1, 0, 4]})


def _build(name="snn", info=None, **model):
    cls = METHODS.get(name)
    cfg = copy.deepcopy(cls.default_config())
    cfg["model"].update(TINY[name], **model)
    return cls(cfg, info or _info())


def _patient(y: int, site: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"bag": torch.randn(5, D, generator=g), "omics": torch.randn(G, generator=g), "site": site,
            "has_wsi": torch.tensor(True), "has_omics": torch.tensor(True), "subtype": torch.tensor(y)}


def test_balanced_weights_are_max_over_count_per_site_and_average_one_over_training_patients():
    w = _build(class_weights="balanced").class_weights
    raw = torch.tensor([1.0, 3.0, 4.0, 1.0, 1.0])          # A: 6/6, 6/2; B: 4/1, (no patient) 1, 4/4
    n = torch.tensor([6.0, 2.0, 1.0, 0.0, 4.0])
    assert torch.allclose(w, raw * n.sum() / (raw * n).sum())
    assert torch.isclose((w * n).sum() / n.sum(), torch.tensor(1.0))
    assert _build().class_weights.tolist() == [1.0] * 5           # default: none (unweighted, as before)
    survival = _build(class_weights="balanced", task="survival")
    assert survival.class_weights.tolist() == [1.0] * 5


@pytest.mark.parametrize("name", ["snn", "abmil_plain", "abmil_lm"])
def test_the_loss_is_the_weighted_cross_entropy_of_the_patients_own_site(name):
    torch.manual_seed(0)
    method = _build(name, class_weights="balanced")
    plain = _build(name)
    plain.load_state_dict(method.state_dict())
    for y, site, sl in ((1, "A", slice(0, 2)), (0, "B", slice(2, 5)), (2, "B", slice(2, 5))):
        p = _patient(y, site)
        with torch.no_grad():
            logits = method(p).reshape(-1)[sl]
            ce = F.cross_entropy(logits[None].float(), torch.tensor([y]))
            got = method.loss(p).terms["loss"]
            unweighted = plain.loss(p).terms["loss"]
        assert torch.isclose(unweighted, ce, atol=1e-6)
        assert torch.isclose(got, ce * method.class_weights[sl][y], atol=1e-6)


def test_weights_follow_the_training_counts_only_and_bad_values_are_refused():
    # the counts come from the training patients (``train_class_counts``): other parts cannot move them
    a = _build(info=_info({"A": [6, 2], "B": [1, 0, 4]}), class_weights="balanced").class_weights
    b = _build(info=_info({"A": [6, 2], "B": [1, 0, 4]}), class_weights="balanced").class_weights
    c = _build(info=_info({"A": [6, 3], "B": [1, 0, 4]}), class_weights="balanced").class_weights
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ConfigError, match="class_weights"):
        _build(class_weights="inverse")
    assert "class_weights" not in _build(class_weights="balanced").state_dict()   # not saved: refitted per run
