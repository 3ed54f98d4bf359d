"""The method contract, end to end through the engine, with toy methods defined here.

Each piece of the contract has a test that fails without it: patient batches (a cross-patient loss at
batch size 4), named loss terms and their weights, parameter groups, epoch / step hooks, declared
report embeddings (cached once, identical across epochs), stacked batches, and site-aware pooled
subtype heads.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modaltune.config import resolve_config
from modaltune.data.patient import collate_stack
from modaltune.data.splits import make_holdout_split
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo, LossOutput, Method
from modaltune.methods.baselines.label_method import LabelMethod
from modaltune.registry import METHODS, TEXT_ENCODERS
from modaltune.runs.builders import cohort_info
from modaltune.runs.evaluate import evaluate_run
from modaltune.training.engine import train_method

BATCHED = "_test_contract_batched"
TERMS = "_test_contract_terms"
REPORTS = "_test_contract_reports"
POOLED = "_test_contract_pooled_head"
ENCODER = "_test_contract_report_encoder"
CALLS: dict[str, int] = {"encoded": 0}


class _Batched(Method):
    """Mean-pooled bag -> MLP; loss = a contrastive term comparing the patients of a batch."""

    requires = frozenset({"bag", "omics"})
    batching = "list"
    evaluation = "probe"
    min_batch_size = 2
    seen: list[int] = []
    hooks: list[tuple[str, int]] = []

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.enc = nn.Sequential(nn.Linear(info.feature_dim + info.n_genes, 16), nn.ReLU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, 1)

    def rep(self, p):
        bag = p["bag"].float()
        pooled = bag.mean(0) if bag.shape[0] else torch.zeros(bag.shape[1])
        return self.enc(torch.cat([pooled, p["omics"].float()]))

    def loss(self, batch):
        if self.training:
            type(self).seen.append(len(batch))
        z = F.normalize(torch.stack([self.rep(p) for p in batch]), dim=-1)
        logits = z @ z.t() / 0.5
        target = torch.arange(len(batch))
        terms = {"contrast": F.cross_entropy(logits - 1e4 * torch.eye(len(batch)), target.roll(1)),
                 "anchor": self.head(z).pow(2).mean()}
        return LossOutput(terms, {"batch": float(len(batch))})

    def embed(self, batch):
        return torch.stack([self.rep(p) for p in batch])

    def predict(self, batch):
        return {"logits": None, "risk": None}

    def on_train_epoch_start(self, epoch):
        type(self).hooks.append(("epoch", epoch))

    def on_after_optimizer_step(self, step):
        type(self).hooks.append(("step", step))


class _Reports(Method):
    """Uses only the cached report embedding; records what it receives."""

    requires = frozenset({"report_embedding"})
    evaluation = "predict"
    received: dict[str, list[np.ndarray]] = {}

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.lin = nn.Linear(max(1, info.report_dim), 1)

    def loss(self, p):
        if self.training:
            type(self).received.setdefault(p["case_id"], []).append(p["report_emb"].numpy().copy())
        out = self.lin(p["report_emb"].float())
        return LossOutput({"loss": out.pow(2).sum()})

    def embed(self, p):
        return self.lin.weight.reshape(-1)

    def predict(self, p):
        return {"logits": None, "risk": self.lin(p["report_emb"].float()).reshape(())}


class _PooledHead(LabelMethod):
    """A label head on the mean bag: the smallest pooled subtype model."""

    requires = frozenset({"bag"})

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.proj = nn.Linear(info.feature_dim, 8)
        self.head = self.make_head(8)

    def represent(self, p):
        bag = p["bag"].float()
        return self.proj(bag.mean(0, keepdim=True) if bag.shape[0] else torch.zeros(1, bag.shape[1]))


class _Encoder:
    """Toy report encoder counting its calls (CLS pooling asked for and accepted)."""

    def __init__(self, path=None, device=None, **kw):
        pass

    def encode(self, texts, batch_size=64, **kw):
        CALLS["encoded"] += len(texts)
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=6) for t in texts]
                        ).astype(np.float32)


for _n, _c in ((BATCHED, _Batched), (REPORTS, _Reports), (POOLED, _PooledHead)):
    if _n not in METHODS:
        METHODS.register(_n)(_c)
if ENCODER not in TEXT_ENCODERS:
    TEXT_ENCODERS.register(ENCODER)(_Encoder)


@pytest.fixture(scope="module")
def split(small_cohort):
    return make_holdout_split(small_cohort.manifest, seed=0)


def _cfg(method, *sets):
    return resolve_config(method, overrides=["train.progress_bar=false", "data.bag_cap=8", "seed=0",
                                             "train.epochs=2", "train.warmup_epochs=0", *sets])


def _train(cfg, cohort, split, run_dir, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_method(cfg, cohort, split, run_dir, **kw)


def test_batch_of_four_patients_on_a_cross_patient_loss(small_cohort, split, tmp_path):
    _Batched.seen.clear()
    _Batched.hooks.clear()
    res = _train(_cfg(BATCHED, "train.batch_size=4", "train.loss_weights={contrast: 1.0, anchor: 0.5}"),
                 small_cohort, split, tmp_path / "b")
    n_train = len(split["train"])
    # every training step saw a list of 4 patients; a last batch of 1 is dropped (the loss needs 2)
    per_epoch = [4] * (n_train // 4) + ([n_train % 4] if n_train % 4 >= 2 else [])
    assert _Batched.seen == per_epoch * 2
    assert [h for h in _Batched.hooks if h[0] == "epoch"] == [("epoch", 0), ("epoch", 1)]
    steps = [h[1] for h in _Batched.hooks if h[0] == "step"]
    assert steps == list(range(2 * len(per_epoch)))       # index of the step just taken
    hist = res["history"]
    assert len(hist) == 2 and np.isfinite(hist[-1]["train_loss"])


def test_loss_weights_scale_named_terms(small_cohort, split, tmp_path):
    """A zero weight removes a term: with anchor weight 0 the head, which only the anchor term reaches,
    gets no gradient at all (AdamW skips it), while with weight 1 it moves."""
    from modaltune.runs.builders import build_method

    torch.manual_seed(0)
    init = build_method(_cfg(BATCHED), cohort_info(small_cohort, _cfg(BATCHED), split["train"]))
    moved = {}
    for w in (0.0, 1.0):
        cfg = _cfg(BATCHED, "train.batch_size=4", "train.epochs=1", f"train.loss_weights={{contrast: 1.0, anchor: {w}}}")
        _train(cfg, small_cohort, split, tmp_path / f"w{w}")
        sd = torch.load(tmp_path / f"w{w}" / "best.ckpt", weights_only=True)["state_dict"]
        moved[w] = not torch.equal(sd["head.weight"], init.head.weight.detach())
        assert not torch.equal(sd["enc.0.weight"], init.enc[0].weight.detach())
    assert moved == {0.0: False, 1.0: True}


def test_param_groups_from_config(small_cohort, split):
    cfg = _cfg(BATCHED, "train.param_groups=[{match: 'head.*', lr: 0.5, weight_decay: 0.0}]")
    method = METHODS.get(BATCHED)(cfg, cohort_info(small_cohort, cfg, split["train"]))
    groups = {g["name"]: g for g in method.param_groups(cfg["train"])}
    assert set(groups) == {"default", "head.*"}
    assert groups["head.*"]["lr"] == 0.5 and groups["head.*"]["weight_decay"] == 0.0
    assert {id(p) for p in groups["head.*"]["params"]} == {id(p) for p in method.head.parameters()}
    assert groups["default"]["lr"] == cfg["train"]["lr"]
    n = sum(len(g["params"]) for g in groups.values())
    assert n == sum(1 for p in method.parameters() if p.requires_grad)


def test_min_batch_size_is_checked_before_training(small_cohort, split, tmp_path):
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        _train(_cfg(BATCHED, "train.batch_size=1"), small_cohort, split, tmp_path / "bad")
    assert not (tmp_path / "bad" / "history.csv").exists()


def test_report_embeddings_are_cached_once_and_identical_across_epochs(small_cohort, split, tmp_path):
    _Reports.received.clear()
    CALLS["encoded"] = 0
    cfg = _cfg(REPORTS, f"report.encoder={ENCODER}", "train.epochs=3")
    _train(cfg, small_cohort, split, tmp_path / "r")
    n_reports = len({small_cohort.report_text(c) for c in split["train"] + split["val"]
                     if small_cohort.manifest.at[c, "has_report"]})
    assert CALLS["encoded"] == n_reports                 # each report encoded once, not once per epoch
    with_report = [c for c in split["train"] if small_cohort.manifest.at[c, "has_report"]]
    without = [c for c in split["train"] if not small_cohort.manifest.at[c, "has_report"]]
    assert with_report
    for c in with_report:
        seen = _Reports.received[c]
        assert len(seen) == 3 and all(np.array_equal(seen[0], s) for s in seen[1:])
        expected = np.random.default_rng(zlib.crc32(small_cohort.report_text(c).encode())).normal(size=6)
        np.testing.assert_allclose(seen[0], expected, rtol=1e-6)
    for c in without:                                     # a patient without a report is kept: zeros
        assert np.array_equal(_Reports.received[c][0], np.zeros(6, np.float32))
    # a second run reads the cache: nothing is encoded again
    _train(cfg, small_cohort, split, tmp_path / "r2")
    assert CALLS["encoded"] == n_reports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_run(tmp_path / "r", cohort=small_cohort)   # test reports are encoded at evaluation only
    n_test = len({small_cohort.report_text(c) for c in split["test"] if small_cohort.manifest.at[c, "has_report"]})
    assert CALLS["encoded"] == n_reports + n_test


def test_pooled_subtype_head_keeps_sites_apart(small_cohort, split):
    """Two sites whose class 0 differs: a pooled head gives each site its own logits."""
    cfg = _cfg(POOLED, "model.task=subtype")
    info = cohort_info(small_cohort, cfg, split["train"])
    assert info.sites == ["BRCA", "NSCLC"]
    k_brca, k_nsclc = info.class_counts["BRCA"], info.class_counts["NSCLC"]
    assert info.n_classes == k_brca + k_nsclc
    assert info.subtype_slice("BRCA") == slice(0, k_brca)
    assert info.subtype_slice("NSCLC") == slice(k_brca, k_brca + k_nsclc)
    groups = small_cohort.grouping.sites
    assert groups["BRCA"].classes[0] != groups["NSCLC"].classes[0]
    method = METHODS.get(POOLED)(cfg, info)
    with torch.no_grad():
        method.head.fc.weight.zero_()
        method.head.fc.bias.copy_(torch.arange(float(info.n_classes)))   # the last logit of the head is largest
    patient = {"bag": torch.zeros(3, info.feature_dim), "site": "BRCA", "subtype": torch.tensor(0)}
    logits = method.predict(patient)["logits"]
    assert logits.shape == (k_brca,) and int(logits.argmax()) == k_brca - 1    # a BRCA class, never NSCLC's
    patient["site"] = "NSCLC"
    logits = method.predict(patient)["logits"]
    assert logits.shape == (k_nsclc,) and torch.equal(logits, torch.arange(float(k_brca), k_brca + k_nsclc))
    # the loss of an NSCLC patient of class 0 only involves NSCLC's logits
    out = method.loss({**patient, "subtype": torch.tensor(0)})
    expected = F.cross_entropy(torch.arange(float(k_brca), k_brca + k_nsclc)[None], torch.tensor([0]))
    assert float(out.terms["loss"].detach()) == pytest.approx(float(expected))
    # one site: the whole head is the site's, as before pooled heads existed
    one = cohort_info(small_cohort, cfg, [c for c in split["train"] if small_cohort.manifest.at[c, "site"] == "BRCA"])
    assert one.n_classes == max(2, k_brca) and one.subtype_slice("BRCA") == slice(0, one.n_classes)


def test_collate_stack_refuses_ragged_bags():
    a = {"case_id": "a", "bag": torch.zeros(4, 3), "subtype": torch.tensor(0)}
    b = {"case_id": "b", "bag": torch.zeros(5, 3), "subtype": torch.tensor(1)}
    with pytest.raises(ValueError, match="fixed_bags"):
        collate_stack([a, b])
    out = collate_stack([a, {**b, "bag": torch.ones(4, 3)}])
    assert out["bag"].shape == (2, 4, 3) and out["case_id"] == ["a", "b"] and out["subtype"].tolist() == [0, 1]


def test_cohort_info_round_trip(small_cohort, split):
    cfg = _cfg(POOLED)
    info = cohort_info(small_cohort, cfg, split["train"])
    again = CohortInfo.from_dict(info.to_dict())
    assert again.to_dict() == info.to_dict()
    assert again.site_index("NSCLC") == 1
    with pytest.raises(ConfigError, match="site_map"):
        again.site_index("HANCOCK")
    again.site_map = {"HANCOCK": "NSCLC"}
    assert again.site_index("HANCOCK") == 1
