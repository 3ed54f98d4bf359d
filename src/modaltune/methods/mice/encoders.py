"""MICE's per-modality encoders (one 256-d token each) and the cancer-token synthesis of missing ones.

Spec ``mice.md`` (b) 1-4, from the official code:

- pathology: :class:`~modaltune.encoders.mambamil.MambaMIL` on the standardised patch bag (one bag
  per patient, file order kept; a ragged batch is encoded patient by patient, as the code does);
- genomics: ``MLPB(G, 512) -> MLPB(512, 256)`` (``genomics_encoder: mlp``, the code's ReLU blocks)
  or the paper's SNN (:class:`~modaltune.encoders.genomics.SNNEncoder`, ``snn``);
- report: the standardised report embedding (frozen text encoder, cached by the engine) through
  ``MLPB(Dr, 512) -> MLPB(512, 256)``;
- missing modality ``m``: ``x_m = MLPB_m^hold(256, 256)(E_k)`` from the patient's cancer token ``E_k``
  (adapted from M3AE). A modality is missing when its ``has_*`` flag is false or the input is
  empty; a modality excluded by ``model.modalities`` (the modality ablation) is missing for every
  patient and has no encoder. Synthesised tokens are marked, so the contrastive loss never sees them.

The encoders only run on the patients that have the modality, so a patient without genomics
contributes exactly nothing to the genomics encoder's gradient, and the synthesised token is
``hold_m(E_k)`` bit for bit, whoever else is in the batch (computed one row at a time).
Tokens are assembled in fp32 whatever the autocast dtype of the encoders.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...encoders.genomics import SNNEncoder
from ...encoders.mambamil import MambaMIL
from ...errors import ConfigError, warn_input
from ..base import CohortInfo
from ..inputs import flag, has_bag, has_omics
from .layers import MLPB, mlpb_stack
from .settings import MODALITIES

__all__ = ["ModalityEncoders", "CancerSynthesis", "present_indices", "assemble_tokens"]

Synth = Callable[[str, Tensor], Tensor]


def _has_report(p: Mapping) -> bool:
    return flag(p, "has_report", True) and p.get("report_emb") is not None and p["report_emb"].numel() > 0


_PRESENT = {"pathology": has_bag, "genomics": has_omics, "report": _has_report}


def present_indices(batch: Sequence[Mapping], modality: str) -> list[int]:
    """Positions of the patients of ``batch`` that have ``modality`` (by their ``has_*`` flags and inputs)."""
    return [i for i, p in enumerate(batch) if _PRESENT[modality](p)]


class ModalityEncoders(nn.Module):
    """The encoders of the enabled modalities (see the module docstring).

    Args:
        m: the checked ``model`` settings (:func:`~modaltune.methods.mice.settings.model_settings`).
        info: the cohort (feature, gene and report widths).
        modalities: the modalities to build an encoder for (default: ``m["modalities"]``).
    """

    def __init__(self, m: Mapping, info: CohortInfo, modalities: Sequence[str] | None = None):
        super().__init__()
        self.dim = int(m["dim"])
        drop = float(m["dropout"])
        self.encoders = nn.ModuleDict()
        widths = {"pathology": info.feature_dim, "genomics": info.n_genes, "report": info.report_dim}
        for mod in (modalities if modalities is not None else m["modalities"]):
            if int(widths[mod]) <= 0:
                warn_input(f"MICE: the cohort has no {mod} inputs (width 0); every patient gets the synthesised "
                           f"{mod} token", fix=f"prepare the cohort with {mod} data or drop it from model.modalities")
                continue
            key = {"genomics": "genomics_hidden", "report": "report_hidden"}.get(mod)
            if key and (not m[key] or int(list(m[key])[-1]) != self.dim):
                raise ConfigError(f"model.{key} must end at model.dim={self.dim} (one token per modality), "
                                  f"got {m[key]}")
            if mod == "pathology":
                enc: nn.Module = MambaMIL(int(info.feature_dim), self.dim, int(m["path_attn_dim"]), drop,
                                          str(m["pool_from"]), dict(m.get("mamba") or {}))
            elif mod == "genomics" and m["genomics_encoder"] == "snn":
                enc = SNNEncoder(int(info.n_genes), [int(h) for h in m["genomics_hidden"]], drop)
            elif mod == "genomics":
                enc = mlpb_stack(int(info.n_genes), m["genomics_hidden"], drop)
            else:
                enc = mlpb_stack(int(info.report_dim), m["report_hidden"], drop)
            self.encoders[mod] = enc

    def encode(self, batch: Sequence[Mapping], modality: str, device: torch.device) -> tuple[list[int], Tensor | None]:
        """Real tokens of one modality.

        Returns:
            ``(indices, tokens [n, dim] | None)``: the patients having the modality and their tokens
            (``None`` when no patient has it or it has no encoder).
        """
        if modality not in self.encoders:
            return [], None
        idx = present_indices(batch, modality)
        if not idx:
            return [], None
        enc = self.encoders[modality]
        if modality == "pathology":
            out = torch.cat([enc(batch[i]["bag"].to(device).float()) for i in idx])
        elif modality == "genomics":
            out = enc(torch.stack([batch[i]["omics"].reshape(-1) for i in idx]).to(device).float())
        else:
            out = enc(torch.stack([batch[i]["report_emb"].reshape(-1) for i in idx]).to(device).float())
        return idx, out

    def attention(self, patient: Mapping, device: torch.device) -> Tensor | None:
        """MambaMIL attention ``[N]`` over the patient's patches (``None`` without a WSI or an encoder)."""
        if "pathology" not in self.encoders or not has_bag(patient):
            return None
        return self.encoders["pathology"].forward_attention(patient["bag"].to(device).float())[0]


class CancerSynthesis(nn.Module):
    """Cancer tokens ``E [K, dim]`` (N(0, 1) init) and one ``MLPB^hold(dim, dim)`` per modality.

    Args:
        n_types: number of cancer types ``K``.
        dim: token width.
        dropout: dropout of the hold blocks.
        modalities: the modalities that can be synthesised (all three for MICE).
    """

    def __init__(self, n_types: int, dim: int, dropout: float = 0.2, modalities: Sequence[str] = MODALITIES):
        super().__init__()
        self.cancer_tokens = nn.Parameter(torch.randn(int(n_types), int(dim)))
        self.hold = nn.ModuleDict({mod: MLPB(dim, dim, dropout) for mod in modalities})

    def forward(self, modality: str, k: Tensor) -> Tensor:
        """``hold_m(E[k])`` ``[n, dim]`` for the cancer ids ``k`` ``[n]``.

        Row by row: a matrix product's last bits depend on the number of rows, and a patient's
        synthesised token should not depend on who else is in the batch (it is ``hold_m(E_k)``
        exactly, whatever the batch); the rows are few.
        """
        hold = self.hold[modality]
        return torch.cat([hold(self.cancer_tokens[k[i:i + 1]]) for i in range(k.shape[0])])


def assemble_tokens(encoders: ModalityEncoders, batch: Sequence[Mapping], synth: Synth, k: Tensor,
                    modalities: Sequence[str] = MODALITIES) -> tuple[Tensor, Tensor]:
    """One token per modality and patient, real where present, synthesised elsewhere.

    Args:
        encoders: the modality encoders (a modality without an encoder is always synthesised).
        batch: the patients.
        synth: ``synth(modality, k_missing) -> [n, dim]`` tokens of the patients lacking it.
        k: ``[B]`` cancer ids (long, on the model's device).
        modalities: the token order.

    Returns:
        ``(tokens [B, M, dim] fp32, real [B, M] bool)``.
    """
    b, dim, device = len(batch), encoders.dim, k.device
    cols, real = [], torch.zeros(b, len(modalities), dtype=torch.bool, device=device)
    for j, mod in enumerate(modalities):
        idx, tok = encoders.encode(batch, mod, device)
        col = torch.zeros(b, dim, device=device)
        have = set(idx)
        missing = [i for i in range(b) if i not in have]
        if missing:
            rows = torch.tensor(missing, device=device)
            col = col.index_put((rows,), synth(mod, k[rows]).float())
        if idx:
            rows = torch.tensor(idx, device=device)
            col = col.index_put((rows,), tok.float())
            real[rows, j] = True
        cols.append(col)
    return torch.stack(cols, dim=1), real
