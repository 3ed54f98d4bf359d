"""Shared fixtures: small prepared synthetic cohorts, built once per session.

``cohort_factory(sites, patients, secondary)`` writes and prepares a tiny cohort of the built-in
generator (16-d features, 8 pathways, reports) and caches it by its arguments; ``small_cohort`` is the
two-site one most engine tests use.
"""

from __future__ import annotations

import os
import warnings

import pytest


def pytest_configure(config):
    """Under pytest-xdist (``-n``, the default in pyproject.toml) each worker takes one core: torch's
    intra-op threads and ``train.threads: auto`` (through ``MODALTUNE_CORES``) use one thread, so
    that the workers never oversubscribe the machine's cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["MODALTUNE_CORES"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _warnings_said_once_are_said_again():
    """Warnings said once per process (errors.warn_input_once) are said again in every test."""
    from modaltune.errors import forget_said_warnings

    forget_said_warnings()


@pytest.fixture(scope="session")
def cohort_factory(tmp_path_factory):
    """A function ``(sites=("BRCA", "NSCLC"), patients=22, secondary=False) -> Cohort`` (cached)."""
    from modaltune.data.prepare import prepare_cohort
    from modaltune.synthetic import make_synthetic

    built: dict = {}

    def build(sites=("BRCA", "NSCLC"), patients: int = 22, secondary: bool = False):
        key = (tuple(sites), int(patients), bool(secondary))
        if key not in built:
            root = tmp_path_factory.mktemp("cohort_" + "_".join(sites))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = make_synthetic(root / "raw", seed=0, sites=tuple(sites), ood_sites=(), patients=patients,
                                      dim=16, patches=(8, 16), n_pathways=8, pathway_size=(3, 6), n_extra_genes=4,
                                      n_absent_genes=1, secondary=secondary)
                built[key] = prepare_cohort(root / "cohort", features=info["features"],
                                            features_secondary=info["features_secondary"] if secondary else None,
                                            clinical=info["clinical"], expression=info["expression"],
                                            gene_sets=info["gene_sets"], reports=info["reports"])
        return built[key]

    return build


@pytest.fixture(scope="session")
def small_cohort(cohort_factory):
    """Two sites (BRCA, NSCLC) x 22 patients, 16-d features, expression with 8 pathways, reports."""
    return cohort_factory()
