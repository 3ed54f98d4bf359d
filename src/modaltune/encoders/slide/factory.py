"""The one way to build a LongNet slide encoder from settings (registered as ``"longnet"``).

ModalTune (frozen encoder under the Modal Adapter) and the fine-tuned GigaPath baseline both turn
the same few settings into an encoder: a size preset, the tile-feature width of the cohort,
overrides of single :class:`~.config.LongNetConfig` fields, and an optional Prov-GigaPath
checkpoint. Doing it in one place keeps the checks identical for both: unknown settings are a
:class:`~modaltune.errors.ConfigError` that lists the known ones, a checkpoint made for other
tile features is an :class:`~modaltune.errors.InputError` naming the file before an 86 M
parameter model is built, and a randomly initialised encoder is warned about, since results are
then not Prov-GigaPath's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, InputError, warn_input_once
from ...registry import SLIDE_ENCODERS
from .config import LongNetConfig
from .gigapath_checkpoint import describe_checkpoint, load_gigapath_checkpoint, read_gigapath_state_dict
from .longnet import LongNetSlideEncoder

__all__ = ["build_slide_encoder", "slide_encoder_config", "SIZES"]

#: Size presets: Prov-GigaPath's released encoder and a small one of the same architecture.
SIZES: tuple[str, ...] = ("gigapath", "small")


def slide_encoder_config(size: str, in_dim: int, overrides: dict | None = None) -> LongNetConfig:
    """The :class:`~.config.LongNetConfig` of a size preset with single fields overridden.

    Args:
        size: ``"gigapath"`` (12 x 768, 16 heads, FFN 3072) or ``"small"`` (4 x 128, 4 heads).
        in_dim: tile-feature width of the data.
        overrides: :class:`~.config.LongNetConfig` fields; ``None`` values keep the preset's value.
            An ``in_dim`` entry must equal ``in_dim`` (the width comes from the data).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unknown size, unknown field (the message lists the known ones), an ``in_dim``
            override that contradicts the data, or an invalid value.
    """
    if size not in SIZES:
        raise ConfigError(f"LongNet slide-encoder size must be one of {list(SIZES)}, got {size!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"LongNet slide-encoder overrides must be a mapping of LongNetConfig fields, "
                          f"got {type(overrides).__name__}")
    kw: dict[str, Any] = {k: v for k, v in (overrides or {}).items() if v is not None}
    known = sorted(f.name for f in dataclasses.fields(LongNetConfig))
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise ConfigError(f"unknown LongNet slide-encoder settings {unknown}; known: {known}")
    if "in_dim" in kw:
        if int(kw.pop("in_dim")) != int(in_dim):
            raise ConfigError(f"the slide encoder's in_dim override contradicts the tile features "
                              f"({in_dim}-d); remove it, the width is taken from the data")
    if size == "small":
        return LongNetConfig.small(int(in_dim), **kw)
    return LongNetConfig.gigapath(in_dim=int(in_dim), **kw)


@SLIDE_ENCODERS.register("longnet")
def build_slide_encoder(size: str, in_dim: int, overrides: dict | None = None, checkpoint: str | None = None,
                        *, warn_random: bool = True) -> LongNetSlideEncoder:
    """Build a LongNet slide encoder, optionally with Prov-GigaPath weights.

    The encoder is initialised from the global torch RNG (so a seed fixes it) and then, when a
    checkpoint is given, overwritten by it (``strict=False``: missing or unexpected keys are
    warned about, a shape mismatch is an error).

    Args:
        size: ``"gigapath"`` or ``"small"`` (see :func:`slide_encoder_config`).
        in_dim: tile-feature width of the data.
        overrides: :class:`~.config.LongNetConfig` fields to override (``None`` values ignored).
        checkpoint: a local ``slide_encoder.pth`` (``None`` or ``""``: random initialisation).
        warn_random: warn when the encoder stays randomly initialised.

    Returns:
        The encoder (in training mode, parameters trainable; freezing is the caller's choice).

    Raises:
        ConfigError: see :func:`slide_encoder_config`.
        InputError: the checkpoint is missing or unreadable, was made for tile features of
            another width than ``in_dim``, or does not match the size preset.
    """
    cfg = slide_encoder_config(size, in_dim, overrides)
    state = None
    if checkpoint:
        state = read_gigapath_state_dict(checkpoint)
        _check_in_dim(state, cfg.in_dim, checkpoint)
    encoder = LongNetSlideEncoder(cfg)
    if state is not None:
        load_gigapath_checkpoint(encoder, checkpoint, strict=False, state_dict=state)
    elif warn_random:
        warn_input_once("random-slide-encoder",
                        "no slide-encoder checkpoint is set (model.checkpoint is null): the LongNet slide encoder "
                        "is randomly initialised, so results are not those of Prov-GigaPath (said once)",
                        fix="set model.checkpoint to Prov-GigaPath's slide_encoder.pth for the paper's setting")
    return encoder


def _check_in_dim(state: dict[str, torch.Tensor], in_dim: int, checkpoint: str | Path) -> None:
    """Refuse a checkpoint whose patch embedding expects tile features of another width."""
    w = state.get("patch_embed.proj.weight")
    if isinstance(w, torch.Tensor) and w.dim() == 2 and int(w.shape[1]) != int(in_dim):
        raise InputError(f"the slide-encoder checkpoint expects {int(w.shape[1])}-d tile features but the "
                         f"data has {in_dim}-d features (checkpoint: {describe_checkpoint(state)})",
                         file=checkpoint,
                         fix="extract tile features with the checkpoint's tile encoder (Prov-GigaPath: the "
                             "1536-d GigaPath tile encoder), or drop model.checkpoint to train a randomly "
                             "initialised encoder")
