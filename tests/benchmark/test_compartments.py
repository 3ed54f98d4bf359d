"""Compartment agreement of the student's token clusters (``benchmark/compartments.py``).

The scorer must map every token of the fixed-size bag back to the patch it came from. The tests
check that mapping independently: a stand-in ``introspect`` recovers each token's compartment by
finding the token's feature vector among the patient's raw patches (the written features and the
``truth_patches`` files, not the module's index lists), so a correct scorer must report perfect
agreement, and a shuffled one must not.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.benchmark.compartments import compartment_agreement, summarise_agreement
from modaltune.chains import train_chain
from modaltune.data.cohort import Cohort
from modaltune.data.prepare import prepare_cohort
from modaltune.errors import ConfigError
from modaltune.methods.disentangled.student import DMSFStudent
from modaltune.synthetic import SUBSPACE_GROUPINGS, make_subspace_cohort

TINY = ["model.dim=8", "model.dca.dim_head=4", "model.dca.heads=2", "model.dca.offset_groups=2", "data.grid=8",
        "train.epochs=1", "train.batch_size=4", "train.warmup_epochs=0", "train.progress_bar=false", "seed=0"]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """A one-epoch ``dmsf_student`` run on a 30-patient subspace cohort, and the cohort's raw files."""
    root = tmp_path_factory.mktemp("compartments")
    raw, cohort_dir = root / "raw", root / "cohort"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_subspace_cohort(raw, seed=3, patients=30, grid_patches=(12, 40), dim=6)
        prepare_cohort(cohort_dir, features=raw / "features_20x", features_secondary=raw / "features_10x",
                       clinical=raw / "clinical.tsv", expression=raw / "expression.tsv",
                       gene_sets=raw / "pathways.gmt", grouping=SUBSPACE_GROUPINGS["who2021"])
        cohort = Cohort.load(cohort_dir)
        [run_dir] = train_chain("dmsf_student", cohort, root / "run", overrides=TINY)
    return run_dir, raw, cohort


def _patch_truth(raw: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per case: every 20x patch's feature vector and compartment (1 = tumor), from the written files."""
    slides = pd.read_csv(raw / "truth_slides.csv")
    out: dict[str, tuple[list, list]] = {}
    for sid, case in zip(slides.slide_id, slides.case_id):
        with h5py.File(raw / "features_20x" / f"{sid}.h5", "r") as f, \
                h5py.File(raw / "truth_patches" / f"{sid}.h5", "r") as t:
            feats, labels = out.setdefault(case, ([], []))
            feats.append(f["features"][:])
            labels.append(t["tumor_20x"][:].astype(np.int64))
    return {c: (np.concatenate(f), np.concatenate(lab)) for c, (f, lab) in out.items()}


def _by_lookup(truth, flip: bool = False, shuffle: bool = False):
    """A stand-in ``introspect``: each token's compartment, found by its feature vector."""
    rng = np.random.default_rng(0)

    def introspect(self, batch):
        rows = []
        for b, case in enumerate(batch["case_id"]):
            feats, labels = truth[case]
            tokens = batch["bag"][b].cpu().numpy()
            nearest = ((tokens[:, None, :] - feats[None, :, :]) ** 2).sum(-1).argmin(1)
            assert np.allclose(tokens, feats[nearest], atol=1e-5)   # tokens are copies of written patches
            lab = labels[nearest]
            lab = 1 - lab if flip else lab
            rows.append(rng.permutation(lab) if shuffle else lab)
        a = torch.as_tensor(np.stack(rows))
        return {"assignment_m20": a, "assignment_m10": a}
    return introspect


def test_agreement_is_perfect_for_the_true_partition(student_run, monkeypatch):
    run_dir, raw, cohort = student_run
    truth = _patch_truth(raw)
    monkeypatch.setattr(DMSFStudent, "introspect", _by_lookup(truth))
    df = compartment_agreement(run_dir, raw / "truth_patches", cohort)
    assert len(df) > 0 and np.allclose(df["ari"], 1.0) and np.allclose(df["accuracy"], 1.0)
    assert (df["chance_accuracy"] < 1.0).all()
    assert (df["tumor_cluster"] == 1).all()          # label 1 is the tumor: cluster 1 holds it
    monkeypatch.setattr(DMSFStudent, "introspect", _by_lookup(truth, flip=True))
    flipped = compartment_agreement(run_dir, raw / "truth_patches", cohort)
    assert np.allclose(flipped["ari"], 1.0)          # cluster names do not matter to the ARI ...
    assert (flipped["tumor_cluster"] == 0).all()     # ... but the prototype order is reported
    summary = summarise_agreement(flipped)
    assert summary["tumor_first"] == 1.0 and summary["p_ari_above_0"] < 0.05


def test_a_shuffled_partition_scores_at_chance(student_run, monkeypatch):
    run_dir, raw, cohort = student_run
    monkeypatch.setattr(DMSFStudent, "introspect", _by_lookup(_patch_truth(raw), shuffle=True))
    df = compartment_agreement(run_dir, raw / "truth_patches", cohort)
    assert abs(df["ari"].mean()) < 0.1
    assert abs(df["accuracy"].mean() - df["chance_accuracy"].mean()) < 0.1


def test_the_real_student_gives_a_partition_of_every_test_patient(student_run):
    run_dir, raw, cohort = student_run
    df = compartment_agreement(run_dir, raw / "truth_patches", cohort)
    assert set(df["tumor_cluster"]) <= {0, 1} and df["ari"].between(-1, 1).all()
    assert (df["accuracy"] >= 0.5).all()             # the better naming of two clusters is never below 1/2


def test_a_run_without_token_clusters_is_refused(tmp_path, student_run, monkeypatch):
    run_dir, raw, cohort = student_run
    monkeypatch.delattr(DMSFStudent, "introspect")
    with pytest.raises(ConfigError, match="token clusters"):
        compartment_agreement(run_dir, raw / "truth_patches", cohort)
