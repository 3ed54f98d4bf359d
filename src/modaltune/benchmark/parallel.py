"""Training a benchmark's independent cells in parallel processes (``--jobs``).

Cells that share a run directory (a chain's shared stage, e.g. the teacher that a student and a
distilled student both start from) form one group, trained in order by one process; groups are
independent. Every run seeds itself, so the results equal those of one process. The machine's
cores are divided between the jobs (``MODALTUNE_CORES``, read by ``train.threads: auto``), so that
jobs never oversubscribe the CPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..chains import run_chain
from ..errors import ConfigError
from ..pipeline import resolve_split
from .cells import Unit

if TYPE_CHECKING:
    from .runner import Benchmark

log = logging.getLogger(__name__)

__all__ = ["train_parallel"]


def train_parallel(bench: Benchmark, jobs: int) -> None:
    """Train and evaluate ``bench``'s in-domain cells in ``jobs`` spawned processes.

    Splits are written here first, so parallel jobs never race to create one; afterwards
    :meth:`Benchmark.run_in_domain` only reads the finished runs.

    Raises:
        ConfigError: ``jobs`` below 1.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..training.threads import available_cores

    if int(jobs) < 1:
        raise ConfigError(f"--jobs must be 1 or more, not {jobs}")
    cells = bench.training_cells()
    if int(jobs) == 1 or len(cells) <= 1:
        return
    plans = [bench.plan(spec, unit, task, bench.sites) for spec, unit, task in cells]
    for plan in plans:
        for run in plan:
            resolve_split(run.cfg, bench.cohort)
    groups = _connected([{str(r.run_dir) for r in plan} for plan in plans])
    jobs = min(int(jobs), len(groups))
    cores = max(1, available_cores() // jobs)
    log.info("benchmark: %d cells in %d independent group(s), %d parallel jobs of %d core(s) each",
             len(cells), len(groups), jobs, cores)
    work = [[(cells[i][0].spec, cells[i][1], cells[i][2]) for i in group] for group in groups]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_job, initargs=(cores,)) as pool:
        for done in pool.map(_train_cells, [bench.kwargs] * len(work), work):
            log.info("benchmark: %d cell(s) done", done)


def _connected(sets: list[set[str]]) -> list[list[int]]:
    """Indices of ``sets`` grouped so that sets sharing an element are in one group (order kept)."""
    parent = list(range(len(sets)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, items in enumerate(sets):
        for item in items:
            if item in owner:
                parent[find(i)] = find(owner[item])
            else:
                owner[item] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(sets)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _init_job(cores: int) -> None:
    """A parallel benchmark job: its share of the cores (``train.threads: auto`` reads it), messages."""
    import os

    from ..logs import setup_logging

    os.environ["MODALTUNE_CORES"] = str(int(cores))
    setup_logging(tag=f"[job {os.getpid()}]")


def _train_cells(kwargs: dict, cells: list[tuple[str, Unit, str | None]]) -> int:
    """Train and evaluate ``cells`` (member spec, unit, task) in order, in this process."""
    from .runner import Benchmark

    bench = Benchmark(**kwargs)
    specs = {m.spec: m for s in bench.specs for m in s.members}
    for spec, unit, task in cells:
        log.info("benchmark cell %s %s %s", spec, unit.name, task or "multi")
        run_chain(bench.plan(specs[spec], unit, task, bench.sites), bench.cohort, evaluate=True)
    return len(cells)
