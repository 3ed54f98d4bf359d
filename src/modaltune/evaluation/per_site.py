"""Per-site test and validation metrics of both evaluation protocols, in one place.

* ``probe`` (ModalTune Sec. 4.3): probes (:mod:`modaltune.evaluation.probes`) are fitted per site
  on the training patients' embeddings and scored on the evaluation patients
  (:func:`probe_metrics`), also for pan-cancer models.
* ``predict``: a label-trained method's own predictions (:func:`label_metrics`).

Both give ``{site: {"balanced_accuracy", "c_index", "ipcw_c_index", "n", "n_events", "n_train",
"n_subtype"[, "notes"]}}``; :func:`add_overall` adds the mean over sites (the papers' Overall column).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .classification import classification_summary
from .metrics import balanced_accuracy, c_index, ipcw_c_index_detail
from .probe_penalty import PAPER_PENALIZER, choose_penalizer, penalizer_setting
from .probes import check_logreg, fit_subtype_probe, fit_survival_probe

__all__ = ["METRIC_KEYS", "SITE_METRICS", "subtype_labels", "survival_arrays", "probe_options", "probe_metrics",
           "label_metrics", "predictions_frame", "site_means", "add_overall", "nanmean"]

METRIC_KEYS = ("balanced_accuracy", "c_index", "ipcw_c_index", "n", "n_events")
#: classification metrics of the disentangled paper's tables (from the method's own probabilities)
CLASS_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
SITE_METRICS = ("balanced_accuracy", "c_index", "ipcw_c_index") + CLASS_METRICS


def subtype_labels(df: pd.DataFrame) -> np.ndarray:
    """Within-site class index per row, -1 for rare/unknown (``label`` or ``subtype_index``+``rare``)."""
    if "label" in df:
        return df["label"].fillna(-1).to_numpy().astype(np.int64)
    if "subtype_index" not in df:
        return np.full(len(df), -1, dtype=np.int64)
    y = pd.to_numeric(df["subtype_index"], errors="coerce").fillna(-1).to_numpy().astype(np.int64)
    if "rare" in df:
        rare = df["rare"].astype(str).str.lower().isin(("true", "1", "yes"))
        y = np.where(rare.to_numpy(), -1, y)
    return y


def survival_arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(months, event as bool, has_survival mask) per row."""
    t = pd.to_numeric(df.get("survival_months", pd.Series(np.nan, index=df.index)), errors="coerce").to_numpy(float)
    e = pd.to_numeric(df.get("event", pd.Series(0, index=df.index)), errors="coerce").fillna(0).to_numpy() > 0.5
    has = np.isfinite(t)
    if "has_survival" in df:
        has &= df["has_survival"].astype(str).str.lower().isin(("true", "1", "1.0", "yes")).to_numpy()
    return t, e, has


def _case_ids(df: pd.DataFrame) -> np.ndarray:
    if "case_id" in df.columns:
        return df["case_id"].astype(str).to_numpy()
    return df.index.astype(str).to_numpy()


# ----------------------------------------------------------------------------------------------
# per-site probing


def probe_options(cfg: Mapping | None) -> dict:
    """The probe settings of a run config's ``eval`` section, checked (a bad value is a ConfigError,
    raised by the training engine before the first epoch rather than at the first probe)."""
    ev = dict((cfg or {}).get("eval", {}) or {})
    penalizer, grid = penalizer_setting(ev)
    opts = {"max_iter": int(ev.get("logreg_max_iter", 200)), "solver": str(ev.get("logreg_solver", "liblinear")),
            "C": ev.get("logreg_c", 1.0), "class_weight": ev.get("logreg_class_weight"),
            "penalizer": penalizer, "penalizer_grid": grid, "seed": int((cfg or {}).get("seed", 0) or 0)}
    check_logreg(opts["C"], opts["class_weight"])
    return opts


def _probe_site(Xtr, dtr, Xev, dev, opts) -> tuple[dict, np.ndarray, np.ndarray]:
    notes: list[str] = []
    n_ev = len(dev)
    pred = np.full(n_ev, -1, dtype=np.int64)
    risk = np.full(n_ev, np.nan)
    y_tr, y_ev = subtype_labels(dtr), subtype_labels(dev)
    t_tr, e_tr, h_tr = survival_arrays(dtr)
    t_ev, e_ev, h_ev = survival_arrays(dev)
    bacc = float("nan")
    if len(np.unique(y_tr[y_tr >= 0])) >= 2:
        probe = fit_subtype_probe(Xtr, y_tr, max_iter=opts["max_iter"], solver=opts["solver"], seed=opts["seed"],
                                  C=opts["C"], class_weight=opts["class_weight"])
        pred = probe.predict(Xev) if n_ev else pred
        bacc = balanced_accuracy(y_ev, pred)
    else:
        notes.append("subtype probe not fitted: fewer than 2 classes among training patients")
    cidx = ipcw = float("nan")
    if h_tr.sum() >= 2 and e_tr[h_tr].any():
        cox = fit_survival_probe(Xtr[h_tr], t_tr[h_tr], e_tr[h_tr], penalizer=opts["penalizer"])
        if n_ev:
            risk = cox.predict(Xev)
        cidx = c_index(t_ev[h_ev], e_ev[h_ev], risk[h_ev])
        ipcw, why = ipcw_c_index_detail(t_tr[h_tr], e_tr[h_tr], t_ev[h_ev], e_ev[h_ev], risk[h_ev])
        if why:
            notes.append(f"ipcw_c_index: {why}")
    else:
        notes.append("survival probe not fitted: fewer than 2 training patients with survival or no event")
    out = {"balanced_accuracy": bacc, "c_index": cidx, "ipcw_c_index": ipcw, "n": int(n_ev),
           "n_events": int((e_ev & h_ev).sum()), "n_train": int(len(dtr)), "n_subtype": int((y_ev >= 0).sum())}
    if notes:
        out["notes"] = "; ".join(notes)
    return out, pred, risk


def probe_metrics(emb_train, emb_test, df_train, df_test, per_site: bool = True, *, cfg: Mapping | None = None,
                  return_predictions: bool = False, val: tuple | None = None):
    """Fit probes on the training embeddings and score the evaluation embeddings, per site.

    Args:
        emb_train, emb_test: ``[n, D]`` embeddings, rows aligned with ``df_train``/``df_test``.
        df_train, df_test: manifest-like frames with ``site``, ``subtype_index`` (+ ``rare``) or
            ``label``, ``survival_months``, ``event`` (and optionally ``has_survival``).
        per_site: fit and score each site separately (keys = sites); else one key ``"all"``.
        cfg: run config (``eval.logreg_max_iter``, ``eval.logreg_solver``, ``eval.cph_penalizer``, ``seed``).
        return_predictions: also return a DataFrame of evaluation predictions
            (``case_id, site, risk, pred_class, subtype, survival_months, event, has_survival``).
        val: ``(emb_val, df_val)``, the validation patients that choose the Cox penalty when
            ``eval.cph_penalizer`` is ``auto`` (:mod:`modaltune.evaluation.probe_penalty`); without
            them ``auto`` falls back to the paper's 0.1. Each site's metrics record ``cph_penalizer``.

    Returns:
        ``{site: {"balanced_accuracy", "c_index", "ipcw_c_index", "n", "n_events", "n_train",
        "n_subtype"[, "notes"]}}`` and, with ``return_predictions``, the predictions DataFrame.
    """
    Xtr = np.asarray(emb_train, dtype=np.float64).reshape(len(df_train), -1)
    Xev = np.asarray(emb_test, dtype=np.float64).reshape(len(df_test), -1)
    opts = probe_options(cfg)
    why = None
    if opts["penalizer"] == "auto":
        chosen = None
        if val is not None and len(val[1]):
            site_fn = (lambda d: d) if per_site else (lambda d: d.assign(site="all"))
            chosen, _ = choose_penalizer(Xtr, val[0], site_fn(df_train), site_fn(val[1]), opts["penalizer_grid"])
        if chosen is None:
            why = f"cph_penalizer auto: no validation patients with survival to choose on, paper's {PAPER_PENALIZER} used"
        opts = {**opts, "penalizer": PAPER_PENALIZER if chosen is None else chosen}
    site_tr = df_train["site"].astype(str).to_numpy() if per_site else np.full(len(df_train), "all")
    site_ev = df_test["site"].astype(str).to_numpy() if per_site else np.full(len(df_test), "all")
    metrics: dict[str, dict] = {}
    pred = np.full(len(df_test), -1, dtype=np.int64)
    risk = np.full(len(df_test), np.nan)
    for site in dict.fromkeys(site_ev):
        mtr, mev = site_tr == site, site_ev == site
        if not mtr.any():
            metrics[site] = {"balanced_accuracy": float("nan"), "c_index": float("nan"),
                             "ipcw_c_index": float("nan"), "n": int(mev.sum()), "n_events": 0, "n_train": 0,
                             "n_subtype": 0, "notes": "no training patients of this site: probes not fitted"}
            continue
        metrics[site], pred[mev], risk[mev] = _probe_site(Xtr[mtr], df_train[mtr], Xev[mev], df_test[mev], opts)
        metrics[site]["cph_penalizer"] = float(opts["penalizer"])
        if why:
            metrics[site]["notes"] = "; ".join(filter(None, [metrics[site].get("notes"), why]))
    if not return_predictions:
        return metrics
    return metrics, predictions_frame(df_test, pred, risk)


def predictions_frame(df: pd.DataFrame, pred_class, risk, case_ids=None) -> pd.DataFrame:
    """Per-patient predictions with the labels they are scored against (``predictions.csv``)."""
    t, e, has = survival_arrays(df)
    return pd.DataFrame({"case_id": _case_ids(df) if case_ids is None else np.asarray(case_ids, dtype=str),
                         "site": df["site"].astype(str).to_numpy(), "risk": np.asarray(risk, dtype=float),
                         "pred_class": np.asarray(pred_class, dtype=np.int64), "subtype": subtype_labels(df),
                         "survival_months": t, "event": e.astype(int), "has_survival": has})


def nanmean(values) -> float:
    """Mean of the finite values (NaN when there are none)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max())
    return z / z.sum()


def _class_metrics(y: np.ndarray, logits: list) -> dict[str, float]:
    """AUC / accuracy / sensitivity / specificity / F1 of one site (NaN when not computable)."""
    keep = [i for i, lg in enumerate(logits) if y[i] >= 0 and lg is not None and np.size(lg)]
    widths = {np.size(logits[i]) for i in keep}
    if len(keep) < 2 or len(widths) != 1 or widths.pop() < 2 or len(np.unique(y[keep])) < 2:
        return {k: float("nan") for k in CLASS_METRICS}
    prob = np.stack([_softmax(logits[i]) for i in keep])
    if int(y[keep].max()) >= prob.shape[1]:
        return {k: float("nan") for k in CLASS_METRICS}
    return classification_summary(y[keep], prob)


def label_metrics(df_eval: pd.DataFrame, pred_class: np.ndarray, risk: np.ndarray, df_train: pd.DataFrame,
                  logits: list | None = None) -> dict[str, dict]:
    """Per-site metrics of a label-trained method's own predictions (rows of ``df_eval``).

    With ``logits`` (one array per patient, the site's classes) the site also gets the macro
    classification metrics of :data:`CLASS_METRICS` from their softmax probabilities.
    """
    y = subtype_labels(df_eval)
    t, e, has = survival_arrays(df_eval)
    t_tr, e_tr, h_tr = survival_arrays(df_train)
    site_ev = df_eval["site"].astype(str).to_numpy()
    site_tr = df_train["site"].astype(str).to_numpy()
    risk = np.asarray(risk, dtype=float)
    pred_class = np.asarray(pred_class, dtype=np.int64)
    out: dict[str, dict] = {}
    for site in dict.fromkeys(site_ev):
        m = site_ev == site
        ms = m & has & np.isfinite(risk)
        tr = (site_tr == site) & h_tr
        bacc = balanced_accuracy(y[m], pred_class[m]) if (pred_class[m] >= 0).any() else float("nan")
        cidx = c_index(t[ms], e[ms], risk[ms]) if ms.any() else float("nan")
        ipcw, why = (ipcw_c_index_detail(t_tr[tr], e_tr[tr], t[ms], e[ms], risk[ms]) if ms.any()
                     else (float("nan"), "no risk predictions"))
        row = {"balanced_accuracy": bacc, "c_index": cidx, "ipcw_c_index": ipcw, "n": int(m.sum()),
               "n_events": int((e & has & m).sum()), "n_train": int((site_tr == site).sum()),
               "n_subtype": int((y[m] >= 0).sum())}
        if why and ms.any():
            row["notes"] = f"ipcw_c_index: {why}"
        if logits is not None:
            idx = np.flatnonzero(m)
            row.update(_class_metrics(y[idx], [logits[i] for i in idx]))
        out[site] = row
    return out


def site_means(per_site: Mapping[str, Mapping]) -> dict[str, float]:
    """Mean over sites of each metric (sites where it is NaN are skipped)."""
    return {k: nanmean([m.get(k) for m in per_site.values()]) for k in SITE_METRICS}


def add_overall(per_site: dict[str, dict]) -> dict[str, dict]:
    """Add ``overall``: the mean over sites of each metric (as the paper's Overall column), n summed."""
    out = dict(per_site)
    overall = site_means(per_site)
    overall["n"] = int(sum(int(m.get("n", 0)) for m in per_site.values()))
    overall["n_events"] = int(sum(int(m.get("n_events", 0)) for m in per_site.values()))
    overall["n_sites"] = len(per_site)
    out["overall"] = overall
    return out
