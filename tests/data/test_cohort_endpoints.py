"""Cohort.endpoints / Cohort.with_endpoints, and a run with data.endpoint through the engine and load_run."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from modaltune.config import resolve_config
from modaltune.data.labels import fit_survival_bins
from modaltune.data.prepare import prepare_cohort
from modaltune.data.splits import make_holdout_split
from modaltune.errors import ConfigError, InputWarning
from modaltune.runs.evaluate import evaluate_run
from modaltune.training.engine import train_method

E = "'--"


def _clinical(path, projects: dict[str, int]):
    """GDC OS columns + TCGA-CDR PFI/PFI.time (PFS = OS / 3, events differ) + DSS; one patient lacks DSS."""
    rows = []
    for p_idx, (project, n) in enumerate(projects.items()):
        for i in range(n):
            dead, days = i % 2 == 0, 30.44 * (i + 1 + 3 * p_idx)
            rows.append({"case_submitter_id": f"TCGA-{p_idx:02d}-{i:04d}", "project_id": project,
                         "vital_status": "Dead" if dead else "Alive", "days_to_death": f"{days:.2f}" if dead else E,
                         "days_to_last_follow_up": E if dead else f"{days:.2f}",
                         "PFI": "0" if i % 4 == 3 else "1", "PFI.time": f"{days / 3:.2f}",
                         "DSS": "1" if dead else "0", "DSS.time": f"{days:.2f}" if i else E})
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Modaltune scheme: BRCA (TCGA-BRCA) and RCC (TCGA-KIRC + TCGA-KIRP), 6 patients per project."""
    root = tmp_path_factory.mktemp("endpoints")
    clin = _clinical(root / "clin.tsv", {"TCGA-BRCA": 6, "TCGA-KIRC": 6, "TCGA-KIRP": 6})
    return _quiet(prepare_cohort, root / "cohort", clinical=clin)


def test_endpoints_lists_os_first(cohort):
    assert cohort.endpoints == ["os", "pfs", "dss"] and cohort.endpoint_of == {}


def test_with_endpoints_swaps_per_site_and_leaves_the_original_untouched(cohort):
    before = cohort.manifest.copy()
    pfs = cohort.with_endpoints({"default": "os", "TCGA-KIRP": "pfs"})      # project id -> RCC (modaltune scheme)
    assert pfs is not cohort and pfs.endpoint_of == {"BRCA": "os", "RCC": "pfs"}
    pd.testing.assert_frame_equal(cohort.manifest, before)
    assert cohort.endpoint_of == {}
    m, rcc, brca = pfs.manifest, pfs.manifest["site"] == "RCC", pfs.manifest["site"] == "BRCA"
    np.testing.assert_array_equal(m.loc[rcc, "survival_months"], before.loc[rcc, "pfs_months"])
    np.testing.assert_array_equal(m.loc[rcc, "event"], before.loc[rcc, "pfs_event"])
    np.testing.assert_array_equal(m.loc[brca, "survival_months"], before.loc[brca, "survival_months"])
    np.testing.assert_array_equal(m["os_months"], before["survival_months"])   # OS kept next to the swap
    assert m["has_survival"].dtype == bool
    # a site-name key and a string spec; choosing again starts from the prepared values
    dss = pfs.with_endpoints({"BRCA": "DSS"})
    assert dss.endpoint_of == {"BRCA": "dss", "RCC": "os"}
    np.testing.assert_array_equal(dss.manifest.loc[rcc, "survival_months"], before.loc[rcc, "survival_months"])
    np.testing.assert_array_equal(dss.manifest.loc[brca, "has_survival"], before.loc[brca, "has_dss"])
    assert not dss.manifest.loc["TCGA-00-0000", "has_survival"]                 # the patient without DSS
    assert pfs.with_endpoints("os").manifest["survival_months"].equals(before["survival_months"])
    assert cohort.with_endpoints(None) is cohort
    assert cohort.with_endpoints("os").manifest is cohort.manifest


def test_with_endpoints_refuses_unknown_or_absent_endpoints_and_bad_keys(cohort):
    with pytest.raises(ConfigError, match="unknown endpoint 'pfss'.*this cohort has os, pfs, dss"):
        cohort.with_endpoints("pfss")
    with pytest.raises(ConfigError, match="endpoint 'lrfs'.*not in this cohort; it has os, pfs, dss"):
        cohort.with_endpoints({"default": "os", "BRCA": "lrfs"})
    with pytest.raises(ConfigError, match="key 'BRCX' is neither a site"):
        cohort.with_endpoints({"BRCX": "pfs"})
    with pytest.raises(ConfigError, match="'KIRC' and 'KIRP' both name site RCC"):
        cohort.with_endpoints({"KIRC": "os", "KIRP": "pfs"})
    with pytest.raises(ConfigError, match="data.endpoint must be"):
        cohort.with_endpoints(3)
    # a TCGA project the cohort does not have is ignored (one config serves several cohorts)
    assert cohort.with_endpoints({"default": "os", "PRAD": "pfs", "THCA": "pfs"}).endpoint_of == {
        "BRCA": "os", "RCC": "os"}


def test_project_keys_follow_the_tcga_project_scheme(tmp_path):
    clin = _clinical(tmp_path / "clin.tsv", {"TCGA-KIRC": 3, "TCGA-KIRP": 3})
    c = _quiet(prepare_cohort, tmp_path / "cohort", clinical=clin, site_scheme="tcga_project")
    assert c.with_endpoints({"default": "os", "KIRP": "pfs"}).endpoint_of == {"KIRC": "os", "KIRP": "pfs"}


def test_a_site_without_any_value_of_its_endpoint_warns(tmp_path):
    clin = _clinical(tmp_path / "clin.tsv", {"TCGA-BRCA": 1})                  # its one patient lacks DSS
    c = _quiet(prepare_cohort, tmp_path / "cohort", clinical=clin)
    with pytest.warns(InputWarning, match=r"no patient of site\(s\) BRCA \(dss\)"):
        c.with_endpoints("dss")


def test_run_with_endpoint_fits_bins_on_pfs_and_evaluates_pfs(tmp_path, write_slide):
    clin = _clinical(tmp_path / "clin.tsv", {"TCGA-BRCA": 16, "TCGA-KIRP": 16})
    feats = tmp_path / "features"
    feats.mkdir()
    for i, case in enumerate(pd.read_csv(clin, sep="\t")["case_submitter_id"]):
        write_slide(feats / f"{case}-01Z-00-DX1.h5", n=4, dim=8, seed=i)
    cohort = _quiet(prepare_cohort, tmp_path / "cohort", clinical=clin, features=feats, site_scheme="tcga_project")
    split = make_holdout_split(cohort.manifest, seed=0)
    cfg = resolve_config("abmil", overrides=["train.progress_bar=false", "train.epochs=1", "train.warmup_epochs=0",
                                              "model.task=survival", "seed=0"])
    cfg["data"]["endpoint"] = {"default": "os", "TCGA-KIRP": "pfs"}
    _quiet(train_method, cfg, cohort, split, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "fitted_state.json").read_text())
    man = cohort.manifest.loc[split["train"]]
    for site, months, event in (("KIRP", "pfs_months", "pfs_event"), ("BRCA", "survival_months", "event")):
        s = man[man["site"] == site]
        expected = fit_survival_bins(s[months].to_numpy(float), s[event].to_numpy(float), n_bins=4)
        np.testing.assert_allclose(state["bin_edges"][site], expected)
    kirp = man[man["site"] == "KIRP"]
    assert not np.allclose(state["bin_edges"]["KIRP"], fit_survival_bins(
        kirp["survival_months"].to_numpy(float), kirp["event"].to_numpy(float), n_bins=4))
    # load_run applies the run's endpoint to the (unswitched) cohort it is given
    _quiet(evaluate_run, tmp_path / "run", cohort=cohort)
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv").set_index("case_id")
    kirp_test = [c for c in split["test"] if cohort.manifest.at[c, "site"] == "KIRP"]
    assert kirp_test
    np.testing.assert_allclose(preds.loc[kirp_test, "survival_months"],
                               cohort.manifest.loc[kirp_test, "pfs_months"], rtol=1e-6)
