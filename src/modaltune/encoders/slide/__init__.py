"""Slide encoders (whole-slide aggregators over tile features).

Prov-GigaPath's LongNet slide encoder (dilated attention), split by concern:

- :mod:`.config`: :class:`LongNetConfig` and the segment-length presets;
- :mod:`.kernels`: attention returning its log-sum-exp, and the fast-kernel switches;
- :mod:`.dilated_attention`: the dilated branches, their merge and the dispatcher;
- :mod:`.fused_cpu`: the fused CPU autograd function used by the dispatcher;
- :mod:`.longnet`: the layers, the sin-cos position embedding and :class:`LongNetSlideEncoder`;
- :mod:`.gigapath_checkpoint`: loading Prov-GigaPath's ``slide_encoder.pth``;
- :mod:`.factory`: :func:`build_slide_encoder`, the one builder from settings, registered in
  :data:`modaltune.registry.SLIDE_ENCODERS` as ``"longnet"``.

The names below are the package's public API; import them from ``modaltune.encoders.slide``.
"""

from __future__ import annotations

from .config import GIGAPATH_SEGMENT_LENGTHS, TABLE6_SEGMENT_LENGTHS, LongNetConfig
from .factory import build_slide_encoder
from .gigapath_checkpoint import load_gigapath_checkpoint
from .longnet import LongNetLayer, LongNetSlideEncoder

__all__ = ["LongNetConfig", "LongNetSlideEncoder", "LongNetLayer", "build_slide_encoder",
           "load_gigapath_checkpoint", "GIGAPATH_SEGMENT_LENGTHS", "TABLE6_SEGMENT_LENGTHS"]
