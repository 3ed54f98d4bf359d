"""Hyper-parameters of the LongNet slide encoder and the segment lengths it can run with.

Kept apart from the modules so that settings can be validated (and sizes compared with a
checkpoint) without building a model.

Segment lengths. ModalTune's Table 6 lists ``[1024, 2048, 4096, 8192, 16384]`` (the default of
torchscale's ``make_longnet_from_name`` and of the LongNet configs in GigaPath's repository), but
GigaPath's ``LongNetViT`` overrides it with ``get_optimal_segment_length(max_wsi_size=262144,
tile_size=256)`` = ``2 ** linspace(10, 20, 5)`` = ``[1024, 5792, 32768, 185363, 1048576]``, which
is what the released checkpoint runs with and ModalTune's code inherits. We default to GigaPath's
values; pass ``segment_lengths=(1024, 2048, 4096, 8192, 16384)`` for the Table 6 listing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import ConfigError

__all__ = ["LongNetConfig", "GIGAPATH_SEGMENT_LENGTHS", "TABLE6_SEGMENT_LENGTHS"]

#: Segment lengths GigaPath's slide encoder actually runs with (``2 ** linspace(10, 20, 5)``).
GIGAPATH_SEGMENT_LENGTHS: tuple[int, ...] = (1024, 5792, 32768, 185363, 1048576)
#: Segment lengths as listed in ModalTune's Table 6 (torchscale's LongNet default).
TABLE6_SEGMENT_LENGTHS: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)


@dataclass
class LongNetConfig:
    """Hyper-parameters of the LongNet slide encoder (defaults: Prov-GigaPath's released model).

    Attributes:
        in_dim: tile-feature width (1536 for the Prov-GigaPath tile encoder).
        dim: model width. depth: layers. heads: attention heads. ffn_dim: FFN hidden width.
        segment_lengths, dilated_ratios: the dilated-attention branches (see
            :mod:`modaltune.encoders.slide.dilated_attention`).
        dropout: residual / FFN / embedding dropout (GigaPath fine-tuning used 0.25; frozen use: 0).
        drop_path: maximum stochastic-depth rate (layer ``i`` uses ``linspace(0, p, depth)[i]``).
        tile_size: the position grid cell in level-0 pixels (GigaPath: 256).
        grid_size: cells per side of GigaPath's position table (1000); only used to warn when a
            tile falls outside the table GigaPath was trained with.
        checkpoint_activations: recompute each layer in backward (memory ~ one layer's
            activations instead of ``depth``); only affects :meth:`LongNetSlideEncoder.forward`.
    """

    in_dim: int = 1536
    dim: int = 768
    depth: int = 12
    heads: int = 16
    ffn_dim: int = 3072
    segment_lengths: tuple[int, ...] = GIGAPATH_SEGMENT_LENGTHS
    dilated_ratios: tuple[int, ...] = (1, 2, 4, 8, 16)
    dropout: float = 0.0
    drop_path: float = 0.0
    tile_size: int = 256
    grid_size: int = 1000
    checkpoint_activations: bool = False

    def __post_init__(self) -> None:
        self.segment_lengths = tuple(int(s) for s in self.segment_lengths)
        self.dilated_ratios = tuple(int(r) for r in self.dilated_ratios)
        for name in ("in_dim", "dim", "depth", "heads", "ffn_dim", "tile_size", "grid_size"):
            v = getattr(self, name)
            if int(v) != v or int(v) <= 0:
                raise ConfigError(f"LongNetConfig.{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        if self.dim % self.heads:
            raise ConfigError(f"LongNetConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.dim % 4:
            raise ConfigError(f"LongNetConfig.dim ({self.dim}) must be divisible by 4 (2-D sin-cos "
                              "position embedding)")
        if not self.segment_lengths or len(self.segment_lengths) != len(self.dilated_ratios):
            raise ConfigError("LongNetConfig.segment_lengths and dilated_ratios must be non-empty and "
                              f"of equal length, got {self.segment_lengths} and {self.dilated_ratios}")
        if min(self.segment_lengths) <= 0 or min(self.dilated_ratios) <= 0:
            raise ConfigError("LongNetConfig.segment_lengths and dilated_ratios must be positive")
        for name in ("dropout", "drop_path"):
            v = float(getattr(self, name))
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"LongNetConfig.{name} must be in [0, 1), got {v}")
            setattr(self, name, v)

    @property
    def head_dim(self) -> int:
        """Width of one attention head (``dim // heads``)."""
        return self.dim // self.heads

    @classmethod
    def gigapath(cls, **overrides: Any) -> "LongNetConfig":
        """Prov-GigaPath ``gigapath_slide_enc12l768d``: 1536 -> 768, 12 layers, 16 heads, FFN 3072."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def small(cls, in_dim: int, dim: int = 128, depth: int = 4, heads: int = 4, ffn_dim: int = 512,
              segment_lengths: Sequence[int] = (64, 128, 256, 512, 1024),
              dilated_ratios: Sequence[int] = (1, 2, 4, 8, 16), **overrides: Any) -> "LongNetConfig":
        """A small encoder of the same architecture, for tests and CPU experiments (random init)."""
        return cls(in_dim=in_dim, dim=dim, depth=depth, heads=heads, ffn_dim=ffn_dim,
                   segment_lengths=tuple(segment_lengths), dilated_ratios=tuple(dilated_ratios),
                   **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (tuples as lists), e.g. for YAML or JSON."""
        d = dataclasses.asdict(self)
        d["segment_lengths"] = list(self.segment_lengths)
        d["dilated_ratios"] = list(self.dilated_ratios)
        return d
