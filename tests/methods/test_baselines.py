"""Tests of the label-supervised baselines (WSI, Genomics, Multi-modal)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import modaltune.methods.baselines  # noqa: F401  (registers the baselines)
from modaltune.config import GLOBAL_DEFAULTS, deep_merge
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.methods.baselines.fusion import kronecker_fusion
from modaltune.registry import METHODS

D, G, N_PATCH = 8, 24, 12
PATHWAYS = [np.arange(0, 6), np.arange(6, 12), np.arange(12, 18), np.arange(18, 24)]

# Tiny sizes for every baseline (model overrides).
_WSI_TINY = {
    "abmil": {"dim": 16, "attn_dim": 8, "dropout": 0.0},
    "transmil": {"dim": 16, "heads": 2, "dropout": 0.0},
    "gigapath": {"slide_size": "small", "slide_kwargs": {"dim": 16, "depth": 1, "heads": 2, "ffn_dim": 32}},
}
_GENE_MIXER_TINY = {"dim": 16, "depth": 1, "n_tokens": 4, "out_dim": 16, "dropout": 0.0}
TINY: dict[str, dict] = {
    "abmil": _WSI_TINY["abmil"],
    "transmil": _WSI_TINY["transmil"],
    "gigapath_tuned": _WSI_TINY["gigapath"],
    "mlp": {"hidden": [16, 16], "dropout": 0.0},
    "snn": {"hidden": [16, 16], "dropout": 0.0},
    "smlp": {"units_per_pathway": 2, "hidden": [16], "dropout": 0.0},
    "gene_mixer": _GENE_MIXER_TINY,
    "mcat": {"dim": 16, "heads": 2, "layers": 1, "ff_dim": 16, "dropout": 0.0},
    "survpath": {"dim": 16, "dropout": 0.0, "omics_dropout": 0.0},
}
for _w, _p in (("abmil", "abmil"), ("transmil", "transmil"), ("gigapath", "gigapath")):
    for _f in ("cat", "kp"):
        TINY[f"{_p}_{_f}"] = {"wsi": _WSI_TINY[_w], "genomics": _GENE_MIXER_TINY, "hidden": 16,
                              "fusion_dim": 4, "dropout": 0.0}

FAMILIES = {
    "WSI": {"abmil", "transmil", "gigapath_tuned"},
    "Genomics": {"mlp", "snn", "smlp", "gene_mixer"},
    "Multi-modal": {"mcat", "survpath", "abmil_cat", "abmil_kp", "transmil_cat", "transmil_kp",
                    "gigapath_cat", "gigapath_kp"},
}
NAMES = sorted(TINY)


def _info(n_classes: int = 2) -> CohortInfo:
    return CohortInfo(feature_dim=D, n_genes=G, pathways=PATHWAYS, pathway_names=[f"p{i}" for i in range(4)],
                      n_classes=n_classes, n_bins=4, sites=["BRCA"], task="subtype")


def _build(name: str, task: str = "subtype", n_classes: int = 2):
    cls = METHODS.get(name)
    cfg = copy.deepcopy(cls.default_config())
    cfg["model"].update(copy.deepcopy(TINY[name]))
    cfg["model"]["task"] = task
    return cls(cfg, _info(n_classes))


def _patient(rng: np.random.Generator, y: int = 0, n: int = N_PATCH, **kw) -> dict:
    """One patient dict; class ``y`` shifts a few patches (dims 0-3) and genes 0-5 upwards."""
    bag = rng.normal(size=(n, D)).astype(np.float32)
    omics = rng.normal(size=G).astype(np.float32)
    if y == 1:
        bag[: max(1, n // 3), :4] += 1.5
        omics[:6] += 1.0
    p = {
        "bag": torch.from_numpy(bag),
        "coords": torch.from_numpy(rng.integers(0, 20, size=(n, 2)).astype(np.float32) * 256),
        "omics": torch.from_numpy(omics),
        "has_wsi": torch.tensor(True), "has_omics": torch.tensor(True),
        "subtype": torch.tensor(y), "survival_bin": torch.tensor(0 if y else 3),
        "event": torch.tensor(1.0), "has_survival": torch.tensor(True),
        "survival_months": torch.tensor(5.0 if y else 50.0),
    }
    p.update(kw)
    return p


def test_every_baseline_is_registered_with_family_and_labels():
    for family, names in FAMILIES.items():
        for name in names:
            cls = METHODS.get(name)
            assert cls.family == family, name
            decl = cls.declare(cls.default_config())
            assert decl.evaluation == "predict" and "text_targets" not in decl.inputs
            assert cls.task_runs == ("subtype", "survival")
            cfg = cls.default_config()
            assert cfg["model"]["task"] == "subtype" and "epochs" in cfg["train"] and "lr" in cfg["train"]
            # train keys are known engine settings (strict merge raises on unknown keys)
            deep_merge(GLOBAL_DEFAULTS["train"], cfg["train"], strict=True)
    assert set(NAMES) == set().union(*FAMILIES.values())


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_both_tasks(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for task, n_classes in (("subtype", 3), ("survival", 2)):
        m = _build(name, task, n_classes).eval()
        p = _patient(rng, 1)
        loss, logs = m.loss(p)
        assert loss.dim() == 0 and torch.isfinite(loss) and logs["counted"] == 1.0
        loss.backward()
        emb = m.embed(p)
        assert emb.dim() == 1 and emb.numel() > 0
        pred = m.predict(p)
        if task == "subtype":
            assert pred["logits"].shape == (3,) and pred["risk"] is None
        else:
            assert pred["logits"] is None and pred["risk"].dim() == 0
            assert -4.0 <= pred["risk"].item() <= 0.0


@pytest.mark.parametrize("name", NAMES)
def test_missing_modality_uses_learned_embedding(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    m = _build(name).eval()
    no_wsi = _patient(rng, 0, bag=torch.zeros(0, D), coords=torch.zeros(0, 2), has_wsi=torch.tensor(False))
    no_omics = _patient(rng, 0, omics=torch.zeros(G), has_omics=torch.tensor(False))
    for p in (no_wsi, no_omics):
        loss, _ = m.loss(p)
        assert torch.isfinite(loss)
        assert torch.isfinite(m.embed(p)).all()


@pytest.mark.parametrize("name", ["abmil", "smlp", "survpath", "transmil_kp"])
def test_rare_and_unlabelled_patients_give_zero_loss_and_gradient(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    for task, kw in (("subtype", {"subtype": torch.tensor(-1)}),
                     ("survival", {"has_survival": torch.tensor(False)}),
                     ("survival", {"survival_bin": torch.tensor(-1)})):
        m = _build(name, task)
        loss, logs = m.loss(_patient(rng, 1, **kw))
        assert loss.item() == 0.0 and loss.requires_grad and logs["counted"] == 0.0
        loss.backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert all((g == 0).all() for g in grads)


def test_kronecker_fusion_size_and_terms():
    a, b = torch.randn(2, 5), torch.randn(2, 7)
    k = kronecker_fusion(a, b)
    assert k.shape == (2, (5 + 1) * (7 + 1))
    grid = k.reshape(2, 6, 8)
    assert torch.allclose(grid[:, :5, 7], a) and torch.allclose(grid[:, 5, :7], b)  # unimodal terms kept
    assert torch.allclose(grid[:, 5, 7], torch.ones(2))
    m = _build("abmil_kp")
    assert m.post[0].in_features == (4 + 1) * (4 + 1)
    assert _build("abmil_cat").post[0].in_features == 16 + 16


def test_unknown_task_is_a_config_error():
    cls = METHODS.get("mlp")
    cfg = cls.default_config()
    cfg["model"].update(TINY["mlp"], task="grade")
    with pytest.raises(ConfigError):
        cls(cfg, _info())


# ---------------------------------------------------------------- learning a planted signal
def _balanced_accuracy(y, pred) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def _c_index(time, event, risk) -> float:
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if time[j] > time[i]:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def _train(m, patients, epochs: int, lr: float = 1e-2, batch: int = 8):
    opt = torch.optim.Adam(m.trainable_parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(epochs):
        order = torch.randperm(len(patients), generator=g).tolist()
        for s in range(0, len(order), batch):
            loss = sum(m.loss(patients[i]).total for i in order[s:s + batch]) / batch
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval()


def _cohort(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    ys = [i % 2 for i in range(n)]
    return ys, [_patient(rng, y, n=8) for y in ys]


@pytest.mark.parametrize("name", NAMES)
def test_learns_planted_subtype_signal(name):
    torch.manual_seed(0)
    ys, patients = _cohort(3)
    m = _train(_build(name, "subtype"), patients, epochs=8, lr=1e-2)
    with torch.no_grad():
        pred = [int(m.predict(p)["logits"].argmax()) for p in patients]
    assert _balanced_accuracy(ys, pred) >= 0.75, name


@pytest.mark.parametrize("name", ["abmil", "transmil", "snn", "smlp", "gene_mixer", "mcat", "survpath", "abmil_kp"])
def test_learns_planted_survival_signal(name):
    torch.manual_seed(0)
    ys, patients = _cohort(4)
    m = _train(_build(name, "survival"), patients, epochs=8, lr=1e-2)
    with torch.no_grad():
        risk = [float(m.predict(p)["risk"]) for p in patients]
    time = [float(p["survival_months"]) for p in patients]  # ties within a class are not comparable
    assert _c_index(time, [1] * len(time), risk) >= 0.75, name
