"""Linear probes on frozen patient embeddings (ModalTune Sec. 4.3, Table 6).

* Subtype: standardisation (fitted on the training patients) + logistic regression, solver
  ``liblinear``, 200 iterations. liblinear is binary; with three or more classes it is wrapped in a
  one-vs-rest classifier, which is what scikit-learn's ``LogisticRegression(solver="liblinear")``
  did implicitly when the paper was written. Patients with label ``-1`` (rare set or unknown) are
  excluded from fitting and scoring.
* Survival: a ridge-penalised Cox proportional-hazards model with the paper's penalizer 0.1, in
  the scaling of ``lifelines.CoxPHFitter(penalizer=0.1)``: minimise
  ``-loglik(beta) + n * 0.1 * 0.5 * ||beta||^2`` over covariates standardised on the training
  patients (mean, std with ddof 1, as lifelines does). We solve it with our own Newton method
  (Breslow ties, backtracking line search) because lifelines' solver is slow and fails to converge
  on 256-d embeddings with ~50 patients (measured: 7 s and a ConvergenceWarning), while the
  penalised objective itself is strictly convex. On tie-free data the coefficients equal lifelines'
  (checked in the tests). No dimensionality reduction is applied.

Probes are fitted per site on that site's training patients (also for pan-cancer models).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["SubtypeProbe", "PenalizedCox", "fit_subtype_probe", "fit_survival_probe", "check_logreg"]


@dataclass
class SubtypeProbe:
    """A fitted subtype probe; ``constant`` is set when training had a single class."""

    model: Any = None
    constant: int | None = None
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class index per row (the constant class, or -1, when the probe could not be fitted)."""
        X = np.asarray(X, dtype=np.float64)
        if self.model is None:
            return np.full(len(X), -1 if self.constant is None else self.constant, dtype=np.int64)
        return np.asarray(self.model.predict(X), dtype=np.int64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities per row (one column when the probe could not be fitted)."""
        X = np.asarray(X, dtype=np.float64)
        if self.model is None:
            return np.ones((len(X), 1))
        return np.asarray(self.model.predict_proba(X))


def check_logreg(C, class_weight) -> None:
    """Raise a ConfigError for an invalid ``eval.logreg_c`` or ``eval.logreg_class_weight``."""
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not np.isfinite(C) or C <= 0:
        raise ConfigError(f"eval.logreg_c must be a positive number, got {C!r}")
    if class_weight not in (None, "balanced"):
        raise ConfigError(f"eval.logreg_class_weight must be null or 'balanced', got {class_weight!r}")


def fit_subtype_probe(X_train, y_train, *, max_iter: int = 200, solver: str = "liblinear",
                      seed: int = 0, C: float = 1.0, class_weight: str | None = None) -> SubtypeProbe:
    """Standardise + logistic regression on the training patients with a label >= 0.

    ``C`` (inverse L2 strength) and ``class_weight`` default to the paper's scikit-learn defaults;
    with ~100 training patients and a 128-256-d embedding the default probe fits the training set
    perfectly, and a smaller ``C`` or ``class_weight="balanced"`` can help. They are set per run
    (``modaltune train ... --set eval.logreg_c=0.1``) and apply to the validation probes that choose
    the epoch as well as to the final ones; compare settings on validation metrics, never on test.
    """
    check_logreg(C, class_weight)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train).reshape(-1).astype(np.int64)
    keep = y >= 0
    X, y = X[keep], y[keep]
    classes = np.unique(y)
    if classes.size == 0:
        return SubtypeProbe(constant=None, classes=classes)
    if classes.size == 1:
        return SubtypeProbe(constant=int(classes[0]), classes=classes)
    clf = LogisticRegression(solver=solver, max_iter=int(max_iter), random_state=seed, C=float(C),
                             class_weight=class_weight)
    if classes.size > 2 and solver == "liblinear":
        clf = OneVsRestClassifier(clf)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", clf)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    return SubtypeProbe(model=pipe, classes=classes)


# ----------------------------------------------------------------------------------------------
# survival probe


class PenalizedCox:
    """Ridge-penalised Cox PH model, lifelines' objective and scaling (see the module docstring).

    Args:
        penalizer: ``lambda`` of ``-loglik + n * lambda / 2 * ||beta||^2`` (paper: 0.1).
        max_iter: Newton iterations.
        tol: stop when the relative decrease of the objective is below ``tol``.
    """

    def __init__(self, penalizer: float = 0.1, max_iter: int = 100, tol: float = 1e-10):
        self.penalizer, self.max_iter, self.tol = float(penalizer), int(max_iter), float(tol)
        self.mean_ = self.std_ = self.coef_ = None
        self.n_iter_ = 0
        self.converged_ = False

    # -- objective ---------------------------------------------------------------------------
    @staticmethod
    def _prepare(time: np.ndarray, event: np.ndarray):
        order = np.argsort(-time, kind="stable")           # descending time: risk sets are prefixes
        ts = time[order]
        neg = -ts
        last = np.searchsorted(neg, neg, side="right") - 1  # last index of each tie group
        first = np.searchsorted(neg, neg, side="left")      # first index of each tie group
        return order, last, first

    def _objective(self, beta, X, ev, last, first, need_derivatives: bool):
        n = X.shape[0]
        eta = X @ beta
        m = eta.max()
        w = np.exp(eta - m)
        s0 = np.cumsum(w)[last]
        pen = 0.5 * n * self.penalizer * float(beta @ beta)
        loglik = float(np.sum((eta - m - np.log(s0))[ev]))
        f = -loglik + pen
        if not need_derivatives:
            return f, None, None
        s1 = np.cumsum(w[:, None] * X, axis=0)[last]
        mean_x = s1[ev] / s0[ev, None]
        grad = -(X[ev].sum(0) - mean_x.sum(0)) + n * self.penalizer * beta
        inv = np.where(ev, 1.0 / s0, 0.0)
        c = np.cumsum(inv[::-1])[::-1][first]               # sum over events i with t_i <= t_j of 1/S0_i
        hess = (X * (w * c)[:, None]).T @ X - mean_x.T @ mean_x
        hess[np.diag_indices_from(hess)] += n * self.penalizer
        return f, grad, hess

    # -- API -----------------------------------------------------------------------------------
    def fit(self, X, time, event) -> "PenalizedCox":
        """Fit the penalised Cox model on ``X`` [n, D] with survival ``time`` and ``event``."""
        X = np.asarray(X, dtype=np.float64)
        time = np.asarray(time, dtype=np.float64).reshape(-1)
        event = np.asarray(event).reshape(-1).astype(bool)
        self.mean_ = X.mean(0)
        std = X.std(0, ddof=1) if len(X) > 1 else np.ones(X.shape[1])
        self.std_ = np.where(std > 1e-8, std, 1.0)
        Z = (X - self.mean_) / self.std_
        order, last, first = self._prepare(time, event)
        Z, ev = Z[order], event[order]
        beta = np.zeros(Z.shape[1])
        f, g, h = self._objective(beta, Z, ev, last, first, True)
        for it in range(1, self.max_iter + 1):
            self.n_iter_ = it
            try:
                step = np.linalg.solve(h, g)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(h, g, rcond=None)[0]
            t = 1.0
            while True:
                cand = beta - t * step
                f_new = self._objective(cand, Z, ev, last, first, False)[0]
                if np.isfinite(f_new) and f_new <= f + 1e-4 * t * float(g @ -step) + 1e-12 * abs(f):
                    break
                t *= 0.5
                if t < 1e-10:
                    cand, f_new = beta, f
                    break
            done = abs(f - f_new) <= self.tol * (1.0 + abs(f))
            beta = cand
            f, g, h = self._objective(beta, Z, ev, last, first, True)
            if done or t < 1e-10:
                self.converged_ = bool(done)
                break
        self.coef_ = beta
        return self

    def predict(self, X) -> np.ndarray:
        """Log partial hazard (risk; higher = shorter survival)."""
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.std_
        return Z @ self.coef_


def fit_survival_probe(X_train, t, e, penalizer: float = 0.1) -> PenalizedCox:
    """Fit the ridge Cox probe on training patients with survival data (``t`` months, ``e`` events)."""
    X = np.asarray(X_train, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    e = np.asarray(e).reshape(-1).astype(bool)
    keep = np.isfinite(t)
    return PenalizedCox(penalizer=penalizer).fit(X[keep], t[keep], e[keep])
