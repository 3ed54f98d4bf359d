"""prepare_cohort: endpoint columns of the manifest, their summary counts, and the site schemes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from modaltune.cli import main
from modaltune.data.cohort import MANIFEST_COLUMNS
from modaltune.data.formats import DAYS_PER_MONTH
from modaltune.data.prepare import prepare_cohort
from modaltune.errors import InputError

E = "'--"
DIAGNOSIS = {"TCGA-BRCA": "Infiltrating duct carcinoma, NOS", "TCGA-KIRP": "Papillary adenocarcinoma, NOS",
             "TCGA-LUAD": "Adenocarcinoma, NOS", "TCGA-LUSC": "Squamous cell carcinoma, NOS",
             "TCGA-COAD": "Adenocarcinoma, NOS", "TCGA-READ": "Adenocarcinoma, NOS", "TCGA-GBM": "Glioblastoma",
             "TCGA-LGG": "Astrocytoma, NOS"}


def clinical(path, projects: dict[str, int], pfs: bool = True):
    """A GDC table (+ TCGA-CDR PFI / PFI.time when ``pfs``); case i of a project: OS 30*(i+1) days, PFS a third."""
    rows = []
    for p_idx, (project, n) in enumerate(projects.items()):
        for i in range(n):
            dead = i % 2 == 0
            days = 30.44 * (i + 1 + p_idx)
            row = {"case_submitter_id": f"TCGA-{p_idx:02d}-{i:04d}", "project_id": project,
                   "primary_diagnosis": DIAGNOSIS[project], "vital_status": "Dead" if dead else "Alive",
                   "days_to_death": f"{days:.2f}" if dead else E, "days_to_last_follow_up": E if dead else f"{days:.2f}"}
            if pfs:
                row |= {"PFI": "1" if i % 3 != 2 else "0", "PFI.time": f"{days / 3:.2f}"}
            rows.append(row)
    if pfs:
        rows[-1]["PFI"] = E                                               # one patient without a usable PFS
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _prepare(out, clin, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = prepare_cohort(out, clinical=clin, **kw)
    return cohort, [str(w.message) for w in caught]


def test_manifest_has_endpoint_columns_and_summary_counts(tmp_path):
    clin = clinical(tmp_path / "clin.tsv", {"TCGA-BRCA": 6, "TCGA-KIRP": 6})
    c, _ = _prepare(tmp_path / "cohort", clin)
    man = pd.read_csv(tmp_path / "cohort" / "manifest.csv")
    assert list(man.columns) == [*MANIFEST_COLUMNS, "pfs_months", "pfs_event", "has_pfs"]
    m = c.manifest
    assert m["pfs_months"].dtype == float and m["has_pfs"].dtype == bool
    row = m.loc["TCGA-00-0001"]                                              # BRCA case 1: alive, PFS event
    assert row["survival_months"] == pytest.approx(2.0) and row["event"] == 0     # OS stays OS
    assert row["pfs_months"] == pytest.approx(30.44 * 2 / 3 / DAYS_PER_MONTH, abs=1e-3) and row["pfs_event"] == 1
    last = m.loc["TCGA-01-0005"]
    assert not last["has_pfs"] and np.isnan(last["pfs_months"]) and last["has_survival"]
    # summary: per endpoint and site
    s = c.summary
    assert s["site_scheme"] == "modaltune"
    assert s["total"]["endpoints"]["pfs"] == {"with_survival": 11, "events": 8, "censored": 3, "missing": 1}
    assert s["sites"]["BRCA"]["endpoints"]["pfs"] == {"with_survival": 6, "events": 4, "censored": 2, "missing": 0}
    assert s["sites"]["RCC"]["endpoints"]["pfs"]["missing"] == 1
    assert s["total"]["survival"]["with_survival"] == 12
    assert any(n["reason"].startswith("no usable PFS") and n["items"] == ["TCGA-01-0005"] for n in s["notes"])
    text = (tmp_path / "cohort" / "summary.txt").read_text()
    assert "site scheme: modaltune" in text and "PFS: 6 with PFS (4 events, 2 censored), 0 missing" in text
    meta = json.loads((tmp_path / "cohort" / "cohort.json").read_text())
    assert meta["endpoints"] == ["os", "pfs"] and meta["site_scheme"] == "modaltune"


def test_without_endpoint_columns_the_manifest_is_as_before(tmp_path):
    clin = clinical(tmp_path / "clin.tsv", {"TCGA-BRCA": 4}, pfs=False)
    c, _ = _prepare(tmp_path / "cohort", clin)
    assert list(pd.read_csv(tmp_path / "cohort" / "manifest.csv").columns) == list(MANIFEST_COLUMNS)
    assert "endpoints" not in c.summary["total"] and c.endpoints == ["os"]


def test_tcga_project_scheme_keeps_projects_apart_except_mice_merges(tmp_path):
    projects = {"TCGA-LUAD": 2, "TCGA-LUSC": 2, "TCGA-COAD": 2, "TCGA-READ": 2, "TCGA-GBM": 2, "TCGA-LGG": 2}
    clin = clinical(tmp_path / "clin.tsv", projects, pfs=False)
    c, warned = _prepare(tmp_path / "mice", clin, site_scheme="tcga_project")
    counts = c.manifest.groupby("site").size().to_dict()
    assert counts == {"LUAD": 2, "LUSC": 2, "CRC": 4, "GBMLGG": 4}
    assert c.site_scheme == "tcga_project" and c.summary["site_scheme"] == "tcga_project"
    # sites without a default grouping: patients kept without subtype, one warning per site
    for site in ("LUAD", "LUSC", "CRC"):
        assert sum(f"site {site} has no subtype grouping" in w for w in warned) == 1
        assert (c.manifest.loc[c.manifest["site"] == site, "subtype_index"] == -1).all()
    # the default (ModalTune) scheme groups them by organ
    c2, _ = _prepare(tmp_path / "modaltune", clin)
    assert c2.manifest.groupby("site").size().to_dict() == {"NSCLC": 4, "COADREAD": 4, "GBMLGG": 4}


def test_tcga_project_sites_take_subtypes_from_a_user_grouping(tmp_path):
    clin = clinical(tmp_path / "clin.tsv", {"TCGA-LUAD": 2, "TCGA-LUSC": 2}, pfs=False)
    grouping = {"extends": "default", "LUAD": {"classes": ["Lung adenocarcinoma"], "location": "lung",
                                               "members": {"Lung adenocarcinoma": ["Adenocarcinoma, NOS"]}}}
    c, warned = _prepare(tmp_path / "cohort", clin, site_scheme="tcga_project", grouping=grouping)
    luad = c.manifest[c.manifest["site"] == "LUAD"]
    assert (luad["subtype"] == "Lung adenocarcinoma").all() and (luad["location"] == "lung").all()
    assert not any("site LUAD has no subtype grouping" in w for w in warned)


def test_unknown_site_scheme_is_refused(tmp_path):
    clin = clinical(tmp_path / "clin.tsv", {"TCGA-BRCA": 2}, pfs=False)
    with pytest.raises(InputError, match="unknown site scheme 'per_project'.*tcga_project"):
        prepare_cohort(tmp_path / "cohort", clinical=clin, site_scheme="per_project")


def test_cli_prepare_passes_the_site_scheme(tmp_path, capsys):
    clin = clinical(tmp_path / "clin.tsv", {"TCGA-LUAD": 2, "TCGA-LUSC": 2}, pfs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["prepare", "--clinical", str(clin), "--out", str(tmp_path / "cohort"),
                   "--site-scheme", "tcga_project"])
    assert rc == 0
    meta = json.loads((tmp_path / "cohort" / "cohort.json").read_text())
    assert meta["site_scheme"] == "tcga_project" and meta["sites"] == ["LUAD", "LUSC"]
