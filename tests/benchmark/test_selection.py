"""Choosing among variants on validation (``--methods 'a|b'``): the validation score decides, the test
split never does, and the row carries the chosen member's test numbers."""

from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest

from modaltune.benchmark.cells import Selection, parse_methods
from modaltune.benchmark.runner import Benchmark
from modaltune.benchmark.selection import choose, validation_score
from modaltune.errors import ConfigError, InputError

TOY = "_test_runner_toy"   # registered by tests/benchmark/conftest.py


def _run(tmp_path, name, metric="val_c_index", score=0.5, finished=True):
    rd = tmp_path / name
    rd.mkdir(parents=True)
    (rd / "best.ckpt").write_bytes(b"")
    run = {"select_metric": metric, "best_score": score}
    if finished:
        run["finished"] = "2026-12-02T00:00:00+0000"
    (rd / "run.json").write_text(json.dumps(run))
    return rd


def test_the_best_validation_score_wins_ties_keep_the_first_and_nan_never_wins(tmp_path):
    a, b = _run(tmp_path, "a", score=0.60), _run(tmp_path, "b", score=0.70)
    assert choose([("a", [a]), ("b", [b])])[0] == 1
    assert choose([("b", [b]), ("a", [a])])[0] == 0
    tie = _run(tmp_path, "tie", score=0.60)
    assert choose([("a", [a]), ("tie", [tie])])[0] == 0
    nan = _run(tmp_path, "nan", score=float("nan"))
    assert choose([("nan", [nan]), ("a", [a])])[0] == 1 and choose([("a", [a]), ("nan", [nan])])[0] == 0
    # per-site runs: the mean over the unit's final runs
    s1, s2 = _run(tmp_path, "s1", score=0.9), _run(tmp_path, "s2", score=0.3)
    metric, score = validation_score([s1, s2])
    assert metric == "val_c_index" and math.isclose(score, 0.6)
    best, rows = choose([("per_site", [s1, s2]), ("b", [b])])
    assert best == 1 and [r["chosen"] for r in rows] == [False, True] and math.isclose(rows[0]["val_score"], 0.6)
    # a loss: lower is better
    la, lb = _run(tmp_path, "la", "val_loss", 1.2), _run(tmp_path, "lb", "val_loss", 0.8)
    assert choose([("la", [la]), ("lb", [lb])])[0] == 1


def test_a_choice_needs_finished_runs_scored_on_one_validation_metric(tmp_path):
    a, auc = _run(tmp_path, "a"), _run(tmp_path, "auc", metric="val_auc", score=0.9)
    with pytest.raises(ConfigError, match="different metrics"):
        choose([("a", [a]), ("auc", [auc])])
    last = _run(tmp_path, "last", metric="last", score=9)
    with pytest.raises(ConfigError, match="train.select_metric"):
        choose([("a", [a]), ("last", [last])])
    with pytest.raises(InputError, match="not finished"):
        validation_score([_run(tmp_path, "running", finished=False)])


def test_specs_of_a_choice_and_its_label():
    [sel] = parse_methods(["mice|mice:no_contrastive"])
    assert isinstance(sel, Selection) and [m.spec for m in sel.members] == ["mice", "mice:no_contrastive"]
    assert sel.label == "MICE (chosen on validation: default / no contrastive term)" and sel.family == "MICE"
    [mixed] = parse_methods(["abmil|snn"])
    assert mixed.label == "chosen on validation: ABMIL / SNN"
    with pytest.raises(ConfigError, match="two or more different members"):
        parse_methods(["mice|mice"])
    with pytest.raises(ConfigError, match="different tasks"):
        parse_methods(["mice|abmil"])
    with pytest.raises(ConfigError, match="no variant 'x9'"):
        parse_methods([f"{TOY}|{TOY}:x9"])


def _bench(cohort, out):
    return Benchmark(cohort.root, [TOY, f"{TOY}|{TOY}:x3"], sites=["BRCA"], seeds=[0, 1], out=out,
                     overrides=["train.epochs=2", "train.warmup_epochs=0", "train.progress_bar=false"], ood=False)


def _final_dir(bench, member, unit_name):
    spec = next(m for s in bench.specs for m in s.members if m.spec == member)
    unit = next(u for u in bench.units if u.name == unit_name)
    return next(r.run_dir for r in bench.plan(spec, unit, None, bench.sites) if r.final)


def test_the_row_carries_the_member_chosen_on_validation_and_follows_its_score(small_cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = _bench(small_cohort, tmp_path / "b")
        assert [(m.spec, u.name) for m, u, _ in bench.training_cells()] == [
            (TOY, "seed0"), (TOY, "seed1"), (f"{TOY}:x3", "seed0"), (f"{TOY}:x3", "seed1")]
        bench.run_in_domain()
        bench.write()
    label = "Toy (chosen on validation: default / scale 3)"
    res = pd.read_csv(tmp_path / "b" / "results.csv")
    choices = pd.read_csv(tmp_path / "b" / "choices.csv")
    assert set(choices["member"]) == {TOY, f"{TOY}:x3"} and len(choices) == 4   # 2 units x 2 members
    for unit, g in choices.groupby("unit"):
        assert g["chosen"].sum() == 1
        ranked = g.sort_values("val_score", ascending=False, kind="stable")
        chosen = g[g["chosen"]].iloc[0]
        assert chosen["val_score"] == ranked["val_score"].iloc[0]
        row = res[(res.method == label) & (res.unit == unit)].iloc[0]
        member_dir = _final_dir(bench, chosen["member"], unit)
        assert row["run_dir"] == str(member_dir)
        test = json.loads((member_dir / "metrics.json").read_text())["BRCA"]["c_index"]
        assert math.isclose(row["value"], test)

    # only the validation score decides: raise the loser's recorded score in one unit and the row follows
    first = choices[choices.unit == "seed0"]
    loser = first[~first["chosen"]].iloc[0]["member"]
    loser_dir = _final_dir(bench, loser, "seed0")
    run = json.loads((loser_dir / "run.json").read_text())
    run["best_score"] = 2.0
    (loser_dir / "run.json").write_text(json.dumps(run))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = _bench(small_cohort, tmp_path / "b")
        again.run_in_domain()
        again.write()
    res2 = pd.read_csv(tmp_path / "b" / "results.csv")
    row = res2[(res2.method == label) & (res2.unit == "seed0")].iloc[0]
    assert row["run_dir"] == str(loser_dir)
    other = res2[(res2.method == label) & (res2.unit == "seed1")].iloc[0]
    assert other["run_dir"] == res[(res.method == label) & (res.unit == "seed1")].iloc[0]["run_dir"]


def test_changing_test_outcomes_does_not_change_the_choice(small_cohort, tmp_path):
    """The choice reads no test number: rewriting every member's test metrics leaves it as it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = _bench(small_cohort, tmp_path / "b")
        bench.run_in_domain()
        before = [dict(c) for c in bench.choices]
        for path in (tmp_path / "b" / "runs").rglob("metrics.json"):
            m = json.loads(path.read_text())
            m["BRCA"]["c_index"] = 1.0 - m["BRCA"]["c_index"]
            path.write_text(json.dumps(m))
        again = _bench(small_cohort, tmp_path / "b")
        again.run_in_domain()
    assert again.choices == before
