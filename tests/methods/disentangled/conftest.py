"""Fixtures of the disentangled-framework tests: a small cohort at two magnifications and its split."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def two_mag_cohort(cohort_factory):
    """One site (BRCA) x 24 patients, 16-d features at 20x (primary) and 10x (secondary), 8 gene sets."""
    return cohort_factory(sites=("BRCA",), patients=24, secondary=True)


@pytest.fixture(scope="session")
def two_mag_split(two_mag_cohort):
    from modaltune.data.splits import make_holdout_split

    return make_holdout_split(two_mag_cohort.manifest, seed=0)
