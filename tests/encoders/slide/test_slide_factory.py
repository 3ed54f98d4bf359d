"""Tests of the registered LongNet builder (encoders/slide/factory.py).

The two builders it replaces (``methods/modaltune/model.py::build_slide_encoder`` and
``methods/baselines/wsi.py::_LongNetMIL``) are written out below as they were, so the test shows
that the factory returns the same module (same parameters for the same seed and settings).
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from modaltune.encoders.slide import build_slide_encoder
from modaltune.encoders.slide.config import LongNetConfig
from modaltune.encoders.slide.gigapath_checkpoint import load_gigapath_checkpoint
from modaltune.encoders.slide.longnet import LongNetSlideEncoder
from modaltune.errors import ConfigError, InputError, InputWarning
from modaltune.registry import SLIDE_ENCODERS

torch.set_num_threads(1)

TINY = {"dim": 32, "depth": 2, "heads": 4, "ffn_dim": 64}


def old_modaltune_builder(model_cfg: dict, feature_dim: int) -> LongNetSlideEncoder:
    """``methods/modaltune/model.py::build_slide_encoder`` before the factory (its checks and warning left out)."""
    size = model_cfg.get("encoder_size", "gigapath")
    overrides = dict(model_cfg.get("encoder") or {})
    cfg = LongNetConfig.gigapath() if size == "gigapath" else LongNetConfig.small(overrides.pop("in_dim", feature_dim))
    ckpt = model_cfg.get("checkpoint")
    in_dim = overrides.pop("in_dim", None)
    overrides["in_dim"] = int(feature_dim if in_dim is None else in_dim)
    encoder = LongNetSlideEncoder(dataclasses.replace(cfg, **overrides))
    if ckpt is not None:
        load_gigapath_checkpoint(encoder, ckpt, strict=False)
    return encoder


def old_wsi_builder(in_dim: int, size: str, slide_kwargs: dict, checkpoint) -> LongNetSlideEncoder:
    """``methods/baselines/wsi.py::_LongNetMIL`` before the factory (its encoder)."""
    kw = {k: v for k, v in (slide_kwargs or {}).items() if v is not None}
    cfg = LongNetConfig.small(in_dim, **kw) if size == "small" else LongNetConfig.gigapath(**{"in_dim": in_dim, **kw})
    encoder = LongNetSlideEncoder(cfg)
    if checkpoint:
        load_gigapath_checkpoint(encoder, checkpoint, strict=False)
    return encoder


def seeded(fn, *args, seed=3, **kwargs):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        return fn(*args, **kwargs)


def assert_same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.cfg == b.cfg


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    torch.manual_seed(100)
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": LongNetSlideEncoder(LongNetConfig.small(16, **TINY)).state_dict()}, path)
    return path


@pytest.mark.parametrize("size,overrides", [
    ("small", TINY),
    ("small", {**TINY, "segment_lengths": [8, 16], "dilated_ratios": [1, 2], "dropout": 0.1}),
    ("gigapath", {"dim": 64, "depth": 1, "heads": 4, "ffn_dim": 96}),
])
def test_same_module_as_the_old_builders(size, overrides):
    new = seeded(build_slide_encoder, size, 16, overrides)
    old_mt = seeded(old_modaltune_builder, {"encoder_size": size, "encoder": overrides}, 16)
    old_wsi = seeded(old_wsi_builder, 16, size, overrides, None)
    assert_same_module(new, old_mt)
    assert_same_module(new, old_wsi)
    assert seeded(build_slide_encoder, size, 16, overrides, seed=4).state_dict()["cls_token"].ne(
        new.state_dict()["cls_token"]).any()                     # the seed matters


def test_same_module_with_a_checkpoint(tiny_checkpoint):
    new = seeded(build_slide_encoder, "small", 16, TINY, str(tiny_checkpoint))
    assert_same_module(new, seeded(old_modaltune_builder, {"encoder_size": "small", "encoder": TINY,
                                                           "checkpoint": str(tiny_checkpoint)}, 16))
    assert_same_module(new, seeded(old_wsi_builder, 16, "small", TINY, str(tiny_checkpoint)))
    saved = torch.load(tiny_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in new.state_dict().items())


def test_none_overrides_keep_the_preset_and_registry_returns_the_factory():
    assert SLIDE_ENCODERS.get("longnet") is build_slide_encoder
    model = seeded(build_slide_encoder, "small", 16, {**TINY, "dropout": None, "drop_path": None})
    assert model.cfg == LongNetConfig.small(16, **TINY)
    assert seeded(build_slide_encoder, "small", 16, {**TINY, "in_dim": 16}).cfg.in_dim == 16


def test_unknown_keys_bad_size_and_contradicting_in_dim():
    with pytest.raises(ConfigError, match=r"unknown LongNet slide-encoder settings \['depht'\]; known: .*'depth'"):
        build_slide_encoder("small", 16, {"depht": 2})
    with pytest.raises(ConfigError, match="size must be one of"):
        build_slide_encoder("huge", 16)
    with pytest.raises(ConfigError, match="in_dim override contradicts"):
        build_slide_encoder("small", 16, {**TINY, "in_dim": 32})
    with pytest.raises(ConfigError, match="divisible by heads"):
        build_slide_encoder("small", 16, {"dim": 30, "heads": 4})


def test_in_dim_mismatch_with_a_checkpoint_names_the_file(tiny_checkpoint):
    with pytest.raises(InputError) as err:
        build_slide_encoder("small", 24, TINY, str(tiny_checkpoint))
    msg = str(err.value)
    assert "expects 16-d tile features" in msg and "24-d" in msg
    assert str(tiny_checkpoint) in msg and "fix:" in msg
    with pytest.raises(InputError, match="not found"):
        build_slide_encoder("small", 16, TINY, str(tiny_checkpoint.with_name("missing.pth")))


def test_random_initialisation_is_warned_unless_asked_not_to(tiny_checkpoint):
    with pytest.warns(InputWarning, match="randomly initialised"):
        build_slide_encoder("small", 16, TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_slide_encoder("small", 16, TINY, warn_random=False)
        build_slide_encoder("small", 16, TINY, str(tiny_checkpoint))


def test_presets():
    cfg = LongNetConfig.gigapath()
    assert cfg.segment_lengths == (1024, 5792, 32768, 185363, 1048576)
    assert (cfg.in_dim, cfg.dim, cfg.depth, cfg.heads, cfg.ffn_dim) == (1536, 768, 12, 16, 3072)
    with torch.device("meta"):
        big = build_slide_encoder("gigapath", 1536, warn_random=False)
    assert big.cfg == cfg and len(big.layers) == 12
