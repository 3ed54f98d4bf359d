"""A run directory written before a config key existed is rebuilt with the value it was trained with
(``Method.stored_defaults``), not with today's default."""

from __future__ import annotations

import yaml

from modaltune.config import resolve_config
from modaltune.runs.load import read_run_config


def _write(tmp_path, cfg):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**cfg, "cohort": "/somewhere"}))
    return tmp_path


def test_a_key_missing_from_an_old_run_gets_its_stored_default(tmp_path):
    cfg = resolve_config("modaltune")
    assert cfg["model"]["modal_norm"] is True                      # today's default
    del cfg["model"]["modal_norm"]                                  # a run from before the key existed
    got, cohort = read_run_config(_write(tmp_path, cfg))
    assert got["model"]["modal_norm"] is False and cohort == "/somewhere"
    assert {k: v for k, v in got["model"].items() if k != "modal_norm"} == cfg["model"]


def test_a_written_key_wins_and_other_methods_are_untouched(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg = resolve_config("modaltune")
    got, _ = read_run_config(_write(tmp_path / "a", cfg))
    assert got["model"]["modal_norm"] is True
    abmil = resolve_config("abmil")
    got, _ = read_run_config(_write(tmp_path / "b", abmil))
    assert got == abmil
