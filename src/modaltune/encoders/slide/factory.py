"""The registered way to build a LongNet slide encoder from settings.

Interim home of the registry factory while the encoder is split into files.
"""

from __future__ import annotations

import dataclasses

from ...errors import ConfigError
from ...registry import SLIDE_ENCODERS
from .config import LongNetConfig
from .gigapath_checkpoint import load_gigapath_checkpoint
from .longnet import LongNetSlideEncoder

__all__ = ["build_longnet"]


@SLIDE_ENCODERS.register("longnet")
def build_longnet(cfg: dict | None = None) -> LongNetSlideEncoder:
    """Factory for the registry: ``{"preset": "gigapath"|"small", "checkpoint": path|None, **fields}``.

    ``preset`` (alias ``size``) defaults to ``"gigapath"``; ``"small"`` needs ``in_dim``. Other keys
    override :class:`LongNetConfig` fields. A ``checkpoint`` is loaded with
    :func:`load_gigapath_checkpoint` (``strict`` key, default False).
    """
    cfg = dict(cfg or {})
    preset = cfg.pop("preset", cfg.pop("size", "gigapath"))
    ckpt = cfg.pop("checkpoint", None)
    strict = bool(cfg.pop("strict", False))
    fields_ = {f.name for f in dataclasses.fields(LongNetConfig)}
    unknown = sorted(set(cfg) - fields_)
    if unknown:
        raise ConfigError(f"unknown LongNet config keys {unknown}; known: {sorted(fields_)}")
    if preset == "gigapath":
        conf = LongNetConfig.gigapath(**cfg)
    elif preset == "small":
        if "in_dim" not in cfg:
            raise ConfigError("the 'small' LongNet preset needs in_dim (the tile-feature width)")
        conf = LongNetConfig.small(**cfg)
    else:
        raise ConfigError(f"LongNet preset must be 'gigapath' or 'small', got {preset!r}")
    model = LongNetSlideEncoder(conf)
    if ckpt is not None:
        load_gigapath_checkpoint(model, ckpt, strict=strict)
    return model
