"""Which survival endpoint a run scores, per site: the rules behind :meth:`Cohort.with_endpoints`.

Everything after ``prepare`` (survival bins, the dataset's survival targets, C-index, Kaplan-Meier)
reads one set of columns, ``survival_months`` / ``event`` / ``has_survival``. Rather than teach each of
them about endpoints, a run chooses its endpoint once (``data.endpoint``) and gets a copy of the
cohort whose survival columns hold, per site, that endpoint's values (``<ep>_months`` / ``<ep>_event``
/ ``has_<ep>`` written by ``prepare``). MICE needs this per site: OS everywhere except PFS for KIRP,
PRAD and THCA (spec ``mice.md`` (d), (k) 17), i.e. ``{default: os, KIRP: pfs, PRAD: pfs, THCA: pfs}``.

Rules of a spec (:func:`resolve_endpoint_spec`):

* ``None`` -> no change (the caller keeps the cohort as it is); ``"os"`` / ``"pfs"`` ... -> every site;
* a mapping ``{default: os, SITE: ep, ...}``: keys are sites of the cohort, or TCGA project ids / codes
  turned into sites by the cohort's site scheme (:func:`~.site_schemes.site_named_by`; under the
  ``modaltune`` scheme ``KIRP`` names RCC). An exact site key wins over a project key; two project keys
  naming one site with different endpoints are an error. A key naming a TCGA project or a known site
  the cohort does not have is ignored (one config serves cohorts of different sites); any other key
  is an error (a typo must not silently do nothing).
* endpoints are ``os`` plus :data:`~.formats.endpoints.ENDPOINTS`; one the cohort lacks is an error
  naming those it has.

The first switch keeps overall survival in ``os_months`` / ``os_event`` / ``has_os``, so choosing again
(e.g. ``load_run`` on a cohort the caller already switched) always starts from the prepared values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, warn_input
from .formats.endpoints import ENDPOINTS
from .formats.ids import names
from .site_schemes import site_named_by

__all__ = ["ALL_ENDPOINTS", "available_endpoints", "resolve_endpoint_spec", "apply_endpoints"]

#: Every endpoint name a spec may use ("os" = the manifest's survival columns as prepared).
ALL_ENDPOINTS: tuple[str, ...] = ("os", *ENDPOINTS)

_OS_KEPT = {"survival_months": "os_months", "event": "os_event", "has_survival": "has_os"}


def available_endpoints(manifest: pd.DataFrame) -> list[str]:
    """Endpoints a manifest has: ``"os"`` first, then each endpoint with its three columns."""
    return ["os", *(ep for ep in ENDPOINTS
                    if {f"{ep}_months", f"{ep}_event", f"has_{ep}"} <= set(manifest.columns))]


def _endpoint(value, available: list[str], where: str) -> str:
    ep = str(value).strip().lower()
    if ep not in ALL_ENDPOINTS:
        raise ConfigError(f"unknown endpoint '{value}' in data.endpoint{where}; known endpoints: "
                          f"{', '.join(ALL_ENDPOINTS)}; this cohort has {', '.join(available)}")
    if ep not in available:
        raise ConfigError(f"endpoint '{ep}' (data.endpoint{where}) is not in this cohort; it has "
                          f"{', '.join(available)} (re-run `modaltune prepare` with a clinical table that has "
                          f"{ep.upper()} time and event columns, or choose one of those)")
    return ep


def resolve_endpoint_spec(spec, sites: list[str], available: list[str], scheme: str) -> dict[str, str]:
    """The endpoint of every site for a spec (see the module docstring).

    Args:
        spec: an endpoint name, or a mapping ``{default: ep, SITE or project: ep}`` (not None).
        sites: the cohort's sites.
        available: the cohort's endpoints (:func:`available_endpoints`).
        scheme: the cohort's site scheme (for project keys).

    Returns:
        ``{site: endpoint}`` for every site of ``sites``.

    Raises:
        ConfigError: an unknown endpoint, one the cohort lacks, an unrecognised key, conflicting keys.
    """
    if isinstance(spec, str):
        ep = _endpoint(spec, available, "")
        return {s: ep for s in sites}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"data.endpoint must be null, an endpoint name ({', '.join(ALL_ENDPOINTS)}) or a mapping "
                          f"{{default: os, SITE: pfs}}; got {spec!r}")
    default, exact, by_project = "os", {}, {}
    for key, value in spec.items():
        k = str(key).strip()
        if k.lower() == "default":
            default = _endpoint(value, available, ".default")
            continue
        ep = _endpoint(value, available, f".{k}")
        if k.upper() in sites:
            exact[k.upper()] = ep
            continue
        site = site_named_by(k, scheme)
        if site is None:
            raise ConfigError(f"data.endpoint key '{k}' is neither a site of this cohort ({names(sites)}) nor a "
                              "TCGA project; use a site name, a TCGA project id (TCGA-KIRP) or 'default'")
        if site in by_project and by_project[site][1] != ep:
            other = by_project[site][0]
            raise ConfigError(f"data.endpoint keys '{other}' and '{k}' both name site {site} (site scheme "
                              f"{scheme}) with different endpoints ({by_project[site][1]}, {ep}); give site "
                              f"{site} one endpoint")
        by_project.setdefault(site, (k, ep))
    return {s: exact.get(s, by_project.get(s, (None, default))[1]) for s in sites}


def apply_endpoints(manifest: pd.DataFrame, endpoint_of: dict[str, str], root: Path | None = None) -> pd.DataFrame:
    """A copy of the manifest whose survival columns hold, per site, the chosen endpoint's values.

    Args:
        manifest: the cohort manifest (with the ``<ep>_*`` columns of the chosen endpoints).
        endpoint_of: ``{site: endpoint}`` covering every site (:func:`resolve_endpoint_spec`).
        root: the cohort directory, for the warning about a site without any value.

    Returns:
        The new manifest (``os_months`` / ``os_event`` / ``has_os`` added on the first switch).
    """
    man = manifest.copy()
    for ours, kept in _OS_KEPT.items():
        if kept not in man:
            man[kept] = man[ours]
    site = man["site"].astype(str)
    empty = []
    for ep in sorted(set(endpoint_of.values())):
        rows = site.map(endpoint_of).eq(ep).to_numpy()
        src = {"survival_months": f"{ep}_months", "event": f"{ep}_event", "has_survival": f"has_{ep}"}
        for ours, col in src.items():
            man.loc[rows, ours] = man.loc[rows, col if ep != "os" else _OS_KEPT[ours]]
        for s in sorted({x for x, e in endpoint_of.items() if e == ep}):
            if (site == s).any() and not man.loc[(site == s).to_numpy(), "has_survival"].astype(bool).any():
                empty.append(f"{s} ({ep})")
    man["has_survival"] = man["has_survival"].astype(bool)
    if empty:
        warn_input(f"no patient of site(s) {names(empty)} has a usable value of the chosen endpoint; survival "
                   "tasks cannot use these sites", file=None if root is None else Path(root) / "manifest.csv",
                   fix="choose another endpoint for these sites in data.endpoint, or fill the endpoint's columns "
                       "in the clinical table and re-run `modaltune prepare`")
    return man
