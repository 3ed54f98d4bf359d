"""Fixtures of the disentangled-framework tests: a small cohort at two magnifications and its split."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def two_mag_cohort(tmp_path_factory):
    """One site (BRCA) x 24 patients, 16-d features at 20x (primary) and 10x (secondary), 8 gene sets."""
    from modaltune.data.prepare import prepare_cohort

    try:
        from modaltune.synthetic import make_synthetic
    except ImportError:   # pragma: no cover (the generator's package is being moved)
        from modaltune.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("dmsf_cohort")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = make_synthetic(root / "raw", seed=0, sites=("BRCA",), ood_sites=(), patients=24, dim=16,
                              patches=(8, 16), n_pathways=8, pathway_size=(3, 6), n_extra_genes=4, n_absent_genes=1,
                              secondary=True)
        return prepare_cohort(root / "cohort", features=info["features"], features_secondary=info["features_secondary"],
                              clinical=info["clinical"], expression=info["expression"], gene_sets=info["gene_sets"])


@pytest.fixture(scope="session")
def two_mag_split(two_mag_cohort):
    from modaltune.data.splits import make_holdout_split

    return make_holdout_split(two_mag_cohort.manifest, seed=0)
