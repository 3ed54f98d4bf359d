"""Tests of ``modaltune.evaluation.report``: the console table of a run's ``metrics.json``."""

from __future__ import annotations

import json

from modaltune.evaluation.report import format_metrics, print_metrics

METRICS = {
    "NSCLC": {"balanced_accuracy": 0.8123, "c_index": 0.65, "ipcw_c_index": float("nan"), "logrank_p": 0.00123,
              "n": 25, "n_events": 9},
    "overall": {"balanced_accuracy": 0.75, "c_index": 0.7, "ipcw_c_index": 0.69, "logrank_p": 0.0,
                "n": 45, "n_events": 17},
    "BRCA": {"balanced_accuracy": 0.6871, "c_index": float("nan"), "ipcw_c_index": None, "logrank_p": float("nan"),
             "n": 20, "n_events": 8},
    "select_metric": "val_c_index",          # not a site: skipped
}


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_sites_then_overall_last():
    rows = _rows(format_metrics(METRICS))
    assert rows[0] == ["site", "bal.", "acc.", "C-index", "IPCW", "C", "log-rank", "p", "n", "test", "events"]
    assert set("".join(rows[1])) == {"-"}
    assert [r[0] for r in rows[2:]] == ["NSCLC", "BRCA", "overall"]     # metrics order, overall last


def test_cells_and_nan_as_na():
    rows = {r[0]: r[1:] for r in _rows(format_metrics(METRICS))[2:]}
    assert rows["NSCLC"] == ["0.812", "0.650", "n/a", "0.00123", "25", "9"]
    assert rows["BRCA"] == ["0.687", "n/a", "-", "n/a", "20", "8"]     # NaN -> n/a, missing/None -> -
    assert rows["overall"] == ["0.750", "0.700", "0.690", "0.000", "45", "17"]


def test_missing_keys_and_title():
    text = format_metrics({"BRCA": {"c_index": 0.5}}, title="runs/abmil/BRCA")
    lines = text.splitlines()
    assert lines[0] == "runs/abmil/BRCA"
    assert lines[3].split() == ["BRCA", "-", "0.500", "-", "-", "-", "-"]
    assert "overall" not in text


def test_columns_are_aligned():
    lines = format_metrics(METRICS).splitlines()
    widths = {len(line) for line in lines}
    assert len(widths) == 1                                             # fixed width: header, rule and rows
    assert lines[1] == "-" * len(lines[0])


def test_metrics_from_json_with_nan(tmp_path, capsys):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(METRICS))                                # NaN round-trips through json
    loaded = json.loads(path.read_text())
    assert format_metrics(loaded) == format_metrics(METRICS)
    print_metrics(loaded, title="t")
    out = capsys.readouterr().out
    assert out.startswith("t\n") and out.endswith("\n\n") and "n/a" in out
