"""Chained runs: a second stage starts from the first's weights; mismatched splits are refused;
a frozen run (a teacher) must share the split; a stopped chain resumes in the middle."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from modaltune.chains import Resolver, plan_chain, run_chain, train_chain
from modaltune.config import resolve_config
from modaltune.errors import ConfigError, InputError
from modaltune.methods.base import LossOutput, Method, Stage
from modaltune.pipeline import resolve_split, restrict_split
from modaltune.registry import METHODS
from modaltune.runs.evaluate import evaluate_run
from modaltune.runs.layout import BEST
from modaltune.training.engine import train_method

TWO = "_test_chains_two_stage"
STUDENT = "_test_chains_student"


class _Toy(Method):
    requires = frozenset({"omics"})
    evaluation = "predict"
    tasks = ("survival",)

    def __init__(self, cfg, info, frozen=None):
        super().__init__(cfg, info, frozen)
        self.net = nn.Linear(info.n_genes, 1)
        self.embed_size = len(info.sites)

    def loss(self, p):
        return LossOutput({"loss": self.net(p["omics"].float()).pow(2).mean()})

    def embed(self, p):
        return self.net.weight.reshape(-1)

    def predict(self, p):
        return {"logits": None, "risk": self.net(p["omics"].float()).reshape(())}


class _TwoStage(_Toy):
    @classmethod
    def default_config(cls):
        return {"model": {}, "stages": {"pre": {"train": {"epochs": 1}}, "fine": {"train": {"epochs": 0}}}}

    @classmethod
    def stages(cls, cfg):
        return [Stage("pre", TWO, scope="pooled"), Stage("fine", TWO, scope="per_site", init_from="pre")]


class _Student(_Toy):
    """Holds a frozen teacher (another run of the toy)."""

    @classmethod
    def default_config(cls):
        return {"model": {"teacher_run": None}}

    @classmethod
    def frozen_slots(cls, cfg):
        return {"teacher": cfg["model"].get("teacher_run")}


for _n, _c in ((TWO, _TwoStage), (STUDENT, _Student)):
    if _n not in METHODS:
        METHODS.register(_n)(_c)

SETS = ["train.progress_bar=false", "seed=0", "train.warmup_epochs=0"]


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def test_second_stage_starts_from_the_first(small_cohort, tmp_path):
    finals = _quiet(train_chain, TWO, small_cohort, tmp_path / "out", overrides=SETS)
    assert finals == [tmp_path / "out" / "BRCA", tmp_path / "out" / "NSCLC"]
    pre = torch.load(tmp_path / "out" / "stages" / "pre" / BEST, weights_only=True)["state_dict"]
    for run in finals:
        fine = torch.load(run / BEST, weights_only=True)
        assert fine["epoch"] == -1                                    # zero epochs: the starting weights
        assert all(torch.equal(fine["state_dict"][k], pre[k]) for k in pre)
        info = (run / "cohort_info.json").read_text()
        assert '"BRCA"' in info and '"NSCLC"' in info                # the parent's site vocabulary


def test_a_mismatched_split_is_refused(small_cohort, tmp_path):
    parent = tmp_path / "parent"
    cfg = resolve_config(TWO, overrides=SETS + ["train.epochs=1"])
    _quiet(train_method, cfg, small_cohort, resolve_split(cfg, small_cohort), parent)
    other = resolve_config(TWO, overrides=SETS + ["train.epochs=0", "data.split_seed=7", f"train.init_from={parent}"])
    split = restrict_split(resolve_split(other, small_cohort), small_cohort, ["BRCA"])
    with pytest.raises(InputError, match="another split"):
        _quiet(train_method, other, small_cohort, split, tmp_path / "child")
    same = resolve_config(TWO, overrides=SETS + ["train.epochs=0", f"train.init_from={parent}"])
    split = restrict_split(resolve_split(same, small_cohort), small_cohort, ["BRCA"])
    _quiet(train_method, same, small_cohort, split, tmp_path / "child_ok")
    assert (tmp_path / "child_ok" / BEST).exists()


def test_a_teacher_with_another_split_is_refused(small_cohort, tmp_path):
    cfg = resolve_config(TWO, overrides=SETS + ["train.epochs=1", "data.split_seed=3"])
    _quiet(train_method, cfg, small_cohort, resolve_split(cfg, small_cohort), tmp_path / "teacher")
    student = resolve_config(STUDENT, overrides=SETS + ["train.epochs=1", f"model.teacher_run={tmp_path / 'teacher'}"])
    with pytest.raises(InputError, match="teacher run used another split"):
        _quiet(train_method, student, small_cohort, resolve_split(student, small_cohort), tmp_path / "student")
    with pytest.raises(InputError, match="frozen 'teacher' run"):
        missing = resolve_config(STUDENT, overrides=SETS)
        _quiet(train_method, missing, small_cohort, resolve_split(missing, small_cohort), tmp_path / "none")
    good = resolve_config(STUDENT, overrides=SETS + ["train.epochs=1", "data.split_seed=3",
                                                     f"model.teacher_run={tmp_path / 'teacher'}"])
    _quiet(train_method, good, small_cohort, resolve_split(good, small_cohort), tmp_path / "student_ok")
    saved = torch.load(tmp_path / "student_ok" / BEST, weights_only=True)["state_dict"]
    assert not any(k.startswith("frozen_runs.") for k in saved)        # the teacher is not saved with the student


def test_a_stopped_chain_resumes_in_the_middle(small_cohort, tmp_path):
    def run_dir_of(stage, where, final, own):
        return tmp_path / stage.name / where

    plan = plan_chain(TWO, small_cohort, Resolver(overrides=SETS), run_dir_of)
    assert [(r.stage.name, r.sites) for r in plan] == [("pre", ["BRCA", "NSCLC"]), ("fine", ["BRCA"]),
                                                        ("fine", ["NSCLC"])]
    assert plan[1].parent is plan[0] and plan[1].cfg["train"]["init_from"] == str(plan[0].run_dir)
    _quiet(run_chain, plan[:2], small_cohort, evaluate=True)
    stamp = (plan[0].run_dir / BEST).stat().st_mtime_ns
    results = _quiet(run_chain, plan, small_cohort, evaluate=True)
    assert (plan[0].run_dir / BEST).stat().st_mtime_ns == stamp       # the finished stage is not redone
    assert set(results) == {plan[1].run_dir, plan[2].run_dir} and all(results.values())


def test_a_kept_finished_run_trained_with_other_settings_is_named(small_cohort, tmp_path):
    """Resuming keeps finished runs; when they were trained with other settings, a warning names the
    run and the changed keys (a benchmark resumed after a config change would otherwise mix them)."""
    from modaltune.errors import InputWarning

    def run_dir_of(stage, where, final, own):
        return tmp_path / stage.name / where

    plan = plan_chain(TWO, small_cohort, Resolver(overrides=SETS), run_dir_of)
    _quiet(run_chain, plan, small_cohort, evaluate=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_chain(plan_chain(TWO, small_cohort, Resolver(overrides=SETS), run_dir_of), small_cohort, evaluate=True)
    assert not [w for w in caught if "other settings" in str(w.message)]
    changed = plan_chain(TWO, small_cohort, Resolver(overrides=SETS + ["train.lr=0.5"]), run_dir_of)
    with pytest.warns(InputWarning, match="other settings") as caught:
        run_chain(changed, small_cohort, evaluate=True)
    texts = [str(w.message) for w in caught if "other settings" in str(w.message)]
    assert len(texts) == 3 and all("train.lr: " in t and "-> 0.5" in t for t in texts)
    assert any(str(plan[0].run_dir) in t for t in texts)              # the pre-training run is named too


def test_a_later_stages_settings_do_not_flag_a_kept_earlier_stage(small_cohort, tmp_path):
    """A pre-training run is kept without a word when only the fine-tuning settings changed (its
    config records the whole chain's ``stages`` section, but later stages cannot have changed it);
    the fine-tuning runs, which did change, are still named."""
    from modaltune.errors import InputWarning

    def run_dir_of(stage, where, final, own):
        return tmp_path / stage.name / where

    plan = plan_chain(TWO, small_cohort, Resolver(overrides=SETS), run_dir_of)
    _quiet(run_chain, plan, small_cohort, evaluate=True)
    changed = plan_chain(TWO, small_cohort, Resolver(overrides=SETS + ["stages.fine.train.epochs=1"]), run_dir_of)
    with pytest.warns(InputWarning, match="other settings") as caught:
        run_chain(changed, small_cohort, evaluate=True)
    texts = [str(w.message) for w in caught if "other settings" in str(w.message)]
    assert len(texts) == 2 and all("stages.fine.train.epochs: 0 -> 1" in t for t in texts)
    assert not any(str(plan[0].run_dir) in t for t in texts)          # the pre-training run is not flagged
    earlier = plan_chain(TWO, small_cohort, Resolver(overrides=SETS + ["stages.pre.train.epochs=2"]), run_dir_of)
    with pytest.warns(InputWarning, match="other settings") as caught:
        run_chain(earlier, small_cohort, evaluate=True)
    texts = [str(w.message) for w in caught if "other settings" in str(w.message)]
    assert any(str(plan[0].run_dir) in t and "stages.pre.train.epochs: 1 -> 2" in t for t in texts)


def test_settings_that_change_only_what_a_run_keeps_do_not_flag_it(tmp_path):
    """Keeping every epoch's weights (to replay epochs), logging or a progress bar change no result:
    a run kept with other values of them is not named; a real difference still is, beside them."""
    import yaml

    from modaltune.errors import InputWarning
    from modaltune.runs import layout

    old = {"train": {"lr": 0.1, "keep_epoch_weights": "auto", "progress_bar": "auto"},
           "stages": {"fine": {"train": {"keep_epoch_weights": "auto"}}}}
    (tmp_path / layout.CONFIG).write_text(yaml.safe_dump(old))
    neutral = {"train": {"lr": 0.1, "keep_epoch_weights": True, "progress_bar": False, "tensorboard": True},
               "stages": {"fine": {"train": {"keep_epoch_weights": True}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layout.warn_changed_config(tmp_path, neutral, "kept") == []
    changed = {**neutral, "train": {**neutral["train"], "lr": 0.5}}
    with pytest.warns(InputWarning, match="other settings") as caught:
        diffs = layout.warn_changed_config(tmp_path, changed, "kept")
    assert diffs == ["train.lr: 0.1 -> 0.5"] and "keep_epoch_weights" not in str(caught[0].message)


def test_stage_settings_are_checked(small_cohort):
    with pytest.raises(ConfigError, match="unknown stage"):
        resolve_config(TWO, overrides=["stages.warmup.train.epochs=2"])
    with pytest.raises(ConfigError, match="stages.pre.train.epoch"):
        resolve_config(TWO, overrides=["stages.pre.train.epoch=2"])


def test_a_benchmark_applies_stage_overrides_only_where_the_stage_exists():
    from modaltune.chains import check_stage_overrides

    sets = ["stages.pre.train.epochs=3", "train.epochs=2"]
    with pytest.raises(ConfigError, match="unknown stage"):      # one method alone: strict, as before
        Resolver(None, sets)(STUDENT)
    student = Resolver(None, sets, stages_where_present=True)(STUDENT)
    assert student["train"]["epochs"] == 2 and not student.get("stages")
    two = Resolver(None, sets, stages_where_present=True)(TWO)
    assert two["stages"]["pre"]["train"]["epochs"] == 3 and two["train"]["epochs"] == 2
    check_stage_overrides([TWO, STUDENT], None, sets)            # some method has stage 'pre'
    with pytest.raises(ConfigError, match="no method here has"):
        check_stage_overrides([STUDENT], None, sets)            # none has: a typo is not a no-op


def test_pretrain_only_sites_join_pretraining_but_are_never_fine_tuned(small_cohort, tmp_path):
    def run_dir_of(stage, where, final, own):
        return tmp_path / stage.name / where

    plan = plan_chain(TWO, small_cohort, Resolver(overrides=SETS + ["data.sites=[BRCA]",
                                                               "data.pretrain_only_sites=[NSCLC]"]), run_dir_of)
    assert [(r.stage.name, r.sites) for r in plan] == [("pre", ["BRCA", "NSCLC"]), ("fine", ["BRCA"])]
    results = _quiet(run_chain, plan, small_cohort, evaluate=True)
    split = pd.read_csv(plan[0].run_dir / "split.csv")
    sites = small_cohort.manifest.loc[split.case_id, "site"]
    assert set(sites) == {"BRCA", "NSCLC"}                               # pre-training saw both sites
    assert set(results[plan[1].run_dir]) == {"BRCA", "overall"}          # only BRCA is evaluated


def test_an_external_cohort_is_fine_tuned_through_a_site_map(small_cohort, cohort_factory, tmp_path):
    parent = tmp_path / "parent"
    cfg = resolve_config(TWO, overrides=SETS + ["train.epochs=1"])
    _quiet(train_method, cfg, small_cohort, resolve_split(cfg, small_cohort), parent)
    external = cohort_factory(sites=("RCC",), patients=20)
    child_cfg = resolve_config(TWO, overrides=SETS + ["train.epochs=1", f"train.init_from={parent}",
                                                      "data.site_map={RCC: NSCLC}"])
    split = resolve_split(child_cfg, external)
    _quiet(train_method, child_cfg, external, split, tmp_path / "child")
    info = json.loads((tmp_path / "child" / "cohort_info.json").read_text())
    assert info["sites"] == ["BRCA", "NSCLC"] and info["site_map"] == {"RCC": "NSCLC"}   # the parent's vocabulary
    state = json.loads((tmp_path / "child" / "fitted_state.json").read_text())
    assert "RCC" in state["bin_edges"] and "chained run" in state["bin_source"]["RCC"]   # new site, own bins
    metrics = _quiet(evaluate_run, tmp_path / "child", cohort=external)
    assert set(metrics) == {"RCC", "overall"}


@pytest.mark.parametrize("select_initial", [True, False])
def test_select_initial_lets_the_starting_weights_compete(small_cohort, tmp_path, select_initial):
    parent = tmp_path / "parent"
    cfg = resolve_config(TWO, overrides=SETS + ["train.epochs=1"])
    _quiet(train_method, cfg, small_cohort, resolve_split(cfg, small_cohort), parent)
    pre = torch.load(parent / BEST, weights_only=True)["state_dict"]
    child = resolve_config(TWO, overrides=SETS + ["train.epochs=2", "train.lr=0", "train.weight_decay=0",
                                                  f"train.init_from={parent}", f"train.select_initial={select_initial}"])
    res = _quiet(train_method, child, small_cohort, resolve_split(child, small_cohort), tmp_path / "child")
    hist = pd.read_csv(tmp_path / "child" / "history.csv")
    # lr 0: every epoch scores exactly as the start, and ties keep the earliest candidate
    assert list(hist["epoch"]) == ([-1, 0, 1] if select_initial else [0, 1])
    assert hist["score"].nunique() == 1
    best = torch.load(tmp_path / "child" / BEST, weights_only=True)
    assert res["best_epoch"] == best["epoch"] == (-1 if select_initial else 0)
    assert all(torch.equal(best["state_dict"][k], pre[k]) for k in pre)


def test_a_pooled_stage_gives_every_site_the_epoch_best_on_average(small_cohort, tmp_path):
    sets = SETS + ["stages.fine.train.epochs=3", "stages.fine.train.lr=0.5", "stages.fine.train.select_initial=true",
                   "stages.fine.train.keep_epoch_weights=true", "stages.fine.train.select_scope=pooled"]
    finals = _quiet(train_chain, TWO, small_cohort, tmp_path / "out", overrides=sets)
    choices = [json.loads((run / "pooled_selection.json").read_text()) for run in finals]
    assert len(finals) == 2 and choices[0] == choices[1]
    table = {int(e): v for e, v in choices[0]["table"].items()}
    assert sorted(table) == [-1, 0, 1, 2]
    for e, v in table.items():   # the table is the mean of the sites' own validation scores
        site_scores = [float(pd.read_csv(run / "history.csv").set_index("epoch").at[e, "score"]) for run in finals]
        finite = [x for x in site_scores if x == x]          # a site without a validation C-index is left out
        assert finite and v == pytest.approx(sum(finite) / len(finite))
    chosen = choices[0]["epoch"]
    assert table[chosen] == max(table.values())
    for run in finals:
        best = torch.load(run / BEST, weights_only=True)
        assert best["epoch"] == chosen and best["select_scope"] == "pooled"
        source = run / "checkpoints" / ("initial.ckpt" if chosen < 0 else f"epoch={chosen:03d}.ckpt")
        weights = torch.load(source, weights_only=True)["state_dict"]
        assert all(torch.equal(v, weights.get(k, weights.get(f"method.{k}"))) for k, v in best["state_dict"].items())
    # the default (keep_epoch_weights: auto) deletes the epochs' weights once the choice is made
    again = _quiet(train_chain, TWO, small_cohort, tmp_path / "auto",
                   overrides=[o for o in sets if "keep_epoch_weights" not in o] + ["stages.pre.train.select_scope=pooled"])
    for run in again:
        assert not list((run / "checkpoints").glob("epoch=*.ckpt")) and not (run / "checkpoints" / "initial.ckpt").exists()
        assert torch.load(run / BEST, weights_only=True)["epoch"] == chosen       # same data, same choice
    pre = tmp_path / "auto" / "stages" / "pre"
    assert not list((pre / "checkpoints").glob("epoch=*.ckpt"))     # a one-run stage: its own choice, pruned
    assert not (pre / "pooled_selection.json").exists()


def test_select_scope_is_checked(small_cohort, tmp_path):
    cfg = resolve_config(TWO, overrides=SETS + ["train.select_scope=everything"])
    with pytest.raises(ConfigError, match="select_scope"):
        _quiet(train_method, cfg, small_cohort, resolve_split(cfg, small_cohort), tmp_path / "bad")


@pytest.mark.parametrize("scope", ["final", "all"])
def test_a_training_fraction_cuts_only_the_last_stage_by_default(small_cohort, tmp_path, scope):
    sets = SETS + ["data.train_fraction=0.5", f"data.train_fraction_stages={scope}"]
    plan = plan_chain(TWO, small_cohort, Resolver(overrides=sets), lambda s, w, f, o: tmp_path / scope / s.name / w)
    fractions = [(r.stage.name, r.cfg["data"]["train_fraction"]) for r in plan]
    pre = 1.0 if scope == "final" else 0.5
    assert fractions == [("pre", pre), ("fine", 0.5), ("fine", 0.5)]
    _quiet(run_chain, plan, small_cohort)
    splits = {r.run_dir: pd.read_csv(r.run_dir / "split.csv") for r in plan}
    pre_split, fine_split = splits[plan[0].run_dir], splits[plan[1].run_dir]
    pre_train = set(pre_split.case_id[pre_split.split == "train"])
    fine_train = set(fine_split.case_id[fine_split.split == "train"])
    assert fine_train < pre_train                                  # fine-tuning sees a part of pre-training's
    assert fine_split.case_id[fine_split.split == "train"].map(small_cohort.manifest["site"]).eq("BRCA").all()
    full = resolve_config(TWO, overrides=SETS)
    whole = restrict_split(resolve_split(full, small_cohort), small_cohort, ["BRCA"])["train"]
    assert abs(len(fine_train) - len(whole) / 2) <= 2              # the cut is half of the site's training part
    if scope == "final":
        assert len([c for c in pre_train if small_cohort.manifest.at[c, "site"] == "BRCA"]) == len(whole)
    for part in ("val", "test"):                                    # the evaluated patients never change
        assert set(fine_split.case_id[fine_split.split == part]) <= set(pre_split.case_id[pre_split.split == part])


def test_a_cut_child_accepts_only_a_subset_of_its_parents_training_part(tmp_path):
    from modaltune.runs.chain import check_same_split

    site_of = dict.fromkeys("abcdefg", "BRCA")
    parent = {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]}
    cut = {"train": ["a", "c"], "val": ["d"], "test": ["e"]}
    check_same_split(parent, cut, site_of, ["BRCA"], file=tmp_path, what="parent", train_subset=True)
    with pytest.raises(InputError, match="1 train patient"):        # a cut is still refused unless declared
        check_same_split(parent, cut, site_of, ["BRCA"], file=tmp_path, what="parent")
    with pytest.raises(InputError, match=r"1 train patient.*\(f\)"):    # a training patient the parent never had
        check_same_split(parent, {**cut, "train": ["a", "f"]}, site_of, ["BRCA"], file=tmp_path, what="parent",
                         train_subset=True)
    with pytest.raises(InputError, match="1 test patient"):         # validation and test parts stay identical
        check_same_split(parent, {**cut, "test": ["e", "g"]}, site_of, ["BRCA"], file=tmp_path, what="parent",
                         train_subset=True)


def test_a_bad_fraction_scope_is_refused(small_cohort, tmp_path):
    with pytest.raises(ConfigError, match="train_fraction_stages"):
        plan_chain(TWO, small_cohort, Resolver(overrides=SETS + ["data.train_fraction_stages=some"]),
                   lambda s, w, f, o: tmp_path / s.name / w)


def test_a_benchmark_fine_tunes_every_fraction_from_the_whole_parts_pre_training(small_cohort, tmp_path):
    from modaltune.benchmark.cells import Unit
    from modaltune.benchmark.runner import Benchmark

    bench = Benchmark(small_cohort.root, [TWO], seeds=[0], folds=2, out=tmp_path / "b", ood=False,
                      overrides=SETS, train_fractions=[0.5])
    spec, sites = bench.specs[0], ["BRCA", "NSCLC"]
    full, cut = (bench.plan(spec, Unit(0, 0, f), None, sites) for f in (1.0, 0.5))
    assert cut[0].run_dir == full[0].run_dir and cut[0].cfg["data"]["train_fraction"] == 1.0   # one pre-training
    assert cut[1].run_dir != full[1].run_dir and "frac50_fold0_seed0" in str(cut[1].run_dir)
    assert cut[1].cfg["train"]["init_from"] == str(full[0].run_dir)
