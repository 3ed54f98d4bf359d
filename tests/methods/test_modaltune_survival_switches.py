"""ModalTune's two issue-15 switches (on by default, not in the paper): ``model.modal_norm``, a LayerNorm on the
modal tokens before the adapter (without it the transcriptomics tokens enter at ~1/200 of the image tokens'
scale, measured in ``benchmarks/README.md``), and ``model.survival_head``, a discrete-time NLL head beside the KL
(loss term ``head_nll``)."""

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


def _batch(has_omics=True, bin_=2, has_survival=True):
    g = torch.Generator().manual_seed(0)
    return {"bag": torch.randn(20, 8, generator=g), "coords": torch.rand(20, 2, generator=g) * 1000,
            "omics": torch.randn(12, generator=g) * 3, "has_omics": torch.tensor(has_omics),
            "text_emb": torch.randn(3, 10, generator=g), "survival_bin": torch.tensor(bin_),
            "event": torch.tensor(1.0), "has_survival": torch.tensor(has_survival), "subtype": torch.tensor(0)}


def _model(norm: bool = True, head: bool = True) -> ModalTune:
    torch.manual_seed(0)
    return ModalTune({"model": {**TINY, "modal_norm": norm, "survival_head": head}}, _info())


# ---------------------------------------------------------------- model.modal_norm
def test_on_by_default_off_leaves_the_tokens_unchanged():
    torch.manual_seed(0)
    assert ModalTune({"model": TINY}, _info()).modal_norm is not None
    off = _model(norm=False).eval()
    assert off.modal_norm is None and not any(k.startswith("modal_norm") for k in off.state_dict())
    assert torch.equal(off.modal_tokens(_batch()), off.omics_encoder(_batch()["omics"].reshape(1, -1)))


def test_tokens_are_layer_normed_whatever_their_source():
    m = _model(norm=True).eval()
    raw = m.omics_encoder(_batch()["omics"].reshape(1, -1))
    for b, before in ((_batch(True), raw), (_batch(False), m.learned_tokens.unsqueeze(0))):   # and the fallback
        tok = m.modal_tokens(b)
        mu = before.mean(-1, keepdim=True)
        ref = (before - mu) / torch.sqrt(before.var(-1, unbiased=False, keepdim=True) + m.modal_norm.eps)
        assert torch.allclose(tok, ref * m.modal_norm.weight + m.modal_norm.bias, atol=1e-5)
        assert torch.allclose(tok.mean(-1), torch.zeros(tok.shape[:2]), atol=1e-5)
    assert raw.norm(dim=-1).mean() < 0.5 * m.modal_tokens(_batch()).norm(dim=-1).mean()   # the scale it fixes


def test_gradient_reaches_the_norm_and_the_expression_encoder():
    m = _model(norm=True)
    m.loss(_batch()).terms["kl"].backward()
    assert m.modal_norm.weight.grad is not None and m.modal_norm.weight.grad.abs().sum() > 0
    enc = [p.grad for p in m.omics_encoder.parameters() if p.requires_grad]
    assert enc and all(g is not None for g in enc) and sum(float(g.abs().sum()) for g in enc) > 0


# ---------------------------------------------------------------- model.survival_head
@pytest.mark.parametrize("head", [False, True])
def test_terms_and_where_the_gradient_goes(head):
    m = _model(head=head)
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
    m = _model(head=True)
    assert set(m.loss(_batch(has_survival=False)).terms) == {"kl"}
    assert set(m.loss(_batch(bin_=-1)).terms) == {"kl"}
