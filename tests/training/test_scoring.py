"""Which validation score chooses the epoch (``train.select_metric``)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from modaltune.errors import ConfigError
from modaltune.methods.contract import Declaration
from modaltune.training.scoring import resolve_select_metric, task_mean

TRAIN = pd.DataFrame({"site": ["A"] * 4, "subtype_index": [0, 1, 0, 1], "rare": [False] * 4})
NO_SUBTYPES = TRAIN.assign(subtype_index=-1)


def _decl(evaluation, tasks=("subtype", "survival"), select="auto"):
    return Declaration(inputs=frozenset({"bag"}), evaluation=evaluation, tasks=tasks, select_metric=select)


@pytest.mark.parametrize("evaluation, tasks, train, expect", [
    ("probe", ("subtype", "survival"), TRAIN, "val_mean"),                # one embedding for both tasks
    ("predict", ("subtype", "survival"), TRAIN, "val_balanced_accuracy"),
    ("probe", ("subtype", "survival"), NO_SUBTYPES, "val_c_index"),
    ("probe", ("survival",), TRAIN, "val_c_index"),
    ("predict", ("subtype",), TRAIN, "val_balanced_accuracy"),
])
def test_auto_rule(evaluation, tasks, train, expect):
    assert resolve_select_metric({"train": {"select_metric": "auto"}}, _decl(evaluation, tasks), train) == expect


def test_explicit_and_declared_metrics_win_and_bad_ones_fail():
    decl = _decl("probe")
    assert resolve_select_metric({"train": {"select_metric": "val_balanced_accuracy"}}, decl, TRAIN) \
        == "val_balanced_accuracy"                                          # the paper's ModalTune setting
    assert resolve_select_metric({"train": {"select_metric": "auto"}}, _decl("predict", select="val_auc"),
                                 TRAIN) == "val_auc"
    with pytest.raises(ConfigError, match="select_metric"):
        resolve_select_metric({"train": {"select_metric": "val_best"}}, decl, TRAIN)


def test_task_mean_averages_the_tasks_that_have_a_score():
    assert task_mean({"val_balanced_accuracy": 0.9, "val_c_index": 0.6}) == pytest.approx(0.75)
    assert task_mean({"val_balanced_accuracy": float("nan"), "val_c_index": 0.6}) == pytest.approx(0.6)
    assert math.isnan(task_mean({"val_loss": 1.0}))


def test_the_paper_setting_is_one_config_away():
    from modaltune.config import resolve_config

    paper = resolve_config("modaltune", file="paper")
    assert paper["train"]["select_metric"] == "val_balanced_accuracy" and paper["eval"]["cph_penalizer"] == 0.1
    assert resolve_config("modaltune", file="paper_pan_cancer")["train"]["select_metric"] == "val_balanced_accuracy"
    assert resolve_config("abmil", file="paper")["train"]["select_metric"] == "auto"     # baselines unchanged
    small = resolve_config("modaltune", file="cpu_small")
    assert small["train"]["select_metric"] == "auto" and small["eval"]["cph_penalizer"] == "auto"


def test_a_mapping_names_the_metric_per_task():
    per_task = {"train": {"select_metric": {"subtype": "val_auc", "survival": "val_c_index"}}}
    assert resolve_select_metric(per_task, _decl("predict", ("subtype",)), TRAIN) == "val_auc"
    assert resolve_select_metric(per_task, _decl("predict", ("survival",)), TRAIN) == "val_c_index"
    # a multi-task run, or a task the mapping leaves out, resolves as auto (the declared metric first)
    assert resolve_select_metric(per_task, _decl("probe"), TRAIN) == "val_mean"
    only_subtype = {"train": {"select_metric": {"subtype": "val_auc"}}}
    assert resolve_select_metric(only_subtype, _decl("predict", ("survival",)), TRAIN) == "val_c_index"
    assert resolve_select_metric(only_subtype, _decl("predict", ("survival",), select="val_loss"), TRAIN) \
        == "val_loss"
    with pytest.raises(ConfigError, match="not a task"):
        resolve_select_metric({"train": {"select_metric": {"diagnosis": "val_auc"}}}, _decl("predict"), TRAIN)
    with pytest.raises(ConfigError, match="select_metric"):
        resolve_select_metric({"train": {"select_metric": {"subtype": "val_best"}}}, _decl("predict", ("subtype",)),
                              TRAIN)


def test_a_per_task_mapping_passes_through_the_command_line_syntax():
    from modaltune.config import resolve_config

    cfg = resolve_config("abmil_plain", file="cpu_small",
                         overrides=["train.select_metric={subtype: val_auc, survival: val_c_index}"])
    assert cfg["train"]["select_metric"] == {"subtype": "val_auc", "survival": "val_c_index"}
