"""WSI baselines of ModalTune Sec. 4.2 / Table 2: ABMIL, TransMIL and GigaPath (tuned).

* ``abmil`` -- gated-attention MIL (Ilse et al. 2018) over the patch features + linear head
  (``model.gated: false`` for the plain attention scorer of the disentangled paper's ABMIL).
* ``transmil`` -- TransMIL (Shao et al. 2021): Nystrom attention, PPEG, class token + head.
* ``gigapath_tuned`` -- the Prov-GigaPath slide encoder (LongNet; Xu et al. 2024) fine-tuned
  end to end with a linear head on its slide embedding. ``model.slide_size`` picks the
  encoder size: ``"small"`` (default, CPU-friendly, randomly initialised) or ``"gigapath"``
  (12 layers x 768, load weights with ``model.checkpoint``); ``model.slide_kwargs`` overrides
  single LongNetConfig fields (None = the size's default). The ModalTune paper does not state
  the fine-tuning recipe; we use the shared baseline schedule with a lower learning rate.

A patient without a slide (``has_wsi`` False or an empty bag) is represented by a learned
"missing-WSI" embedding instead of the encoder output.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...encoders.mil import ABMIL, TransMIL
from ...errors import ConfigError
from ...registry import METHODS, SLIDE_ENCODERS
from ..base import CohortInfo
from ..inputs import as_bag, has_bag
from .label_method import LabelMethod, merged_config

__all__ = ["WSIBranch", "WSI_ENCODER_DEFAULTS", "build_wsi_branch", "ABMILMethod", "TransMILMethod",
           "GigaPathTunedMethod"]

#: Encoder settings of each WSI branch (also used, nested under ``model.wsi``, by late fusion).
WSI_ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    # gated: Ilse et al.'s gated attention (Eq. 9, CLAM / ModalTune); false = the plain tanh attention
    # (Eq. 8) of the disentangled paper's ABMIL baseline (spec (f)).
    "abmil": {"dim": 512, "attn_dim": 256, "dropout": 0.25, "gated": True},
    "transmil": {"dim": 512, "heads": 8, "landmarks": None, "pinv_iterations": 6, "dropout": 0.1},
    # slide_kwargs: LongNetConfig fields; None keeps the default of the chosen size.
    "gigapath": {"slide_size": "small", "checkpoint": None,
                 "slide_kwargs": {"dim": None, "depth": None, "heads": None, "ffn_dim": None,
                                  "segment_lengths": None, "dilated_ratios": None, "dropout": None,
                                  "drop_path": None, "checkpoint_activations": None}},
}


class _LongNetMIL(nn.Module):
    """Adapts the LongNet slide encoder (the registered ``longnet`` factory) to
    ``forward_features(bag, coords)``."""

    def __init__(self, in_dim: int, size: str, slide_kwargs: dict, checkpoint: str | None):
        super().__init__()
        self.encoder = SLIDE_ENCODERS.get("longnet")(size, in_dim, slide_kwargs, checkpoint, warn_random=False)
        self.out_dim = int(self.encoder.cfg.dim)

    def forward_features(self, bag: Tensor, coords: Tensor | None) -> Tensor:
        """Slide embedding [B, dim] of a bag [B, N, D] at level-0 coordinates [B, N, 2]."""
        if coords is None:
            coords = torch.zeros(*bag.shape[:2], 2, device=bag.device)
        return self.encoder(bag, coords.float())


class WSIBranch(nn.Module):
    """One slide encoder + learned missing-WSI embedding: patient dict -> [1,H]."""

    def __init__(self, encoder: nn.Module, out_dim: int, uses_coords: bool = False):
        super().__init__()
        self.encoder = encoder
        self.out_dim = out_dim
        self.uses_coords = uses_coords
        self.missing = nn.Parameter(torch.randn(1, out_dim) * 0.02)

    def forward(self, batch: dict) -> Tensor:
        """Slide embedding ``[1, H]`` (the learned missing embedding without a slide)."""
        if not has_bag(batch):
            return self.missing
        bag, coords = as_bag(batch, self.missing.device)
        if self.uses_coords:
            return self.encoder.forward_features(bag.float(), coords)
        return self.encoder.forward_features(bag.float())


def build_wsi_branch(kind: str, m: dict, info: CohortInfo) -> WSIBranch:
    """Build the ``kind`` ("abmil" | "transmil" | "gigapath") branch from settings ``m``."""
    d = info.feature_dim
    if d <= 0:
        raise ConfigError(f"the {kind} baseline needs patch features (cohort feature_dim is {d})")
    if kind == "abmil":
        enc = ABMIL(d, dim=m["dim"], attn_dim=m["attn_dim"], dropout=m["dropout"], gated=bool(m.get("gated", True)))
        return WSIBranch(enc, enc.out_dim)
    if kind == "transmil":
        enc = TransMIL(d, dim=m["dim"], heads=m["heads"], landmarks=m.get("landmarks"),
                       pinv_iterations=m["pinv_iterations"], dropout=m["dropout"])
        return WSIBranch(enc, enc.out_dim)
    if kind == "gigapath":
        enc = _LongNetMIL(d, m["slide_size"], m.get("slide_kwargs") or {}, m.get("checkpoint"))
        return WSIBranch(enc, enc.out_dim, uses_coords=True)
    raise ConfigError(f"unknown WSI branch {kind!r}; known: {sorted(WSI_ENCODER_DEFAULTS)}")


class _WSIMethod(LabelMethod):
    requires: ClassVar[frozenset[str]] = frozenset({"bag"})
    family: ClassVar[str] = "WSI"
    family_order: ClassVar[int] = 10
    kind: ClassVar[str] = ""
    train_overrides: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return merged_config(dict(WSI_ENCODER_DEFAULTS[cls.kind]), dict(cls.train_overrides))

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        self.wsi = build_wsi_branch(self.kind, self.mcfg, info)
        self.head = self.make_head(self.wsi.out_dim)

    def represent(self, batch: dict) -> Tensor:
        return self.wsi(batch)


@METHODS.register("abmil")
class ABMILMethod(_WSIMethod):
    """ABMIL (Ilse et al. 2018) baseline: gated attention pooling + linear head."""

    kind = "abmil"
    display_name = "ABMIL"


@METHODS.register("transmil")
class TransMILMethod(_WSIMethod):
    """TransMIL (Shao et al. 2021) baseline: class-token embedding + linear head."""

    kind = "transmil"
    display_name = "TransMIL"


@METHODS.register("gigapath_tuned")
class GigaPathTunedMethod(_WSIMethod):
    """GigaPath (tuned): LongNet slide encoder fine-tuned end to end + linear head."""

    kind = "gigapath"
    display_name = "GigaPath tuned"
    train_overrides = {"lr": 5e-5}
