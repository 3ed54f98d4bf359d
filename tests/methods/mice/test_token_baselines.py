"""MCAT and SurvPath with report tokens (MICE's baselines, spec mice.md (e)): registration and protocol,
the report tokens (not the genes) reaching the prediction, gradients into the report projection, the
learned missing-report token, and a tiny pan-cancer (per TCGA project) run through the engine."""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.chains import train_chain
from modaltune.config import resolve_config
from modaltune.errors import ConfigError
from modaltune.methods.base import CohortInfo
from modaltune.registry import METHODS, TEXT_ENCODERS, load_builtin
from modaltune.runs.evaluate import evaluate_run
from modaltune.runs.layout import PREDICTIONS

load_builtin()

NAMES = {"mcat_report": ("mcat", "MCAT (report)"), "survpath_report": ("survpath", "SurvPath (report)")}
TINY = {"mcat_report": {"dim": 16, "heads": 2, "layers": 1, "ff_dim": 16, "dropout": 0.0},
        "survpath_report": {"dim": 16, "dropout": 0.0}}
DR = 6
INFO = CohortInfo(feature_dim=12, n_genes=10, report_dim=DR, n_bins=4, sites=["LUAD", "KIRC"])


def _build(name: str, seed: int = 0, **model):
    torch.manual_seed(seed)
    cfg = resolve_config(name)
    cfg["model"].update({**TINY[name], **model})
    return METHODS.get(name)(cfg, INFO).eval()


def _patient(i: int = 0, report: bool = True, n_tokens: int = 7, wsi: bool = True) -> dict:
    g = torch.Generator().manual_seed(100 + i)
    return {"case_id": f"c{i}", "site": "LUAD", "bag": torch.randn(9 if wsi else 0, 12, generator=g),
            "omics": torch.randn(10, generator=g),
            "report_tokens": torch.randn(n_tokens, DR, generator=g) if report else torch.zeros(0, DR),
            "has_wsi": torch.tensor(wsi), "has_omics": torch.tensor(True), "has_report": torch.tensor(report),
            "survival_bin": torch.tensor(1), "event": torch.tensor(1.0), "has_survival": torch.tensor(True)}


def _risk(m, p) -> torch.Tensor:
    with torch.no_grad():
        return m.predict(p)["risk"]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registered_in_mice_family_with_its_protocol(name):
    assert name in METHODS.names()
    cls = METHODS.get(name)
    cfg = resolve_config(name)
    decl = cls.declare(cfg)
    assert decl.inputs == frozenset({"bag", "report_tokens"}) and decl.batching == "single"
    assert decl.evaluation == "predict" and decl.tasks == ("survival",) and cls.task_runs == ()
    assert cls.family == "MICE" and cls.label() == NAMES[name][1]
    assert [(s.name, s.scope, s.init_from) for s in cls.stages(cfg)] == [("main", "run", None)]
    assert cfg["model"]["tokens"] == "report" and cfg["model"]["surv_alpha"] == 0.0
    assert cfg["data"]["n_bins"] == 5 and cfg["train"]["epochs"] == 20 and cfg["train"]["lr"] == 1e-4
    assert cfg["train"]["schedule"] == "constant" and cfg["train"]["accumulate"] == 1
    small = resolve_config(name, file="cpu_small")      # as MICE's other per-site baselines
    assert small["data"]["bag_cap"] == 256 and small["train"]["lr"] == 1e-4 and small["train"]["epochs"] == 10
    # the pathway versions are unchanged
    base = METHODS.get(NAMES[name][0])
    assert base.declare(resolve_config(base.registry_name)).inputs == frozenset({"bag", "omics"})


@pytest.mark.parametrize("name", sorted(NAMES))
def test_report_tokens_reach_the_prediction_and_genes_do_not(name):
    m = _build(name)
    p = _patient(0)
    r = _risk(m, p)
    other = {**p, "report_tokens": _patient(1)["report_tokens"]}
    assert not torch.allclose(_risk(m, other), r)                            # another report, another risk
    longer = {**p, "report_tokens": torch.cat([p["report_tokens"], torch.randn(3, DR)])}
    assert not torch.allclose(_risk(m, longer), r)                           # every token counts
    genes = {**p, "omics": p["omics"] + 5.0, "has_omics": torch.tensor(False)}
    torch.testing.assert_close(_risk(m, genes), r, rtol=0, atol=0)           # expression is never read
    assert not any("tokenizer" in n for n, _ in m.named_parameters())


@pytest.mark.parametrize("name", sorted(NAMES))
def test_gradients_reach_the_report_projection(name):
    m = _build(name).train()
    m.loss(_patient(0)).total.backward()
    grad = m.inputs.report_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert m.inputs.report_proj.weight.shape == (TINY[name]["dim"], DR)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_patient_without_report_gets_the_learned_missing_token(name):
    m = _build(name).train()
    none = _patient(0, report=False)
    out = m.loss(none)
    assert torch.isfinite(out.total)
    out.total.backward()
    assert m.inputs.missing_report.grad is not None and m.inputs.missing_report.grad.abs().sum() > 0
    assert m.inputs.report_proj.weight.grad is None                          # no report, no projection
    m.eval()
    r = _risk(m, none)
    assert r.dim() == 0 and torch.isfinite(r)
    flagged = {**_patient(0), "has_report": torch.tensor(False)}              # the flag wins over stale tokens
    torch.testing.assert_close(_risk(m, flagged), r)
    empty = {**_patient(0), "report_tokens": torch.zeros(0, DR)}             # a report with no token
    torch.testing.assert_close(_risk(m, empty), r)
    with torch.no_grad():
        m.inputs.missing_report.add_(torch.randn_like(m.inputs.missing_report))   # (a constant shift is normed away)
    assert not torch.allclose(_risk(m, none), r)                             # the placeholder is used
    assert torch.isfinite(_risk(m, _patient(2, report=False, wsi=False)))   # neither slide nor report


def test_token_source_is_a_switch_of_mcat_and_survpath():
    for base in ("mcat", "survpath"):
        cls = METHODS.get(base)
        cfg = resolve_config(base, overrides=["model.tokens=report", "model.task=survival"])
        assert cls.declare(cfg).inputs == frozenset({"bag", "report_tokens"})
        cfg["model"].update(TINY[f"{base}_report"])
        m = cls(cfg, INFO).eval()
        assert torch.isfinite(_risk(m, _patient(0))) and hasattr(m.inputs, "report_proj")
    with pytest.raises(ConfigError, match="model.tokens"):
        METHODS.get("mcat").declare({"model": {"tokens": "words"}})
    with pytest.raises(ConfigError, match="token_sets"):
        METHODS.get("mcat").declare({"model": {"tokens": "report", "token_sets": ["TUMOR_*"]}})
    with pytest.raises(ConfigError, match="survival only"):
        _build("mcat_report", task="subtype")
    with pytest.raises(ConfigError, match="report tokens"):
        _build("survpath_report", tokens="pathways")
    with pytest.raises(ConfigError, match="report token states"):
        METHODS.get("mcat_report")(resolve_config("mcat_report"), CohortInfo(feature_dim=12, n_genes=10, n_bins=4))


# ---------------------------------------------------------------- through the engine
ENCODER = "_test_report_token_encoder"


class _TokenEncoder:
    """A toy report encoder: one 8-d state per word (seeded by the word), so no language model is needed."""

    def __init__(self, path=None, device=None, **kw):
        pass

    @staticmethod
    def _word(w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode())).normal(size=8).astype(np.float32)

    def encode(self, texts, batch_size=64, **kw):
        return np.stack([self._word(t) for t in texts])

    def encode_tokens(self, texts, batch_size=16):
        return [np.stack([self._word(w) for w in (t.split() or ["[CLS]"])[:32]]) for t in texts]


if ENCODER not in TEXT_ENCODERS:
    TEXT_ENCODERS.register(ENCODER)(_TokenEncoder)


@pytest.fixture(scope="module")
def pan_cohort(tmp_path_factory):
    """Two TCGA projects prepared with MICE's per-project site scheme; some patients lack a report."""
    from modaltune.data.prepare import prepare_cohort
    from modaltune.synthetic import make_pan_cancer

    root = tmp_path_factory.mktemp("pan_tokens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = make_pan_cancer(root / "raw", seed=0, sites=("LUAD", "KIRC"), patients=20, patches=(4, 8), dim=8,
                              n_pathways=4, pathway_size=(3, 5), n_extra_genes=4, n_absent_genes=1,
                              frac_missing_report=0.25)
        return prepare_cohort(root / "cohort", features=raw["features"], clinical=raw["clinical"],
                              expression=raw["expression"], gene_sets=raw["gene_sets"], reports=raw["reports"],
                              site_scheme="tcga_project")


@pytest.mark.parametrize("name", sorted(NAMES))
def test_per_site_run_through_the_engine_keeps_patients_without_reports(name, pan_cohort, tmp_path):
    man = pan_cohort.manifest
    assert sorted(set(man["site"])) == ["KIRC", "LUAD"] and not man["has_report"].all()
    sets = ["train.progress_bar=false", "seed=0", f"report.encoder={ENCODER}", "train.epochs=1",
            *(f"model.{k}={v}" for k, v in TINY[name].items())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finals = train_chain(name, pan_cohort, tmp_path / "out", config="cpu_small", overrides=sets)
        assert sorted(r.name for r in finals) == ["KIRC", "LUAD"]              # one run per project
        for run in finals:
            metrics = evaluate_run(run, cohort=pan_cohort)
            assert math.isfinite(metrics[run.name]["c_index"]), metrics
            split = pd.read_csv(run / "split.csv", dtype=str)
            test = set(split.loc[split["split"] == "test", "case_id"])
            pred = pd.read_csv(run / PREDICTIONS, dtype={"case_id": str})
            assert set(pred["case_id"]) == test                                  # nobody dropped
            assert np.isfinite(pred["risk"]).all()
    assert not man.loc[[c for r in finals for c in pd.read_csv(r / PREDICTIONS, dtype=str)["case_id"]],
                       "has_report"].all()                                     # some were scored without a report
