"""One engine-level smoke test of the protocol (spec (d)): ``train_chain("dmsf_distill")`` trains the
teacher, the student warm-up and the distillation (from the student's weights, the teacher frozen) on a
cohort with two magnifications; the final run evaluates without its teacher; a teacher trained on another
split is refused."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch
from dmsf_helpers import TINY

from modaltune.chains import train_chain
from modaltune.config import resolve_config
from modaltune.errors import InputError
from modaltune.pipeline import resolve_split
from modaltune.runs.evaluate import evaluate_run
from modaltune.runs.layout import BEST
from modaltune.training.engine import train_method
from modaltune.utils import read_json


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def chain(two_mag_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("dmsf_chain")
    finals = _quiet(train_chain, "dmsf_distill", two_mag_cohort, out, overrides=TINY)
    return out, finals


def _stage(root, name):
    return root / "stages" / name / "BRCA"


def _weights(run_dir):
    return torch.load(run_dir / BEST, weights_only=True)["state_dict"]


def test_chain_trains_three_stages_and_evaluates(chain, two_mag_cohort):
    root, finals = chain
    out = root / "BRCA"                          # per-site runs live in OUT/<site>, also for one site
    assert finals == [out]
    teacher, student = _stage(root, "teacher"), _stage(root, "student")
    run = read_json(out / "run.json")
    assert run["method"] == "dmsf_distill" and run["init_from"] == str(student)
    assert run["frozen_runs"] == {"teacher": str(teacher)}
    assert read_json(teacher / "run.json")["method"] == "dmsf_teacher"
    logged = pd.concat([pd.read_csv(p) for p in (out / "logs").glob("*/metrics.csv")])
    for term in ("train_kd_m20", "train_kd_m10", "train_feat_m20", "train_feat_m10", "train_task"):
        values = logged[term].dropna()
        assert len(values) and values.map(math.isfinite).all(), term
    metrics = _quiet(evaluate_run, out, cohort=two_mag_cohort)
    subtype = {k: metrics["BRCA"][k] for k in ("balanced_accuracy", "auc", "accuracy")}   # a subtype run
    assert all(math.isfinite(v) for v in subtype.values()), subtype
    assert metrics["BRCA"]["n"] == len(pd.read_csv(out / "split.csv").query("split == 'test'"))


def test_distillation_started_from_the_student(chain):
    out, _ = chain
    dst, stu = _weights(out / "BRCA"), _weights(_stage(out, "student"))
    assert not any(k.startswith("frozen_runs.") for k in dst)          # the teacher is not saved with it
    assert set(dst) == set(stu)
    diffs = [float((dst[k].float() - stu[k].float()).abs().max()) for k in stu if stu[k].is_floating_point()]
    assert max(diffs) < 0.01                                             # a few Adam steps at lr 1e-4 from it
    assert max(diffs) > 0                                                # and trained
    teacher = _weights(_stage(out, "teacher"))
    assert any("snn" in k for k in teacher) and not any("snn" in k for k in dst)


def test_the_teacher_run_names_the_genes_it_read(chain, two_mag_cohort):
    out, _ = chain
    choices = read_json(_stage(out, "teacher") / "fitted_choices.json")
    weights = _weights(_stage(out, "teacher"))
    for s in ("tumor", "tme"):
        expected = [two_mag_cohort.genes[int(i)] for i in weights[f"genes_{s}"]]
        assert choices["teacher_genes"][s] == expected and expected
    assert choices["hvg_fraction"] == 0.3 and choices["hvg_random"] is False
    assert not (_stage(out, "student") / "fitted_choices.json").exists()     # a method that chose nothing


def test_a_teacher_from_another_split_is_refused(chain, two_mag_cohort, tmp_path):
    out, _ = chain
    cfg = resolve_config("dmsf_distill", overrides=[*TINY, "data.split_seed=5",
                                                    f"model.teacher_run={_stage(out, 'teacher')}"])
    with pytest.raises(InputError, match="teacher run used another split"):
        _quiet(train_method, cfg, two_mag_cohort, resolve_split(cfg, two_mag_cohort), tmp_path / "bad")
