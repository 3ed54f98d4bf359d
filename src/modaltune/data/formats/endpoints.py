"""Survival endpoints besides overall survival (PFS, DSS, DFS, DMFS, LRFS), read from clinical tables.

MICE (spec ``mice.md`` (d), (k) 17) scores some cohorts on progression-free survival instead of
overall survival (TCGA KIRP, PRAD and THCA have too few deaths), and its external cohorts come with
DSS, DFS, DMFS and LRFS. Each endpoint arrives under the names of its source, so this module lists
the accepted column names per endpoint and turns them into one normal form, ``<ep>_months`` (float)
and ``<ep>_event`` (1 = event observed, 0 = censored), which :func:`~.clinical.read_clinical` adds to
its table. Overall survival keeps its own columns (``survival_months`` / ``event``).

Accepted columns (case-insensitive; the first present wins; ``columns=`` of ``read_clinical`` maps
our keys ``<ep>_event``, ``<ep>_months``, ``<ep>_days`` to other names):

========  ==================================  ============================  ===========================
endpoint  event                               time in months                time in days
========  ==================================  ============================  ===========================
pfs       pfs_event, PFI, progression         pfs_months                    pfs_days, PFI.time,
                                                                            days_to_progression
dss       dss_event, DSS                      dss_months                    dss_days, DSS.time
dfs       dfs_event, DFI                      dfs_months                    dfs_days, DFI.time
dmfs      dmfs_event                          dmfs_months                   dmfs_days
lrfs      lrfs_event                          lrfs_months                   lrfs_days
========  ==================================  ============================  ===========================

``PFI``/``DSS``/``DFI`` (+ ``.time``, days) are the TCGA Pan-Cancer Clinical Data Resource (TCGA-CDR)
columns; ``progression`` + ``days_to_progression`` are GDC-like and are what the synthetic pan-cancer
writer (:mod:`modaltune.synthetic.pan_cancer`) writes. Months win over days when both are given;
days are divided by ``DAYS_PER_MONTH``.

Event values (:func:`parse_event`, case-insensitive): ``1``/``0``, ``yes``/``no``, ``true``/``false``,
``event``/``censored``, ``progressed``/``not progressed``, ``progression``/``no progression``,
``recurred``/``no recurrence``, ``relapsed``/``no relapse``, ``dead``/``alive``. Anything else is not
usable (counted with the missing values, and named in the warning).

A censored patient (event 0) without an endpoint time takes its last follow-up
(``days_to_last_follow_up``): GDC fills ``days_to_progression`` only for patients who progressed.
A patient without a usable pair (time >= 0 and event 0/1) is kept with both NaN and named in one
warning per endpoint; ``df.attrs["no_endpoint"]`` maps each endpoint to those case ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import warn_input
from .ids import names
from .tables import clean_str, to_number

__all__ = ["ENDPOINTS", "ENDPOINT_ALIASES", "EVENT_WORDS", "endpoint_keys", "parse_event", "read_endpoint_column",
           "finish_endpoints"]

#: Endpoints other than overall survival ("os"), in the order their columns are written.
ENDPOINTS: tuple[str, ...] = ("pfs", "dss", "dfs", "dmfs", "lrfs")

#: our key -> accepted column names (``<ep>_event``, ``<ep>_months``, ``<ep>_days`` per endpoint).
ENDPOINT_ALIASES: dict[str, tuple[str, ...]] = {}
_SOURCE_NAMES = {"pfs": (("PFI", "progression"), ("PFI.time", "days_to_progression")),
                 "dss": (("DSS",), ("DSS.time",)),
                 "dfs": (("DFI",), ("DFI.time",))}
for _ep in ENDPOINTS:
    _events, _days = _SOURCE_NAMES.get(_ep, ((), ()))
    ENDPOINT_ALIASES[f"{_ep}_event"] = (f"{_ep}_event", *_events)
    ENDPOINT_ALIASES[f"{_ep}_months"] = (f"{_ep}_months",)
    ENDPOINT_ALIASES[f"{_ep}_days"] = (f"{_ep}_days", *_days)

#: lower-cased event wording -> 1.0 (event) / 0.0 (censored).
EVENT_WORDS: dict[str, float] = {
    **dict.fromkeys(("1", "yes", "y", "true", "event", "progressed", "progression", "recurred", "recurrence",
                     "relapsed", "relapse", "dead", "deceased"), 1.0),
    **dict.fromkeys(("0", "no", "n", "false", "censored", "not progressed", "no progression", "progression free",
                     "no recurrence", "not recurred", "no relapse", "disease free", "alive", "living"), 0.0),
}


def endpoint_keys(key: str) -> tuple[str, str] | None:
    """``"pfs_days"`` -> ``("pfs", "days")``; None for a key that is not an endpoint key."""
    ep, _, part = key.partition("_")
    return (ep, part) if ep in ENDPOINTS and part in ("event", "months", "days") else None


def parse_event(value) -> float:
    """An event cell as 1.0 / 0.0 (see :data:`EVENT_WORDS`; numbers 1 and 0 too), NaN when not usable.

    Args:
        value: the cell (text, number, None or NaN).

    Returns:
        1.0 for an observed event, 0.0 for censored, NaN for a missing or unrecognised value.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    raw = str(value).strip().lower()
    try:
        number = float(raw)
    except ValueError:
        return EVENT_WORDS.get(" ".join(raw.replace("_", " ").replace("-", " ").split()), np.nan)
    return number if number in (0.0, 1.0) else np.nan


def read_endpoint_column(key: str, values: pd.Series) -> pd.Series:
    """Float values of one endpoint column: events through :func:`parse_event`, times as numbers.

    Unrecognised event words are kept in ``series.attrs["unrecognised"]`` for the warning.

    Args:
        key: our key (``"pfs_event"``, ``"pfs_months"``, ``"pfs_days"``...).
        values: the raw text column.

    Returns:
        A float series aligned to ``values``.
    """
    if not key.endswith("_event"):
        return to_number(values)
    text = clean_str(values)
    parsed = text.map(parse_event).astype(float)
    parsed.attrs["unrecognised"] = sorted({str(v) for v, p in zip(text, parsed) if isinstance(v, str) and np.isnan(p)})
    return parsed


def finish_endpoints(df: pd.DataFrame, path: Path, days_per_month: float,
                     unrecognised: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, list[str], dict]:
    """Turn the endpoint columns read (one row per case) into ``<ep>_months`` / ``<ep>_event``.

    Args:
        df: the clinical table after the rows of each case were merged, with whichever of
            ``<ep>_event``, ``<ep>_months``, ``<ep>_days`` were found (and ``days_to_last_follow_up``).
        path: the clinical table, for the warnings.
        days_per_month: days -> months divisor.
        unrecognised: our event key -> event words that were not understood (for the warning).

    Returns:
        ``(df, endpoints, missing)``: the table with ``<ep>_months``, ``<ep>_event`` (NaN pairs where not
        usable) and without ``<ep>_days``; the endpoints found (order of :data:`ENDPOINTS`); endpoint ->
        case ids without a usable pair.
    """
    df = df.copy()
    found = [ep for ep in ENDPOINTS if any(f"{ep}_{p}" in df for p in ("event", "months", "days"))]
    nan = pd.Series(np.nan, index=df.index)
    missing: dict[str, list[str]] = {}
    for ep in found:
        event = df.get(f"{ep}_event", nan).astype(float)
        days = df.get(f"{ep}_days", nan).astype(float)
        months = df.get(f"{ep}_months", nan).astype(float).fillna(days / days_per_month)
        if "days_to_last_follow_up" in df:
            follow = df["days_to_last_follow_up"].astype(float) / days_per_month
            months = months.where(months.notna() | (event != 0), follow)
        ok = months.notna() & (months >= 0) & event.isin((0.0, 1.0))
        df = df.drop(columns=[c for c in (f"{ep}_days",) if c in df])
        df[f"{ep}_months"] = months.where(ok)
        df[f"{ep}_event"] = event.where(ok)
        lacking = df.loc[~ok & df["case_id"].notna(), "case_id"].tolist()
        if lacking:
            missing[ep] = lacking
            words = (unrecognised or {}).get(f"{ep}_event") or []
            note = f"; unrecognised event values: {names(words)}" if words else ""
            warn_input(f"{len(lacking)} of {int(df['case_id'].notna().sum())} patient(s) have no usable {ep.upper()} "
                       f"(kept with {ep}_months/{ep}_event NaN){note}: {names(lacking)}", file=path,
                       case=str(lacking[0]),
                       fix=f"fill the {ep.upper()} time and event columns (events as 1/0, yes/no, "
                           "progressed/censored) if analyses should use this endpoint")
    return df, found, missing
