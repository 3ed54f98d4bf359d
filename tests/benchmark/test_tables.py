"""Tests of ``modaltune.benchmark.tables``: mean/std over units, Overall, family order, marks, files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from modaltune.benchmark.tables import markdown_table, summarise, wide_table, write_tables

SITES = ["S1", "S2"]


#: family positions as the method classes declare them (WSI 10, Genomics 20, ...)
ORDER = {"WSI": 10, "Genomics": 20, "Multi-modal": 30, "ModalTune": 40, "ModalTune pan-cancer": 41, "other": 100}


def _results(values: dict, metric: str = "c_index") -> pd.DataFrame:
    """``{(family, method): {site: [value per unit]}}`` -> the runner's long table."""
    rows = []
    for (family, method), per_site in values.items():
        for site, vals in per_site.items():
            for seed, v in enumerate(vals):
                rows.append({"family": family, "family_order": ORDER.get(family, 100), "method": method, "site": site,
                             "seed": seed, "unit": f"seed{seed}", "metric": metric, "value": v,
                             "run_dir": f"runs/{method}/{site}/seed{seed}"})
    return pd.DataFrame(rows)


def _cell(summary: pd.DataFrame, method: str, site: str) -> pd.Series:
    row = summary[(summary.method == method) & (summary.site == site)]
    assert len(row) == 1, (method, site)
    return row.iloc[0]


def test_summarise_mean_std_over_seeds_and_overall():
    results = _results({
        # site means 0.7 / 0.7 but the seeds disagree in opposite directions: Overall per seed is 0.7 twice
        ("WSI", "a"): {"S1": [0.6, 0.8], "S2": [0.8, 0.6]},
        # seed 0: (0.5 + 0.9) / 2 = 0.7, seed 1: (0.7 + 0.9) / 2 = 0.8, seed 2: (0.6 + 0.6) / 2 = 0.6
        ("Genomics", "b"): {"S1": [0.5, 0.7, 0.6], "S2": [0.9, 0.9, 0.6]},
        ("ModalTune", "c"): {"S1": [0.75], "S2": [0.65]},
    })
    results = pd.concat([results, _results({("WSI", "a"): {"S1": [0.1, 0.2]}}, metric="balanced_accuracy")])
    s = summarise(results, "c_index")
    assert set(s.columns) >= {"family", "method", "site", "mean", "std", "n_units"}
    assert len(s) == 3 * 3                                     # 3 methods x (2 sites + Overall)

    a1 = _cell(s, "a", "S1")
    assert a1["mean"] == pytest.approx(0.7) and a1["std"] == pytest.approx(math.sqrt(0.02)) and a1["n_units"] == 2
    a_all = _cell(s, "a", "Overall")
    assert a_all["mean"] == pytest.approx(0.7)
    assert a_all["std"] == pytest.approx(0.0, abs=1e-12)       # not the pooled std of the 4 values (0.115)
    assert a_all["n_units"] == 2 and a_all["family"] == "WSI"

    b1, b2 = _cell(s, "b", "S1"), _cell(s, "b", "S2")
    assert b1["mean"] == pytest.approx(0.6) and b1["std"] == pytest.approx(0.1)   # ddof 1
    assert b2["mean"] == pytest.approx(0.8) and b2["std"] == pytest.approx(math.sqrt(0.06 / 2))
    b_all = _cell(s, "b", "Overall")
    assert b_all["mean"] == pytest.approx(0.7) and b_all["std"] == pytest.approx(0.1) and b_all["n_units"] == 3

    c_all = _cell(s, "c", "Overall")                           # one seed: std 0, not NaN
    assert c_all["mean"] == pytest.approx(0.7) and c_all["std"] == 0.0 and c_all["n_units"] == 1

    # the other metric is summarised on its own
    ba = summarise(results, "balanced_accuracy")
    assert set(ba["method"]) == {"a"} and _cell(ba, "a", "S1")["mean"] == pytest.approx(0.15)
    assert summarise(results, "auc").empty


def test_wide_table_family_order_and_cells():
    results = _results({
        ("ModalTune pan-cancer", "modaltune:pan"): {"S1": [0.9], "S2": [0.8]},
        ("Multi-modal", "mcat"): {"S1": [0.6], "S2": [0.7]},
        ("ModalTune", "modaltune"): {"S1": [0.85], "S2": [0.8]},
        ("other", "zzz"): {"S1": [0.5]},
        ("Genomics", "snn"): {"S1": [0.55], "S2": [0.6]},
        ("WSI", "transmil"): {"S1": [0.65, 0.75], "S2": [0.7, 0.7]},
        ("WSI", "abmil"): {"S1": [0.6, 0.7], "S2": [0.6, 0.8]},
        ("Multi-modal", "abmil_cat"): {"S1": [0.7], "S2": [0.7]},
    })
    wide = wide_table(summarise(results, "c_index"), SITES)
    assert list(wide.columns) == ["family", "method", "S1", "S2", "Overall"]
    assert wide["family"].tolist() == ["WSI", "WSI", "Genomics", "Multi-modal", "Multi-modal", "ModalTune",
                                       "ModalTune pan-cancer", "other"]
    assert wide["method"].tolist() == ["abmil", "transmil", "snn", "abmil_cat", "mcat", "modaltune",
                                       "modaltune:pan", "zzz"]
    abmil = wide.set_index("method").loc["abmil"]
    assert abmil["S1"] == "0.650 ± 0.071" and abmil["S2"] == "0.700 ± 0.141" and abmil["Overall"] == "0.675 ± 0.106"
    assert wide.set_index("method").loc["zzz", "S2"] == "n/a"          # never scored on S2


def _md_cells(md: str, columns: list[str]) -> dict[str, dict[str, str]]:
    """Parse the markdown table: method -> column -> cell text."""
    out = {}
    for line in md.splitlines():
        if not line.startswith("| ") or line.startswith("| Family") or line.startswith("|---"):
            continue
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        out[parts[1]] = dict(zip(columns, parts[2:]))
    return out


def test_markdown_table_marks_best_and_second():
    results = _results({
        ("WSI", "a"): {"S1": [0.70], "S2": [0.60]},
        ("Genomics", "b"): {"S1": [0.90], "S2": [0.50]},
        ("Multi-modal", "c"): {"S1": [0.9001], "S2": [0.80]},    # ties b at the printed precision
        ("ModalTune", "d"): {"S1": [0.80], "S2": [0.80]},         # ties c on S2
        ("ModalTune pan-cancer", "e"): {"S1": [0.50], "S2": [0.70]},
    })
    md = markdown_table(summarise(results, "c_index"), SITES, "Table 2: C-index")
    lines = md.splitlines()
    assert lines[0] == "**Table 2: C-index**"
    assert "| Family | Method | S1 | S2 | Overall |" in lines
    cells = _md_cells(md, SITES + ["Overall"])
    assert set(cells) == {"a", "b", "c", "d", "e"}
    # S1: b and c share the best (0.900), d is second (0.800)
    # one unit per cell: the value alone (n = 1), never "± 0.000"
    assert cells["b"]["S1"] == "**0.900**" and cells["c"]["S1"] == "**0.900**"
    assert cells["d"]["S1"] == "<u>0.800</u>"
    assert cells["a"]["S1"] == "0.700" and cells["e"]["S1"] == "0.500"
    assert "± 0.000" not in md and "n = 1" in md
    # S2: c and d share the best (0.800), e is second (0.700); a and b plain
    assert cells["c"]["S2"].startswith("**") and cells["d"]["S2"].startswith("**")
    assert cells["e"]["S2"] == "<u>0.700</u>"
    assert cells["a"]["S2"] == "0.600" and cells["b"]["S2"] == "0.500"
    # Overall: c 0.850 best, d 0.800 second; b 0.700 and a 0.650 plain
    assert cells["c"]["Overall"] == "**0.850**" and cells["d"]["Overall"] == "<u>0.800</u>"
    assert "**" not in cells["b"]["Overall"] and "<u>" not in cells["a"]["Overall"]
    # every column has a best and a second mark
    for col in SITES + ["Overall"]:
        assert sum(c[col].startswith("**") for c in cells.values()) >= 1
        assert sum(c[col].startswith("<u>") for c in cells.values()) >= 1


def test_markdown_ties_use_the_printed_value():
    """0.6125 prints as 0.613 (like 0.613 itself), so both are best; Series.round(3) would rank it 0.612."""
    results = _results({("WSI", "a"): {"S1": [0.6125]}, ("WSI", "b"): {"S1": [0.613]},
                        ("WSI", "c"): {"S1": [0.5]}}, metric="balanced_accuracy")
    cells = _md_cells(markdown_table(summarise(results, "balanced_accuracy"), ["S1"], "t"), ["S1", "Overall"])
    assert cells["a"]["S1"] == cells["b"]["S1"] == "**0.613**"
    assert cells["c"]["S1"] == "<u>0.500</u>"


def test_markdown_table_family_shown_once_and_nan_unmarked():
    results = _results({
        ("WSI", "a"): {"S1": [0.7], "S2": [float("nan")]},
        ("WSI", "b"): {"S1": [0.6], "S2": [0.5]},
    })
    md = markdown_table(summarise(results, "c_index"), SITES, "t")
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Family")]
    assert rows[0].startswith("| WSI | a |") and rows[1].startswith("|  | b |")
    cells = _md_cells(md, SITES + ["Overall"])
    assert cells["a"]["S1"].startswith("**") and cells["b"]["S1"].startswith("<u>")
    assert cells["a"]["S2"] == "n/a" and cells["b"]["S2"] == "**0.500**"


def test_write_tables_writes_markdown_csv_json(tmp_path):
    results = pd.concat([
        _results({("WSI", "abmil"): {"S1": [0.6, 0.8], "S2": [0.7, 0.7]},
                  ("ModalTune", "modaltune"): {"S1": [0.9, 0.7], "S2": [0.8, 0.6]}}),
        _results({("WSI", "abmil"): {"S1": [0.5, 0.5], "S2": [0.6, 0.6]},
                  ("ModalTune", "modaltune"): {"S1": [0.7, 0.9], "S2": [0.7, 0.5]}}, metric="balanced_accuracy"),
    ], ignore_index=True)
    out = tmp_path / "tables"
    paths = write_tables(results, SITES, out, "in_domain", "In-domain")
    assert paths["markdown"] == out / "in_domain.md"
    md = paths["markdown"].read_text()
    assert "**In-domain: Balanced accuracy**" in md and "**In-domain: C-index**" in md
    assert md.index("Balanced accuracy") < md.index("C-index")
    for metric in ("c_index", "balanced_accuracy"):
        csv = out / f"in_domain_{metric}.csv"
        assert paths[f"{metric}_csv"] == csv
        wide = pd.read_csv(csv)
        assert wide.columns.tolist() == ["family", "method", "S1", "S2", "Overall"]
        assert wide["method"].tolist() == ["abmil", "modaltune"]
        records = json.loads((out / f"in_domain_{metric}.json").read_text())
        assert {(r["method"], r["site"]) for r in records} == {(m, s) for m in ("abmil", "modaltune")
                                                                for s in SITES + ["Overall"]}
    ci = pd.read_csv(out / "in_domain_c_index.csv").set_index("method")
    assert ci.loc["abmil", "Overall"] == "0.700 ± 0.071" and ci.loc["modaltune", "S1"] == "0.800 ± 0.141"
    records = json.loads((out / "in_domain_balanced_accuracy.json").read_text())
    overall = next(r for r in records if r["method"] == "modaltune" and r["site"] == "Overall")
    assert overall["mean"] == pytest.approx(0.7) and overall["std"] == pytest.approx(0.0, abs=1e-12)


def test_write_tables_skips_a_metric_without_results(tmp_path):
    results = _results({("WSI", "abmil"): {"S1": [0.6], "S2": [0.7]}})
    paths = write_tables(results, SITES, tmp_path, "t", "T")
    assert set(paths) == {"c_index_csv", "markdown"}
    assert not (tmp_path / "t_balanced_accuracy.csv").exists()
    assert "Balanced accuracy" not in (tmp_path / "t.md").read_text()
