"""Slide encoders (whole-slide aggregators over tile features).

- :mod:`.longnet`: Prov-GigaPath's LongNet slide encoder (dilated attention), registered in
  :data:`modaltune.registry.SLIDE_ENCODERS` as ``"longnet"``.
"""

from __future__ import annotations

from .longnet import (
    GIGAPATH_SEGMENT_LENGTHS,
    TABLE6_SEGMENT_LENGTHS,
    LongNetConfig,
    LongNetLayer,
    LongNetSlideEncoder,
    build_longnet,
    dilated_attention,
    load_gigapath_checkpoint,
)

__all__ = ["LongNetConfig", "LongNetSlideEncoder", "LongNetLayer", "load_gigapath_checkpoint",
           "build_longnet", "dilated_attention", "GIGAPATH_SEGMENT_LENGTHS", "TABLE6_SEGMENT_LENGTHS"]
