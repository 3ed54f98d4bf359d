"""Site schemes: which TCGA projects share a site (one model, one set of survival bins, one row of results).

ModalTune groups projects by organ (``SITE_OF_PROJECT``: LUAD + LUSC -> NSCLC, KIRC/KIRP/KICH -> RCC,
COAD + READ -> COADREAD, GBM + LGG -> GBMLGG), because its subtype tasks classify within an organ.
MICE (spec ``mice.md`` (d)) evaluates 30 TCGA cohorts, one per project, except two merges:
COAD + READ -> CRC and GBM + LGG -> GBMLGG. Both are needed, so the scheme is a choice of
``prepare_cohort(site_scheme=...)``, recorded in ``cohort.json`` (``site_scheme``), and every place that
turns a project id into a site (``prepare``, ``Cohort.with_endpoints`` keys) asks this module with the
cohort's scheme:

* ``"modaltune"`` (default, today's behaviour): :data:`~modaltune.data.labels.SITE_OF_PROJECT`;
* ``"tcga_project"``: :data:`MICE_MERGES`, every other project its own site.

A project in neither table gives the project id without ``TCGA-`` (``TCGA-UCEC`` -> ``UCEC``).
"""

from __future__ import annotations

from .labels.grouping import SITE_OF_PROJECT

__all__ = ["SITE_SCHEMES", "DEFAULT_SITE_SCHEME", "MICE_MERGES", "TCGA_PROJECTS", "site_of_project",
           "site_named_by"]

#: Accepted values of ``site_scheme``.
SITE_SCHEMES: tuple[str, ...] = ("modaltune", "tcga_project")

#: The scheme of cohorts whose ``cohort.json`` records none (all cohorts prepared before schemes existed).
DEFAULT_SITE_SCHEME = "modaltune"

#: The only projects the ``tcga_project`` scheme merges (MICE, spec (d)).
MICE_MERGES: dict[str, str] = {"TCGA-COAD": "CRC", "TCGA-READ": "CRC", "TCGA-GBM": "GBMLGG", "TCGA-LGG": "GBMLGG"}

#: The 33 TCGA project codes (without ``TCGA-``).
TCGA_PROJECTS: frozenset[str] = frozenset((
    "ACC", "BLCA", "BRCA", "CESC", "CHOL", "COAD", "DLBC", "ESCA", "GBM", "HNSC", "KICH", "KIRC", "KIRP", "LAML",
    "LGG", "LIHC", "LUAD", "LUSC", "MESO", "OV", "PAAD", "PCPG", "PRAD", "READ", "SARC", "SKCM", "STAD", "TGCT",
    "THCA", "THYM", "UCEC", "UCS", "UVM"))

_TABLES = {"modaltune": SITE_OF_PROJECT, "tcga_project": MICE_MERGES}


def _table(scheme: str) -> dict[str, str]:
    if scheme not in _TABLES:
        raise ValueError(f"unknown site scheme '{scheme}'; use one of {', '.join(SITE_SCHEMES)}")
    return _TABLES[scheme]


def site_of_project(project: str, scheme: str = DEFAULT_SITE_SCHEME) -> str:
    """The site of a project id under a scheme.

    Args:
        project: a project id (``"TCGA-LUAD"``; case and surrounding spaces ignored).
        scheme: one of :data:`SITE_SCHEMES`.

    Returns:
        The site (``"NSCLC"`` under ``modaltune``, ``"LUAD"`` under ``tcga_project``); a project in
        neither table gives the id without ``TCGA-``.

    Raises:
        ValueError: an unknown scheme (callers check the scheme first and raise their own error).
    """
    p = str(project).strip().upper()
    return _table(scheme).get(p, p[5:] if p.startswith("TCGA-") else p)


def site_named_by(key: str, scheme: str = DEFAULT_SITE_SCHEME) -> str | None:
    """The site a user's key names when it is not itself a site of the cohort, or None when unrecognised.

    A key is a TCGA project id (``TCGA-KIRP``), a bare TCGA project code (``KIRP``) or a site of
    either scheme (``NSCLC``, ``CRC``); projects go through :func:`site_of_project`, so ``KIRP`` names
    ``RCC`` under ``modaltune`` and ``KIRP`` under ``tcga_project``.

    Args:
        key: the key (case ignored).
        scheme: the cohort's scheme.

    Returns:
        The site, or None for a key that is none of the above (likely a typo).
    """
    k = str(key).strip().upper()
    code = k[5:] if k.startswith("TCGA-") else k
    if code in TCGA_PROJECTS:
        return site_of_project(f"TCGA-{code}", scheme)
    if k in {s for table in _TABLES.values() for s in table.values()}:
        return k
    return None
