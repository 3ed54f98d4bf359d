"""Late-fusion multi-modal baselines of ModalTune Sec. 4.2 / Table 2.

A WSI branch (ABMIL, TransMIL or tuned GigaPath, see :mod:`.wsi`) and the Gene Mixer branch
(ModalTune's transcriptomics encoder, see :mod:`.genomics`) each give one vector per patient;
they are fused and passed through ``Linear -> ReLU -> Dropout`` (width ``model.hidden``) and the
task head. Both branches are trained end to end.

* ``*_cat`` -- concatenation (Mobadersany et al., PNAS 2018): ``[h_wsi; h_gen]``.
* ``*_kp`` -- Kronecker product (Chen et al., Pathomic Fusion, IEEE TMI 2022): each branch is
  first projected to ``model.fusion_dim`` (32) by ``Linear + ReLU``, a constant 1 is appended to
  both so the unimodal terms survive, and the flattened outer product
  ``[h_wsi, 1] (x) [h_gen, 1]`` of size ``(a+1)(b+1)`` is fused. Pathomic Fusion's
  attention gating of each modality and its skip connection are left out (the ModalTune paper
  names only the Kronecker product).

Registered: ``abmil_cat``, ``abmil_kp``, ``transmil_cat``, ``transmil_kp``, ``gigapath_cat``,
``gigapath_kp``. Config: ``model.wsi`` (settings of the WSI branch, as for the WSI baseline),
``model.genomics`` (Gene Mixer settings), ``model.hidden``, ``model.fusion_dim``,
``model.dropout``. Missing modalities use each branch's learned missing embedding.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...registry import METHODS
from ..base import CohortInfo
from .genomics import OMICS_ENCODER_DEFAULTS, build_omics_branch
from .label_method import LabelMethod, merged_config
from .wsi import WSI_ENCODER_DEFAULTS, build_wsi_branch

__all__ = ["kronecker_fusion", "LateFusionMethod"]


def kronecker_fusion(a: Tensor, b: Tensor) -> Tensor:
    """Flattened outer product of ``[a, 1]`` and ``[b, 1]``: [B,p] x [B,q] -> [B,(p+1)(q+1)]."""
    one_a = a.new_ones(a.shape[0], 1)
    one_b = b.new_ones(b.shape[0], 1)
    a1, b1 = torch.cat([a, one_a], dim=1), torch.cat([b, one_b], dim=1)
    return torch.einsum("bi,bj->bij", a1, b1).flatten(1)


class LateFusionMethod(LabelMethod):
    """WSI branch + Gene Mixer branch, fused by concatenation or Kronecker product."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics"})
    family: ClassVar[str] = "Multi-modal"
    family_order: ClassVar[int] = 30
    wsi_kind: ClassVar[str] = ""
    fusion: ClassVar[str] = "cat"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """WSI and Gene Mixer branch settings, fusion width, dropout."""
        extra_train = {"lr": 5e-5} if cls.wsi_kind == "gigapath" else {}
        return merged_config({
            "wsi": copy.deepcopy(WSI_ENCODER_DEFAULTS[cls.wsi_kind]),
            "genomics": copy.deepcopy(OMICS_ENCODER_DEFAULTS["gene_mixer"]),
            "hidden": 256,
            "fusion_dim": 32,
            "dropout": 0.25,
        }, extra_train)

    def __init__(self, cfg: dict, info: CohortInfo):
        super().__init__(cfg, info)
        m = self.mcfg
        defaults = self.default_config()["model"]
        wsi_cfg = {**defaults["wsi"], **(m.get("wsi") or {})}
        gen_cfg = {**defaults["genomics"], **(m.get("genomics") or {})}
        self.wsi = build_wsi_branch(self.wsi_kind, wsi_cfg, info)
        self.omics = build_omics_branch("gene_mixer", gen_cfg, info)
        if self.fusion == "kp":
            f = m["fusion_dim"]
            self.proj_wsi = nn.Sequential(nn.Linear(self.wsi.out_dim, f), nn.ReLU())
            self.proj_gen = nn.Sequential(nn.Linear(self.omics.out_dim, f), nn.ReLU())
            fused = (f + 1) * (f + 1)
        else:
            fused = self.wsi.out_dim + self.omics.out_dim
        self.post = nn.Sequential(nn.Linear(fused, m["hidden"]), nn.ReLU(), nn.Dropout(m["dropout"]))
        self.head = self.make_head(m["hidden"])

    def fuse(self, h_wsi: Tensor, h_gen: Tensor) -> Tensor:
        """Concatenation or Kronecker product of the two branch vectors."""
        if self.fusion == "kp":
            return kronecker_fusion(self.proj_wsi(h_wsi), self.proj_gen(h_gen))
        return torch.cat([h_wsi, h_gen], dim=-1)

    def represent(self, batch: dict) -> Tensor:
        """Fused representation ``[1, hidden]`` of one patient."""
        return self.post(self.fuse(self.wsi(batch), self.omics(batch)))


def _register(name: str, wsi_kind: str, fusion: str) -> type:
    doc = (f"Late fusion of {wsi_kind} and Gene Mixer by "
           f"{'concatenation' if fusion == 'cat' else 'Kronecker product'}.")
    label = {"abmil": "ABMIL", "transmil": "TransMIL", "gigapath": "GigaPath"}[wsi_kind]
    cls = type(f"LateFusion_{name}", (LateFusionMethod,), {"wsi_kind": wsi_kind, "fusion": fusion, "__doc__": doc,
                                                         "__module__": __name__,
                                                         "display_name": f"{label} ({fusion if fusion == 'cat' else 'KP'})"})
    globals()[cls.__name__] = cls  # importable by name (pickling, introspection)
    return METHODS.register(name)(cls)


for _wsi, _prefix in (("abmil", "abmil"), ("transmil", "transmil"), ("gigapath", "gigapath")):
    for _fusion in ("cat", "kp"):
        _register(f"{_prefix}_{_fusion}", _wsi, _fusion)
