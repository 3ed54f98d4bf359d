"""Gene subspaces and highly variable genes (spec (j) 8, HVG part): the selection follows the training
patients' expression only; globs, counts, the random control and a clear error for an empty subspace."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from dmsf_helpers import build, tiny_cfg

from modaltune.errors import ConfigError
from modaltune.methods.disentangled.subspaces import select_hvg, subspace_genes, teacher_genes
from modaltune.runs.builders import cohort_info


def _selection(cohort, split, *extra):
    cfg = tiny_cfg("dmsf_teacher", *extra)
    info = cohort_info(cohort, cfg, split["train"])
    return teacher_genes(info, cfg["model"], seed=int(cfg["seed"])), info, cfg


def _with_values(cohort, cases, gene: int):
    expr = cohort.expression.copy()
    cases = [c for c in cases if c in expr.index]
    assert len(cases) >= 2
    expr.loc[cases, cohort.genes[gene]] = np.where(np.arange(len(cases)) % 2, 50.0, -50.0)
    return dataclasses.replace(cohort, expression=expr)


def test_selection_follows_training_patients_only(two_mag_cohort, two_mag_split):
    chosen, info, cfg = _selection(two_mag_cohort, two_mag_split)
    spaces = subspace_genes(info, cfg["model"]["subspaces"])
    left_out = [int(g) for g in spaces["tumor"] if g not in chosen["tumor"] and g not in spaces["tme"]]
    assert left_out, "the test needs a tumor gene the HVG selection leaves out"
    gene = left_out[0]
    held_out = two_mag_split["val"] + two_mag_split["test"]
    changed = _with_values(two_mag_cohort, held_out, gene)
    again, _, _ = _selection(changed, two_mag_split)
    assert all(np.array_equal(again[s], chosen[s]) for s in chosen)
    teacher, _, _ = build("dmsf_teacher", changed, two_mag_split)
    assert teacher.genes_tumor.tolist() == chosen["tumor"].tolist()
    trained = _with_values(two_mag_cohort, two_mag_split["train"], gene)
    moved, _, _ = _selection(trained, two_mag_split)
    assert gene in moved["tumor"] and not np.array_equal(moved["tumor"], chosen["tumor"])
    assert np.array_equal(moved["tme"], chosen["tme"])


def test_subspaces_are_unions_of_matched_sets(two_mag_cohort, two_mag_split):
    _, info, cfg = _selection(two_mag_cohort, two_mag_split)
    spaces = subspace_genes(info, {"tumor": ["SYN_HYPOXIA"], "tme": ["SYN_EMT", "SYN_G2M*"]})
    names = info.pathway_names
    assert spaces["tumor"].tolist() == sorted(info.pathways[names.index("SYN_HYPOXIA")].tolist())
    union = set(info.pathways[names.index("SYN_EMT")]) | set(info.pathways[names.index("SYN_G2M_CHECKPOINT")])
    assert spaces["tme"].tolist() == sorted(int(g) for g in union)


def test_counts_ties_and_the_random_control():
    var = np.array([5.0, 1.0, 3.0, 3.0, 0.5, 9.0, 2.0, 2.0, 2.0, 2.0])
    genes = np.arange(10)
    assert select_hvg(genes, var, 0.3).tolist() == [0, 2, 5]              # round(3.0) genes, largest variance
    assert select_hvg(genes, var, 0.4).tolist() == [0, 2, 3, 5]
    assert select_hvg(np.array([6, 7, 8, 9]), var, 0.5).tolist() == [6, 7]  # ties: lower index first
    assert select_hvg(genes, var, 0.01).tolist() == [5]                    # at least one gene
    r1, r2 = select_hvg(genes, var, 0.3, random=True, seed=3), select_hvg(genes, var, 0.3, random=True, seed=3)
    assert np.array_equal(r1, r2) and len(r1) == 3
    assert any(not np.array_equal(select_hvg(genes, var, 0.3, random=True, seed=s), r1) for s in range(4, 10))
    with pytest.raises(ConfigError, match="hvg_fraction"):
        select_hvg(genes, var, 0.0)


def test_random_genes_through_the_config(two_mag_cohort, two_mag_split):
    hvg, _, _ = _selection(two_mag_cohort, two_mag_split, "model.hvg_fraction=0.5")
    rnd, _, _ = _selection(two_mag_cohort, two_mag_split, "model.hvg_fraction=0.5", "model.hvg_random=true")
    again, _, _ = _selection(two_mag_cohort, two_mag_split, "model.hvg_fraction=0.5", "model.hvg_random=true")
    assert all(len(rnd[s]) == len(hvg[s]) and np.array_equal(rnd[s], again[s]) for s in hvg)


def test_a_subspace_matching_no_gene_set_is_a_config_error(two_mag_cohort, two_mag_split):
    cfg = tiny_cfg("dmsf_teacher", "model.subspaces={tumor: [TUMOR_*], tme: [SYN_EMT]}")
    info = cohort_info(two_mag_cohort, cfg, two_mag_split["train"])
    with pytest.raises(ConfigError, match=r"model.subspaces.tumor .*SYN_HYPOXIA"):
        teacher_genes(info, cfg["model"])
    with pytest.raises(ConfigError, match="exactly"):
        subspace_genes(info, {"tumor": ["SYN_EMT"]})
