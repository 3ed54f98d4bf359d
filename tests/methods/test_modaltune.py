"""Tests of the Modal Adapter and the registered ModalTune method (tiny dims, stand-in encoder)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from modaltune.errors import ConfigError, InputError
from modaltune.methods.base import CohortInfo
from modaltune.methods.modaltune import ModalTune, split_layers
from modaltune.registry import METHODS

IN_DIM, DIM, DEPTH, TEXT_DIM, N_GENES = 8, 32, 6, 12, 24


class StandInEncoder(nn.Module):
    """Same interface as LongNetSlideEncoder: embed_tokens, layers, final_norm, forward."""

    def __init__(self, in_dim=IN_DIM, dim=DIM, depth=DEPTH, heads=4, dropout=0.3):
        super().__init__()
        self.dim = dim
        self.patch_embed = nn.Linear(in_dim, dim)
        self.pos = nn.Linear(2, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
            for _ in range(depth)])
        self.final_norm = nn.LayerNorm(dim)

    def embed_tokens(self, x, coords):
        h = self.patch_embed(x) + self.pos(coords / 1000.0)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), h], dim=1)

    def forward(self, x, coords):
        h = self.embed_tokens(x, coords)
        for layer in self.layers:
            h = layer(h)
        return self.final_norm(h)[:, 0]


def _info(**kw):
    rng = np.random.default_rng(0)
    pathways = [np.sort(rng.choice(N_GENES, s, replace=False)) for s in (4, 6, 3, 8, 5)]
    base = dict(feature_dim=IN_DIM, n_genes=N_GENES, pathways=pathways, n_classes=2, n_bins=4,
                text_dim=TEXT_DIM, task="multi")
    base.update(kw)
    return CohortInfo(**base)


def _cfg(**model):
    m = {"n_tokens": 4, "omics": {"dim": 16, "depth": 2}, "adapter_heads": 2, "adapter_blocks": 3,
         "d_final": 16}
    m.update(model)
    return {"model": m}


def _build(info=None, seed=0, **model):
    torch.manual_seed(seed)
    enc = StandInEncoder()
    return ModalTune(_cfg(**model), info or _info(), slide_encoder=enc, encoder_dim=DIM)


def _batch(seed=0, n=10, has_omics=True):
    g = torch.Generator().manual_seed(seed)
    return {"case_id": f"case{seed}", "bag": torch.randn(n, IN_DIM, generator=g),
            "coords": torch.randint(0, 5000, (n, 2), generator=g).float(),
            "omics": torch.randn(N_GENES, generator=g), "has_omics": torch.tensor(has_omics),
            "text_emb": torch.randn(3, TEXT_DIM, generator=g), "subtype": torch.tensor(1),
            "survival_bin": torch.tensor(2), "event": torch.tensor(1.0),
            "has_survival": torch.tensor(True)}


def test_registered_and_default_config():
    assert METHODS.get("modaltune") is ModalTune
    cfg = ModalTune.default_config()
    m = cfg["model"]
    for key in ("encoder_size", "encoder", "checkpoint", "adapter_blocks", "n_tokens", "d_final",
                "tasks", "single_modal", "text_embedding", "single_task_prompt", "projector"):
        assert key in m
    assert m["adapter_blocks"] == 3 and m["n_tokens"] == 64 and m["d_final"] == 256
    assert m["projector"] == "frozen_random" and m["tasks"] == ["general", "survival", "diagnosis"]
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["epochs"] == 30
    decl = ModalTune.declare(cfg)
    assert decl.evaluation == "probe" and decl.inputs == {"bag", "omics", "text_targets"}
    ablation = ModalTune.declare({"model": {"text_embedding": False}})
    assert ablation.evaluation == "predict" and "text_targets" not in ablation.inputs
    assert ModalTune.family == "ModalTune"


def test_split_layers():
    assert split_layers(12, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert split_layers(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert sum(map(len, split_layers(7, 3))) == 7
    with pytest.raises(ConfigError):
        split_layers(2, 3)


def test_zero_gamma_keeps_frozen_encoder_output():
    model = _build().eval()
    b = _batch()
    with torch.no_grad():
        feats = model.adapter.forward_features(b["bag"], b["coords"], model.modal_tokens(b),
                                               model.task_ids)
        own = model.adapter.encoder(b["bag"][None], b["coords"][None])
    assert feats["cls"].shape == (3, DIM)
    for t in range(3):
        torch.testing.assert_close(feats["cls"][t], own[0], rtol=0, atol=1e-6)


def test_frozen_encoder_untouched_and_first_block_gets_gradients():
    model = _build()
    model.train()
    assert not model.adapter.encoder.training            # kept in eval mode
    enc_before = copy.deepcopy(model.adapter.encoder.state_dict())
    assert all(not p.requires_grad for p in model.adapter.encoder.parameters())
    assert all(not p.requires_grad for p in model.projector.parameters())
    trainable = list(model.trainable_parameters())
    enc_ids = {id(p) for p in model.adapter.encoder.parameters()}
    assert not any(id(p) in enc_ids for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    for step in range(3):
        opt.zero_grad()
        loss, logs = model.loss(_batch(step))
        loss.backward()
        if step == 0:
            blk0 = model.adapter.blocks[0]
            # gamma of the first injector gets its gradient only through the frozen layers
            assert blk0.injector.gamma.grad is not None and blk0.injector.gamma.grad.abs().sum() > 0
            assert blk0.extractor.attn.q.weight.grad.abs().sum() > 0
            assert model.omics_encoder.tokenizer.weight1.grad.abs().sum() > 0
        assert all(p.grad is None for p in model.adapter.encoder.parameters())
        opt.step()
    # after steps gamma is non-zero, so the first block's injector attention now gets gradients
    opt.zero_grad()
    model.loss(_batch(7)).total.backward()
    assert model.adapter.blocks[0].injector.attn.q.weight.grad.abs().sum() > 0
    for k, v in model.adapter.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), k


def test_batched_tasks_equal_separate_passes():
    model = _build().eval()
    with torch.no_grad():   # non-zero gammas so that image tokens differ per task
        for blk in model.adapter.blocks:
            blk.injector.gamma.normal_(0, 0.5)
    b = _batch(3)
    with torch.no_grad():
        together = model(b)
        separate = torch.cat([model(b, torch.tensor([t])) for t in range(3)])
    assert together.shape == (3, 16)
    torch.testing.assert_close(together, separate, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_embed_predict_and_missing_modalities():
    model = _build()
    model.train()
    b = _batch(1)
    e = model.embed(b)
    assert e.shape == (16,) and not e.requires_grad
    assert model.training and not model.adapter.encoder.training     # mode restored
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(e, model(b)[0])
    assert model.predict(b) == {"logits": None, "risk": None}
    # no omics -> learned fallback tokens; no WSI -> CLS only
    nb = _batch(2, has_omics=False)
    fallback = model.learned_tokens.unsqueeze(0)
    fallback = model.modal_norm(fallback) if model.modal_norm is not None else fallback
    torch.testing.assert_close(model.modal_tokens(nb), fallback)
    empty = _batch(4, n=0)
    z = model.embed(empty)
    assert torch.isfinite(z).all()
    model.train()
    loss, _ = model.loss(empty)
    loss.backward()
    # missing text targets -> InputError
    bad = dict(b)
    bad.pop("text_emb")
    with pytest.raises(InputError):
        model.loss(bad)


@pytest.mark.parametrize("switch", [
    {"single_modal": True},
    {"text_embedding": False},
    {"single_task_prompt": True},
    {"projector": "none"},
    {"projector": "trainable"},
    {"projector": "model_side"},
    {"tasks": ["general", "diagnosis"]},
])
def test_ablation_switches_build_and_train(switch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _build(**switch)
    model.train()
    loss, logs = model.loss(_batch(5))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in model.trainable_parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    emb = model.embed(_batch(6))
    if switch.get("projector") == "none":
        assert emb.shape == (TEXT_DIM,)
    else:
        assert emb.shape == (16,)
    pred = model.predict(_batch(6))
    if switch.get("text_embedding") is False:
        assert pred["logits"].shape == (2,) and pred["risk"].shape == ()
    else:
        assert pred == {"logits": None, "risk": None}
    if switch.get("single_modal"):
        assert model.omics_encoder is None
    if switch.get("single_task_prompt"):
        assert model.task_names == ["general"] and model.adapter.task_embed is None
    if switch.get("projector") == "trainable":
        assert all(p.requires_grad for p in model.projector.parameters())
    if switch.get("projector") == "model_side":
        assert model.projector is None and model.model_projector.weight.grad is not None


def test_frozen_projector_is_seeded():
    a, b = _build(seed=1), _build(seed=2)
    for pa, pb in zip(a.projector.parameters(), b.projector.parameters()):
        assert torch.equal(pa, pb)
    c = _build(seed=1, projector_seed=5)
    assert not torch.equal(a.projector.net[0].weight, c.projector.net[0].weight)


def test_bad_config_rejected():
    with pytest.raises(ConfigError):
        _build(projector="sideways")
    with pytest.raises(ConfigError):
        _build(tasks=["general", "staging"])
    with pytest.raises(ConfigError):
        _build(adapter_heads=3)    # 32 * 0.25 = 8 not divisible by 3


def _train_on(patients, steps=60):
    # the KL objective alone (the survival head beside it has its own tests)
    model = _build(drop_path=0.0, omics={"dim": 16, "depth": 2, "dropout": 0.0}, survival_head=False)

    def mean_loss():
        model.eval()
        with torch.no_grad():
            return float(np.mean([model.loss(p).total.item() for p in patients]))

    before = mean_loss()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        opt.zero_grad()
        model.loss(patients[step % len(patients)]).total.backward()
        opt.step()
    return before, mean_loss()


@pytest.mark.slow
def test_tiny_model_learns_planted_signal():
    """Text targets depend on a planted omics/bag signal; 60 steps cut the KL loss."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(2, 3, TEXT_DIM, generator=g) * 3.0        # class x task targets
    planted, control = [], []
    shared = _batch(99, n=8)
    for i in range(6):
        c = i % 2
        b = _batch(100 + i, n=8)
        b["text_emb"] = protos[c] + 0.05 * torch.randn(3, TEXT_DIM, generator=g)
        # control: identical inputs for every patient, so only the average target can be fitted
        control.append(dict(b, omics=shared["omics"], bag=shared["bag"], coords=shared["coords"]))
        b["omics"] = b["omics"] * 0.3 + (2.0 if c else -2.0)
        b["bag"] = b["bag"] * 0.3 + (1.0 if c else -1.0)
        planted.append(b)
    before, after = _train_on(planted)
    _, after_control = _train_on(control)
    assert after < 0.5 * before, (before, after)
    # the drop needs the planted signal: fitting the average target is not enough
    assert after < 0.5 * after_control, (after, after_control)


def test_with_real_longnet_encoder():
    """Integration with encoders/slide/longnet.py (random init, small preset, tiny overrides)."""
    longnet = pytest.importorskip("modaltune.encoders.slide.longnet")
    torch.manual_seed(0)
    cfg = _cfg(encoder_size="small", encoder={"dim": 32, "depth": 3, "heads": 4, "ffn_dim": 64},
               checkpoint=None)
    with pytest.warns(Warning, match="randomly initialised"):
        model = ModalTune(cfg, _info())
    assert isinstance(model.adapter.encoder, longnet.LongNetSlideEncoder)
    assert model.adapter.groups == [[0], [1], [2]]
    model.eval()
    b = _batch(0, n=12)
    with torch.no_grad():
        feats = model.adapter.forward_features(b["bag"], b["coords"], model.modal_tokens(b), model.task_ids)
        own = model.adapter.encoder(b["bag"][None], b["coords"][None])
    for t in range(3):
        torch.testing.assert_close(feats["cls"][t], own[0], rtol=0, atol=1e-5)
    model.train()
    assert not model.adapter.encoder.training
    loss, _ = model.loss(b)
    loss.backward()
    assert model.adapter.blocks[0].injector.gamma.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.adapter.encoder.parameters())
