"""Engine: run-directory files, epoch selection on validation only, resume, determinism.

Uses toy methods defined here (mean-pooled bag + omics -> MLP) on a tiny synthetic cohort.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback
from torch import nn
from torch.nn import functional as F

from modaltune.config import resolve_config
from modaltune.data.splits import make_holdout_split
from modaltune.errors import ConfigError, InputWarning
from modaltune.methods.base import Method
from modaltune.methods.losses import nll_survival_loss, survival_risk
from modaltune.registry import METHODS, TEXT_ENCODERS
from modaltune.runs.evaluate import embed_run, evaluate_ood, evaluate_run
from modaltune.training.engine import train_method
from modaltune.training.module import EpochSampler, lr_lambda

LABEL_NAME = "_test_engine_toy_labels"
TEXT_NAME = "_test_engine_toy_text"
ENCODER_NAME = "_test_engine_hash_text"
HIDDEN = 16


class _Toy(Method):
    requires = frozenset({"bag", "omics"})
    evaluation = "predict"
    tasks = ("subtype", "survival")

    @classmethod
    def default_config(cls):
        return {"model": {}, "train": {"epochs": 2, "warmup_epochs": 1, "lr": 1e-2}}

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.fd = info.feature_dim
        self.enc = nn.Sequential(nn.Linear(info.feature_dim + info.n_genes, HIDDEN), nn.ReLU(), nn.Dropout(0.1))
        self.cls = nn.Linear(HIDDEN, info.n_classes)
        self.haz = nn.Linear(HIDDEN, info.n_bins)
        self.text = nn.Linear(HIDDEN, 3 * info.text_dim)
        self.frozen = nn.Linear(3, 3)          # stands in for a frozen pretrained encoder
        self.frozen.requires_grad_(False)

    def rep(self, b):
        bag = b["bag"].float()
        pooled = bag.mean(0) if bag.shape[0] else torch.zeros(self.fd, device=bag.device)
        return self.enc(torch.cat([pooled, b["omics"].float()]))

    def loss(self, b):
        h = self.rep(b)
        loss = h.sum() * 0.0
        if int(b["subtype"]) >= 0:
            loss = loss + F.cross_entropy(self.cls(h)[None], b["subtype"].reshape(1))
        if bool(b["has_survival"]) and int(b["survival_bin"]) >= 0:
            loss = loss + nll_survival_loss(self.haz(h), b["survival_bin"], b["event"])
        return loss, {"loss": float(loss.detach())}

    def embed(self, b):
        return self.rep(b)

    def predict(self, b):
        h = self.rep(b)
        return {"logits": self.cls(h), "risk": survival_risk(self.haz(h))}


class _ToyText(_Toy):
    requires = frozenset({"bag", "omics", "text_targets"})
    evaluation = "probe"

    def loss(self, b):
        z = self.text(self.rep(b)).reshape(3, -1)
        loss = F.mse_loss(z, b["text_emb"].float())
        return loss, {"mse": float(loss.detach())}

    def predict(self, b):
        return {"logits": None, "risk": None}


class _HashEncoder:
    """Deterministic toy text encoder: a seeded random vector per prompt."""

    def __init__(self, path=None, device=None):
        pass

    def encode(self, texts, batch_size=64):
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts]).astype(np.float32)


for _name, _cls in ((LABEL_NAME, _Toy), (TEXT_NAME, _ToyText)):
    if _name not in METHODS:
        METHODS.register(_name)(_cls)
if ENCODER_NAME not in TEXT_ENCODERS:
    TEXT_ENCODERS.register(ENCODER_NAME)(_HashEncoder)


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cohort(small_cohort):
    return small_cohort


@pytest.fixture(scope="module")
def split(cohort):
    return make_holdout_split(cohort.manifest, seed=0)


def _cfg(method=LABEL_NAME, **over):
    sets = ["train.progress_bar=false", "data.bag_cap=8", f"text.encoder={ENCODER_NAME}", "seed=0"]
    sets += [f"{k}={v}" for k, v in over.items()]
    return resolve_config(method, overrides=sets)


def _train(cfg, cohort, split, run_dir, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_method(cfg, cohort, split, run_dir, **kw)


@pytest.fixture(scope="module")
def label_run(cohort, split, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "labels"
    result = _train(_cfg(**{"train.keep_training_state": "true"}), cohort, split, run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate_run(run_dir, cohort=cohort)
    return run_dir, result, metrics


# ----------------------------------------------------------------------------------------------
# tests


def test_schedule_and_sampler():
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-9)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(2)
    assert sorted(a) == list(range(10)) and a != list(s)
    s.set_epoch(1)
    assert list(s) == a


def test_run_directory(label_run, cohort, split):
    run_dir, result, metrics = label_run
    for name in ("config.yaml", "split.csv", "fitted_state.json", "cohort_info.json", "history.csv", "best.ckpt",
                 "run.json", "metrics.json", "predictions.csv", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name
    assert not list((run_dir / "checkpoints").glob("epoch=*"))   # kept only with train.keep_epoch_weights
    hist = pd.read_csv(run_dir / "history.csv")
    assert list(hist["epoch"]) == [0, 1]
    assert {"train_loss", "val_loss", "val_balanced_accuracy", "val_c_index", "lr"} <= set(hist.columns)
    assert np.isfinite(hist["train_loss"]).all() and np.isfinite(hist["val_loss"]).all()
    assert result["select_metric"] == "val_balanced_accuracy"
    assert result["best_epoch"] in (0, 1)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["seed"] == 0 and run["epochs_completed"] == 2 and "torch_version" in run
    # fitted state on training patients only
    state = json.loads((run_dir / "fitted_state.json").read_text())
    assert sorted(state["train_ids"]) == sorted(split["train"])
    sp = pd.read_csv(run_dir / "split.csv")
    assert set(sp.loc[sp.split == "test", "case_id"]) == set(split["test"])
    # checkpoints keep the trainable part, not the frozen parameters
    best = torch.load(run_dir / "best.ckpt", weights_only=True)
    assert "enc.0.weight" in best["state_dict"] and "frozen.weight" not in best["state_dict"]
    assert best["epoch"] == result["best_epoch"]
    last = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)
    assert not any("frozen" in k for k in last["state_dict"])
    # metrics per site + overall
    assert {"BRCA", "NSCLC", "overall"} <= set(metrics)
    for site in ("BRCA", "NSCLC"):
        m = metrics[site]
        assert {"balanced_accuracy", "c_index", "ipcw_c_index", "n", "n_events"} <= set(m)
        assert 0.0 <= m["balanced_accuracy"] <= 1.0
        assert m["n"] == sum(cohort.manifest.loc[c, "site"] == site for c in split["test"])
    assert metrics["overall"]["balanced_accuracy"] == pytest.approx(
        np.mean([metrics[s]["balanced_accuracy"] for s in ("BRCA", "NSCLC")]))
    preds = pd.read_csv(run_dir / "predictions.csv")
    assert set(preds.case_id) == set(split["test"]) and (preds.split == "test").all()
    assert {"case_id", "site", "split", "risk", "pred_class", "subtype", "survival_months", "event"} <= set(preds)
    assert any((run_dir / "figures").glob("km_*.png"))
    assert json.loads((run_dir / "metrics.json").read_text())["BRCA"]["n"] == metrics["BRCA"]["n"]


def test_selection_ignores_test_labels(label_run, cohort, split, tmp_path):
    """Shuffling the test patients' labels and survival changes nothing before evaluation."""
    run_dir, result, _ = label_run
    man = cohort.manifest.copy()
    test = list(split["test"])
    rng = np.random.default_rng(1)
    for col in ("subtype_index", "survival_months", "event"):
        man.loc[test, col] = rng.permutation(man.loc[test, col].to_numpy())
    shuffled = copy.copy(cohort)
    shuffled.manifest = man
    res2 = _train(_cfg(), shuffled, split, tmp_path / "shuffled")
    h1 = pd.read_csv(run_dir / "history.csv")
    h2 = pd.read_csv(tmp_path / "shuffled" / "history.csv")
    assert res2["best_epoch"] == result["best_epoch"]
    cols = ["train_loss", "val_loss", "val_balanced_accuracy", "val_c_index", "best_epoch"]
    pd.testing.assert_frame_equal(h1[cols], h2[cols])
    # same seed -> identical evaluation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_same = evaluate_run(tmp_path / "shuffled", cohort=cohort)
    m1 = json.loads((run_dir / "metrics.json").read_text())
    for site in ("BRCA", "NSCLC"):
        for k in ("balanced_accuracy", "c_index", "n"):
            assert m_same[site][k] == pytest.approx(m1[site][k], nan_ok=True)


class _StopAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


class _CountEpochs(Callback):
    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)


def test_bad_probe_setting_fails_before_training(cohort, split, tmp_path):
    counter = _CountEpochs()
    with pytest.raises(ConfigError, match="logreg_class_weight"):
        _train(_cfg(**{"eval.logreg_class_weight": "inverse"}), cohort, split, tmp_path / "bad",
               callbacks=[counter])
    assert counter.epochs == [] and not (tmp_path / "bad" / "history.csv").exists()


def test_resume_does_not_redo_epochs(label_run, cohort, split, tmp_path):
    run_dir, result, _ = label_run
    rd = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(_cfg(), cohort, split, rd, callbacks=[_StopAtEpoch(1)])
    assert len(pd.read_csv(rd / "history.csv")) == 1
    assert (rd / "checkpoints/last.ckpt").exists()
    counter = _CountEpochs()
    res = _train(_cfg(), cohort, split, rd, resume=True, callbacks=[counter])
    assert counter.epochs == [1]
    h_full = pd.read_csv(run_dir / "history.csv")
    h_res = pd.read_csv(rd / "history.csv")
    assert list(h_res.epoch) == [0, 1]
    cols = ["train_loss", "val_loss", "val_balanced_accuracy", "val_c_index", "lr"]
    np.testing.assert_allclose(h_res[cols].to_numpy(float), h_full[cols].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert res["best_epoch"] == result["best_epoch"]
    # resuming a finished run trains nothing more; by default its training state is gone once it finished
    assert not (rd / "checkpoints/last.ckpt").exists()
    counter2 = _CountEpochs()
    again = _train(_cfg(), cohort, split, rd, resume=True, callbacks=[counter2])
    assert counter2.epochs == [] and again["best_epoch"] == res["best_epoch"] and len(again["history"]) == 2
    assert torch.equal(torch.load(rd / "best.ckpt", weights_only=True)["state_dict"]["enc.0.weight"],
                       torch.load(run_dir / "best.ckpt", weights_only=True)["state_dict"]["enc.0.weight"])
    with pytest.warns(InputWarning, match="cannot continue to 3"):
        train_method(_cfg(**{"train.epochs": 3}), cohort, split, rd, resume=True)


def test_training_state_is_saved_without_lightning_guessing_weights_only(cohort, split, tmp_path, caplog):
    """last.ckpt asks for the full training state explicitly: Lightning's "`weights_only` was not set,
    defaulting to `False`" line (which reads like an unsafe load) is never logged."""
    caplog.set_level(logging.INFO, logger="lightning.pytorch.trainer.connectors.checkpoint_connector")
    _train(_cfg(**{"train.epochs": 1, "train.max_steps_per_epoch": 2, "train.warmup_epochs": 0,
                   "train.keep_training_state": "true"}), cohort, split, tmp_path / "state")
    last = torch.load(tmp_path / "state" / "checkpoints/last.ckpt", weights_only=False)
    assert last["optimizer_states"]                       # the resume state is complete
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]


def test_text_method_probes_and_ood(cohort, split, tmp_path):
    rd = tmp_path / "text"
    cfg = _cfg(TEXT_NAME, **{"train.epochs": 1, "train.accumulate": 2, "train.max_steps_per_epoch": 10,
                             "train.tensorboard": "true", "train.warmup_epochs": 0, "train.keep_training_state": "true"})
    res = _train(cfg, cohort, split, rd)
    assert res["select_metric"] == "val_mean" and res["best_epoch"] == 0          # a probed multi-task embedding
    assert any((rd / "tensorboard").rglob("events.*")) and any((rd / "logs").rglob("metrics.csv"))
    last = torch.load(rd / "checkpoints/last.ckpt", weights_only=False)
    assert last["global_step"] == 5                      # 10 patients, 2 per optimiser step
    assert last["lr_schedulers"][0]["last_epoch"] == 5
    assert (cohort.root / "text_cache" / f"{ENCODER_NAME}.npz").exists()
    info = json.loads((rd / "cohort_info.json").read_text())
    assert info["text_dim"] == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate_run(rd, cohort=cohort)
        ids, emb = embed_run(rd, cohort=cohort, case_ids=split["test"][:3])
        ood = evaluate_ood(rd, cohort, ["NSCLC"], split)
    assert {"BRCA", "NSCLC", "overall"} <= set(metrics)
    assert all(math.isfinite(metrics[s]["c_index"]) for s in ("BRCA", "NSCLC"))
    npz = np.load(rd / "embeddings.npz")
    assert npz["embedding"].shape == (len(split["train"]) + len(split["test"]), HIDDEN)
    assert ids == list(split["test"][:3]) and emb.shape == (3, HIDDEN)
    assert set(ood) == {"NSCLC", "overall"} and (rd / "metrics_ood.json").exists()
    assert ood["NSCLC"]["n"] == sum(cohort.manifest.loc[c, "site"] == "NSCLC" for c in split["test"])
