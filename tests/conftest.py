"""Shared fixtures: one small prepared cohort (two sites, reports, expression), built once per session."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """Two sites (BRCA, NSCLC) x 22 patients, 16-d features, expression with 8 pathways, reports."""
    from modaltune.data.prepare import prepare_cohort

    try:
        from modaltune.synthetic import make_synthetic
    except ImportError:   # pragma: no cover (the generator's package is being moved)
        from modaltune.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("small_cohort")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = make_synthetic(root / "raw", seed=0, sites=("BRCA", "NSCLC"), ood_sites=(), patients=22, dim=16,
                              patches=(8, 16), n_pathways=8, pathway_size=(3, 6), n_extra_genes=4, n_absent_genes=1,
                              secondary=False)
        return prepare_cohort(root / "cohort", features=info["features"], clinical=info["clinical"],
                              expression=info["expression"], gene_sets=info["gene_sets"], reports=info["reports"])
