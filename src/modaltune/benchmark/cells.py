"""The cells of a benchmark: which method, which evaluation unit (fold and seed), which task.

A *method spec* is a registered name (``abmil``), ``name:pan`` for one model pooled over every
site (``modaltune:pan`` is the paper's "ModalTune Pan-Cancer"; site-aware label heads make it valid
for label-trained methods too), or ``name:variant`` for one of the method's named ablations
(:attr:`Method.variants`, e.g. ``dmsf_teacher:no_cgc``): its config overrides apply to every stage
of the cell, whose runs then get directories of their own (never shared with the plain method);
``a|b|...`` is one row whose numbers come, per unit, from the member chosen on validation
(:class:`Selection`). A *unit* is one (fold, seed): with ``--folds K`` every fold of a
k-fold split (one split seed for all folds, so folds pair across methods) times every seed; without
folds, the seed's holdout split. A *task* is one value of ``model.task`` for methods trained one task
per run (``Method.task_runs``), or one multi-task run.

Display name, family and its position in the tables come from the method class, so a new family
needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..methods.base import Method, Stage
from ..registry import METHODS, load_builtin

__all__ = ["MethodSpec", "Selection", "Unit", "parse_methods", "units", "TASK_METRIC", "TASK_METRICS", "cell_dir"]

TASK_METRIC = {"subtype": "balanced_accuracy", "survival": "c_index"}
#: every metric a run of a task may report (the tables show those the benchmark asks for)
TASK_METRICS = {"subtype": ("balanced_accuracy", "auc", "accuracy", "sensitivity", "specificity", "f1"),
                "survival": ("c_index",)}


@dataclass(frozen=True)
class MethodSpec:
    """One method of a benchmark (``name``, ``name:pan`` or ``name:variant``)."""

    spec: str
    name: str
    pan: bool
    variant: str | None = None

    @property
    def overrides(self) -> dict:
        """The variant's config overrides (empty for the plain method)."""
        return dict(self.cls.variants[self.variant][1]) if self.variant else {}

    @property
    def cls(self) -> type[Method]:
        """The registered class."""
        return METHODS.get(self.name)

    @property
    def slug(self) -> str:
        """Directory name of the spec's runs."""
        return self.spec.replace(":", "_")

    @property
    def label(self) -> str:
        """Row name in the tables."""
        if self.variant:
            return f"{self.cls.label()} ({self.cls.variants[self.variant][0]})"
        return f"{self.cls.label()} pan-cancer" if self.pan else self.cls.label()

    @property
    def family(self) -> str:
        """Family in the tables."""
        return f"{self.cls.family} pan-cancer" if self.pan else self.cls.family

    @property
    def family_order(self) -> int:
        """Position of the family in the tables."""
        return int(self.cls.family_order) + (1 if self.pan else 0)

    def tasks(self) -> list[str | None]:
        """``model.task`` of each run of a unit (``[None]``: one multi-task run)."""
        runs = tuple(getattr(self.cls, "task_runs", ()) or ())
        return list(runs) if runs else [None]

    def metrics(self, task: str | None) -> list[str]:
        """The metrics a run of ``task`` (or of every task of a multi-task run) may report."""
        tasks = [task] if task is not None else [t for t in self.cls.tasks if t in TASK_METRICS]
        return [m for t in tasks for m in TASK_METRICS[t]]

    @property
    def members(self) -> tuple[MethodSpec, ...]:
        """The specs whose runs this row needs (itself; see :class:`Selection`)."""
        return (self,)


@dataclass(frozen=True)
class Selection:
    """``a|b|...``: one table row whose numbers, in each unit and task, are those of the member spec
    with the best validation score (``run.json``'s ``best_score`` of its final runs,
    :func:`modaltune.benchmark.selection.choose`). A hyperparameter, e.g. MICE's contrastive weight
    (``mice|mice:no_contrastive``), is then chosen per fold on validation patients only; every member
    is trained in its own run directories (shared with a member listed on its own). Members must train
    the same tasks; ties go to the first member.
    """

    spec: str
    members: tuple[MethodSpec, ...]

    def __post_init__(self):
        if len(self.members) < 2 or len({m.spec for m in self.members}) < len(self.members):
            raise ConfigError(f"method spec '{self.spec}': a choice needs two or more different members "
                              f"(e.g. 'mice|mice:no_contrastive')")
        if len({tuple(m.tasks()) for m in self.members}) > 1:
            raise ConfigError(f"method spec '{self.spec}': its members train different tasks "
                              f"({', '.join(f'{m.spec}: {m.tasks()}' for m in self.members)}); choose among "
                              f"methods of the same tasks")

    @property
    def first(self) -> MethodSpec:
        """The first member (its name, class and family stand for the row)."""
        return self.members[0]

    name = property(lambda self: self.first.name, doc="The first member's method name.")
    pan = property(lambda self: self.first.pan, doc="Whether the first member is pooled over sites.")
    variant = None
    cls = property(lambda self: self.first.cls, doc="The first member's class.")
    family = property(lambda self: self.first.family, doc="Family in the tables (the first member's).")
    family_order = property(lambda self: self.first.family_order, doc="Position of the family.")

    @property
    def label(self) -> str:
        """Row name: ``MICE (chosen on validation: default / no contrastive term)``."""
        same = len({(m.name, m.pan) for m in self.members}) == 1
        parts = [(m.cls.variants[m.variant][0] if m.variant else "default") if same else m.label
                 for m in self.members]
        if not same:
            return f"chosen on validation: {' / '.join(parts)}"
        return f"{self.first.cls.label()}{' pan-cancer' if self.pan else ''} (chosen on validation: {' / '.join(parts)})"

    def tasks(self) -> list[str | None]:
        """The members' task runs."""
        return self.first.tasks()

    def metrics(self, task: str | None) -> list[str]:
        """The metrics of ``task`` (the first member's)."""
        return self.first.metrics(task)


def parse_methods(methods: list[str]) -> list[MethodSpec | Selection]:
    """Parse ``--methods`` (unknown names raise a ConfigError listing the known ones; ``a|b`` is a
    :class:`Selection`)."""
    load_builtin()
    specs: list = []
    for m in methods:
        if "|" in m:
            specs.append(Selection(m, tuple(parse_methods([p.strip() for p in m.split("|") if p.strip()]))))
            continue
        name, _, flag = m.partition(":")
        if name not in METHODS:
            METHODS.get(name)   # raises the ConfigError listing known methods
        variants = METHODS.get(name).variants
        if flag not in ("", "pan") and flag not in variants:
            known = ", ".join([":pan", *(f":{v}" for v in variants)])
            raise ConfigError(f"method spec '{m}': '{name}' has no variant '{flag}'; known suffixes: {known}")
        specs.append(MethodSpec(m, name, flag == "pan", flag if flag not in ("", "pan") else None))
    return specs


@dataclass(frozen=True)
class Unit:
    """One evaluation unit: a fold (or None for a holdout split), a seed, and the fraction of each
    training part used (data-efficiency studies; validation and test parts are unchanged)."""

    fold: int | None
    seed: int
    fraction: float = 1.0

    @property
    def name(self) -> str:
        """Directory name (``seed0``, ``fold2_seed0``, ``frac25_fold2_seed0``)."""
        base = f"seed{self.seed}" if self.fold is None else f"fold{self.fold}_seed{self.seed}"
        return base if self.fraction >= 1.0 else f"frac{round(self.fraction * 100):g}_{base}"

    def data(self, n_folds: int | None, split_seed: int) -> dict:
        """The ``data`` settings of this unit's split."""
        out: dict = {} if self.fraction >= 1.0 else {"train_fraction": float(self.fraction)}
        if self.fold is None:
            return out
        return {**out, "split": "kfold", "n_folds": int(n_folds), "fold": int(self.fold),
                "split_seed": int(split_seed)}


def units(seeds, n_folds: int | None, fraction: float = 1.0) -> list[Unit]:
    """Every (fold, seed) of a benchmark at one training fraction, folds outermost."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"training fractions must be in (0, 1], got {fraction}")
    if n_folds:
        if int(n_folds) < 2:
            raise ConfigError(f"--folds needs at least 2 folds, got {n_folds}")
        return [Unit(f, int(s), float(fraction)) for f in range(int(n_folds)) for s in seeds]
    return [Unit(None, int(s), float(fraction)) for s in seeds]


def cell_dir(out: Path, spec: MethodSpec, stage: Stage, where: str, unit: Unit, task: str | None, final: bool,
             own_settings: bool) -> Path:
    """Run directory of one stage run of a cell.

    The last stage's runs are the spec's own (``runs/<spec>/<where>/<unit>/<task>``). An earlier
    stage without settings of its own is exactly the stage method's stand-alone run, so it shares
    that method's directory (trained once); with settings of its own, or in a variant's cell, it gets
    ``<spec>@<stage>``.
    """
    if final:
        top = spec.slug
    elif own_settings or stage.method == spec.name or spec.variant:
        top = f"{spec.slug}@{stage.name}"
    else:
        top = stage.method
    return Path(out) / "runs" / top / where / unit.name / (task or "multi")
