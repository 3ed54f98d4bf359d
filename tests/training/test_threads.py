"""train.threads: the documented rule for CPU intra-op threads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modaltune.errors import ConfigError
from modaltune.training.threads import SMALL_MODEL, apply_threads, available_cores, resolve_threads


def test_auto_rule(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MODALTUNE_CORES", "3")
    assert available_cores() == 3
    assert resolve_threads("auto", SMALL_MODEL - 1) == 1           # small per-patient models: one thread
    assert resolve_threads("auto", SMALL_MODEL) == 3               # larger: the cores of this job (at most 4)
    monkeypatch.setenv("MODALTUNE_CORES", "16")
    assert resolve_threads(None, 10 * SMALL_MODEL) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")                    # the user's environment wins over auto
    assert resolve_threads("auto", 10 * SMALL_MODEL) == 2 and resolve_threads("auto", 10) == 2


def test_explicit_and_invalid(monkeypatch):
    assert resolve_threads(3, 10) == 3 and resolve_threads("2", 10) == 2
    for bad in (0, -1, "many", 1.5):
        with pytest.raises(ConfigError, match="train.threads"):
            resolve_threads(bad, 10)


def test_apply_sets_torch_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert apply_threads({"train": {"threads": "auto"}}, nn.Linear(4, 4)) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
