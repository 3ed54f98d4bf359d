"""ModalTune's survival head beside the KL (``model.survival_head``, term ``head_nll``; on by default, not in the paper)."""

from __future__ import annotations

import pytest
import torch

from modaltune.methods.base import CohortInfo
from modaltune.methods.modaltune.model import ModalTune

TINY = {"encoder_size": "small", "encoder": {"dim": 32, "depth": 1, "heads": 2, "ffn_dim": 64}, "adapter_blocks": 1,
        "adapter_heads": 2, "n_tokens": 4, "omics": {"dim": 16, "depth": 1}, "d_final": 16, "drop_path": 0.0}


def _info():
    return CohortInfo(feature_dim=8, n_genes=12, pathways=[list(range(6)), list(range(6, 12))], n_classes=2, n_bins=4,
                      text_dim=10)


def _batch(bin_=2, has=True):
    torch.manual_seed(0)
    return {"bag": torch.randn(20, 8), "coords": torch.rand(20, 2) * 1000, "omics": torch.randn(12),
            "has_omics": torch.tensor(True), "text_emb": torch.randn(3, 10), "survival_bin": torch.tensor(bin_),
            "event": torch.tensor(1.0), "has_survival": torch.tensor(has), "subtype": torch.tensor(0)}


@pytest.mark.parametrize("head", [False, True])
def test_terms_and_where_the_gradient_goes(head):
    torch.manual_seed(0)
    m = ModalTune({"model": {**TINY, "survival_head": head}}, _info())
    out = m.loss(_batch())
    assert set(out.terms) == ({"kl", "head_nll"} if head else {"kl"})
    if head:
        out.terms["head_nll"].backward()
        g = m.survival_head.weight.grad
        assert g is not None and g.abs().sum() > 0
        frozen = [p for n, p in m.named_parameters() if not p.requires_grad]
        assert frozen and all(p.grad is None for p in frozen)            # the frozen encoder stays frozen
    else:
        assert m.survival_head is None


def test_no_survival_no_nll_term():
    m = ModalTune({"model": {**TINY, "survival_head": True}}, _info())
    assert set(m.loss(_batch(has=False)).terms) == {"kl"}
    assert set(m.loss(_batch(bin_=-1)).terms) == {"kl"}
