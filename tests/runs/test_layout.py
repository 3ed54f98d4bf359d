"""Run-directory weights: a kept epoch (a Lightning checkpoint of the training module) loads like best.ckpt."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modaltune.errors import InputError
from modaltune.runs import layout


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))


def test_a_lightning_checkpoint_loads_through_its_method_prefix(tmp_path):
    src, dst = _net(0), _net(1)
    lightning = {"state_dict": {**{f"method.{k}": v for k, v in src.state_dict().items()},
                                "loss_scale": torch.ones(1)},            # training-module state: not the method's
                 "epoch": 3}
    torch.save(lightning, tmp_path / "epoch=003.ckpt")
    meta = layout.load_weights(dst, tmp_path / "epoch=003.ckpt")
    assert meta["epoch"] == 3
    for a, b in zip(src.parameters(), dst.parameters()):
        torch.testing.assert_close(a, b)


def test_save_weights_round_trip_and_a_foreign_checkpoint_is_refused(tmp_path):
    src, dst = _net(0), _net(1)
    layout.save_weights(src, tmp_path / "best.ckpt", epoch=1)
    layout.load_weights(dst, tmp_path / "best.ckpt")
    torch.testing.assert_close(src[1].weight, dst[1].weight)
    torch.save({"state_dict": {"method.other.weight": torch.zeros(2)}}, tmp_path / "x.ckpt")
    with pytest.raises(InputError, match="does not fit the method"):
        layout.load_weights(dst, tmp_path / "x.ckpt")
