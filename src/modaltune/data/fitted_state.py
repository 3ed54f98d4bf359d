"""Quantities fitted on the training patients only, saved with every run (``fitted_state.json``).

:class:`FittedState` holds the omics scaler and the survival bin edges. It is fitted on the
**training patients only** (``FittedState.fit(cohort, split["train"])``), so validation, test and
out-of-distribution patients never influence it. A run chained from another run
(``train.init_from``) inherits its parent's state unchanged; :meth:`FittedState.extend` adds bin
edges for sites the parent never saw (an external cohort), fitted on the child's training patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError, warn_input
from .labels import fit_survival_bins

__all__ = ["FittedState", "POOLED"]

POOLED = "pooled"  # key of the pooled (all training patients) bin edges in FittedState.bin_edges


@dataclass
class FittedState:
    """Quantities fitted on the training patients only.

    Attributes:
        genes: gene order of the omics vector.
        omics_mean, omics_std: per-gene scaler from training patients with omics (std 0 -> 1);
            None when the cohort has no expression.
        bin_edges: survival bin edges per site, plus ``POOLED`` over all training patients. Every
            site of the cohort has an entry: its own edges when it has at least ``n_bins`` training
            patients with survival, else the pooled edges (``bin_source`` says which).
        bin_source: site -> "site" | "pooled".
        n_bins: number of survival bins.
        train_ids: the training case ids the state was fitted on.
        scalers: per-dimension ``(mean, std)`` of declared inputs (``bag``: patch features over every
            training patch; ``report_embedding``: training reports), applied as
            ``(x - mean) / (std + 1e-10)`` by the dataset (MICE's normalisation, fitted here on
            training patients instead of the whole cohort).
    """

    genes: list[str] = field(default_factory=list)
    omics_mean: np.ndarray | None = None
    omics_std: np.ndarray | None = None
    bin_edges: dict[str, np.ndarray] = field(default_factory=dict)
    bin_source: dict[str, str] = field(default_factory=dict)
    n_bins: int = 4
    train_ids: list[str] = field(default_factory=list)
    scalers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, cohort, train_ids: Sequence[str], n_bins: int = 4) -> "FittedState":
        """Fit the omics scaler and survival bins on ``train_ids`` only.

        Raises:
            InputError: ``train_ids`` contains cases that are not in the cohort.
        """
        man = cohort.manifest
        ids = [str(c) for c in train_ids]
        unknown = [c for c in ids if c not in man.index]
        if unknown:
            raise InputError(f"training ids not in the cohort: {unknown[:10]}", file=getattr(cohort, "root", None),
                             fix="use a split made for this cohort")
        train = man.loc[ids]
        mean, std = _fit_scaler(cohort, train)
        edges, source = _fit_bins(man, train, int(n_bins))
        return cls(genes=list(cohort.genes), omics_mean=mean, omics_std=std, bin_edges=edges, bin_source=source,
                   n_bins=int(n_bins), train_ids=sorted(ids))

    def edges_for(self, site: str) -> np.ndarray | None:
        """Bin edges of a site (pooled edges for a site unseen at fitting time; None if none)."""
        return self.bin_edges.get(site, self.bin_edges.get(POOLED))

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std with the train-fitted scaler."""
        if self.omics_mean is None:
            return np.asarray(x, dtype=np.float32)
        return ((np.asarray(x, dtype=np.float32) - self.omics_mean) / self.omics_std).astype(np.float32)

    def fit_scaler(self, name: str, rows: Iterable[np.ndarray]) -> None:
        """Fit the ``(mean, std)`` of ``name`` from training rows (arrays ``[n, D]`` or ``[D]``), streaming."""
        total = total_sq = None
        count = 0
        for x in rows:
            x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
            if not len(x):
                continue
            total = x.sum(0) if total is None else total + x.sum(0)
            total_sq = (x * x).sum(0) if total_sq is None else total_sq + (x * x).sum(0)
            count += len(x)
        if not count:
            warn_input(f"no training patient has '{name}': it is not standardised",
                       fix="check that training patients have this modality")
            return
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        self.scalers[name] = (mean.astype(np.float32), std.astype(np.float32))

    def scale(self, name: str, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / (std + 1e-10)`` with the fitted scaler of ``name`` (unchanged without one)."""
        if name not in self.scalers:
            return x
        mean, std = self.scalers[name]
        return ((np.asarray(x, dtype=np.float32) - mean) / (std + 1e-10)).astype(np.float32)

    def extend(self, cohort, train_ids: Sequence[str]) -> "FittedState":
        """A copy with bin edges for the cohort's sites that have none, fitted on ``train_ids``.

        Used when a run chained from a parent trains on sites the parent never saw (an external
        cohort): the parent's scaler and edges are kept, the new sites get their own edges.
        """
        man = cohort.manifest
        ids = [str(c) for c in train_ids if str(c) in man.index]
        new_edges, new_source = _fit_bins(man, man.loc[ids], self.n_bins)
        edges, source = dict(self.bin_edges), dict(self.bin_source)
        for site, e in new_edges.items():
            if site != POOLED and site not in edges:
                edges[site], source[site] = e, f"{new_source.get(site, 'site')} (chained run)"
        return FittedState(genes=list(self.genes), omics_mean=self.omics_mean, omics_std=self.omics_std,
                           bin_edges=edges, bin_source=source, n_bins=self.n_bins, train_ids=list(self.train_ids),
                           scalers=dict(self.scalers))

    def same_as(self, other: "FittedState") -> bool:
        """True when both states hold the same genes, scaler and bin edges (train ids ignored)."""
        a, b = self.to_dict(), other.to_dict()
        return all(a[k] == b[k] for k in ("genes", "omics_mean", "omics_std", "bin_edges", "n_bins", "scalers"))

    def to_dict(self) -> dict:
        """JSON-serialisable form (``inf`` edges are written as the string "inf")."""
        return {
            "genes": list(self.genes),
            "omics_mean": None if self.omics_mean is None else self.omics_mean.astype(float).tolist(),
            "omics_std": None if self.omics_std is None else self.omics_std.astype(float).tolist(),
            "bin_edges": {k: [_enc(x) for x in np.asarray(v, dtype=float)] for k, v in self.bin_edges.items()},
            "bin_source": dict(self.bin_source),
            "n_bins": self.n_bins,
            "train_ids": list(self.train_ids),
            "scalers": {k: [m.astype(float).tolist(), sd.astype(float).tolist()] for k, (m, sd) in self.scalers.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FittedState":
        """Inverse of :meth:`to_dict`."""
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(genes=list(d.get("genes", [])), omics_mean=arr(d.get("omics_mean")),
                   omics_std=arr(d.get("omics_std")),
                   bin_edges={k: np.asarray([float(x) for x in v], dtype=float)
                              for k, v in (d.get("bin_edges") or {}).items()},
                   bin_source=dict(d.get("bin_source") or {}), n_bins=int(d.get("n_bins", 4)),
                   train_ids=list(d.get("train_ids", [])),
                   scalers={k: (np.asarray(v[0], dtype=np.float32), np.asarray(v[1], dtype=np.float32))
                            for k, v in (d.get("scalers") or {}).items()})


def _enc(x: float):
    return "inf" if np.isposinf(x) else float(x)


def _fit_scaler(cohort, train) -> tuple[np.ndarray | None, np.ndarray | None]:
    if cohort.expression is None:
        return None, None
    ids = [c for c in train.index[train["has_omics"].to_numpy(bool)] if c in cohort.expression.index]
    g = len(cohort.genes)
    if not ids:
        warn_input("no training patient has omics; the omics scaler is the identity (mean 0, std 1)",
                   file=getattr(cohort, "root", None), fix="check the split and the expression matrix")
        return np.zeros(g, np.float32), np.ones(g, np.float32)
    x = cohort.expression.loc[ids, list(cohort.genes)].to_numpy(dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)  # zero-std guard (constant genes)
    return mean.astype(np.float32), std.astype(np.float32)


def _fit_bins(man, train, n_bins: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    surv = train[train["has_survival"].to_numpy(bool)]
    edges: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    if len(surv):
        edges[POOLED] = np.asarray(fit_survival_bins(surv["survival_months"].to_numpy(float),
                                                     surv["event"].to_numpy(float), n_bins=n_bins), dtype=float)
    for site in sorted(man["site"].unique()):
        s = surv[surv["site"] == site]
        if len(s) >= n_bins:
            edges[site] = np.asarray(fit_survival_bins(s["survival_months"].to_numpy(float),
                                                       s["event"].to_numpy(float), n_bins=n_bins), dtype=float)
            source[site] = "site"
        elif POOLED in edges:
            edges[site] = edges[POOLED]
            source[site] = "pooled"
    return edges, source
