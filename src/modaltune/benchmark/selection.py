"""Choosing among method variants on validation patients, per unit (``--methods 'a|b'``).

A hyperparameter that the paper fixed but that does not transfer to a cohort (MICE's contrastive
weight, a gene fraction, a loss weight) must not be chosen on the test folds. A
:class:`~modaltune.benchmark.cells.Selection` trains every member in every unit (fold, seed) and
reports, per unit and task, the test numbers of the member whose final runs have the best
validation score: the ``best_score`` that ``run.json`` records for the selected epoch (for a pooled
per-site stage the pooled score, :mod:`modaltune.runs.pooled`), averaged over the unit's final runs
(one per site for per-site methods). Only validation patients are used; the test split chooses
nothing. Ties go to the earlier member, so list the paper's setting first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, InputError
from ..runs import layout
from ..utils import read_json

__all__ = ["validation_score", "choose"]


def validation_score(run_dirs: Sequence[str | Path]) -> tuple[str, float]:
    """The selection metric of finished runs and their mean validation score at the chosen epochs.

    Raises:
        InputError: a run has not finished.
        ConfigError: the runs chose epochs by ``last`` (no validation score) or by different metrics.
    """
    metrics, scores = set(), []
    for rd in map(Path, run_dirs):
        if not layout.run_finished(rd):
            raise InputError("a member of a choice on validation has not finished training", file=rd / layout.RUN,
                             fix="let the benchmark train it (it resumes) before choosing")
        run = read_json(rd / layout.RUN)
        metrics.add(str(run.get("select_metric")))
        score = run.get("best_score")
        if score is not None and not math.isnan(float(score)):
            scores.append(float(score))
    if metrics & {"last", "None"}:
        raise ConfigError(f"a choice on validation needs validation scores, but {run_dirs[0]} chose its epoch by "
                          f"'{sorted(metrics)[0]}'; set train.select_metric (e.g. val_c_index, val_auc, val_mean)")
    if len(metrics) > 1:
        raise ConfigError(f"the runs of one choice were selected on different metrics {sorted(metrics)}; "
                          f"give every member the same train.select_metric")
    return metrics.pop(), (sum(scores) / len(scores) if scores else float("nan"))


def choose(candidates: Sequence[tuple[str, Sequence[str | Path]]]) -> tuple[int, list[dict]]:
    """Index of the candidate with the best validation score, and one record per candidate.

    Args:
        candidates: ``(member spec, its final run directories in this unit and task)`` in order.

    Returns:
        ``(index, rows)``; ``rows`` hold ``member, select_metric, val_score, chosen``. Higher is
        better except for ``val_loss``; a score that is not a number never wins; ties keep the
        earlier member.

    Raises:
        ConfigError: the members chose their epochs on different metrics.
    """
    scored = [(spec, *validation_score(dirs)) for spec, dirs in candidates]
    metrics = {m for _, m, _ in scored}
    if len(metrics) > 1:
        raise ConfigError(f"the members of a choice on validation were selected on different metrics: "
                          f"{', '.join(f'{s}: {m}' for s, m, _ in scored)}; give them one train.select_metric")
    lower = metrics.pop() == "val_loss"
    best = 0
    for i, (_, _, s) in enumerate(scored):
        b = scored[best][2]
        if not math.isnan(s) and (math.isnan(b) or (s < b if lower else s > b)):
            best = i
    rows = [{"member": spec, "select_metric": m, "val_score": s, "chosen": i == best}
            for i, (spec, m, s) in enumerate(scored)]
    return best, rows
