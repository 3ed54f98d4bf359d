"""Loading Prov-GigaPath's released ``slide_encoder.pth`` into :class:`.longnet.LongNetSlideEncoder`.

Our modules keep GigaPath's / torchscale's parameter names, so the released state dict loads
without renaming. What this module adds is the checks a user needs when it does not: the file
is read with ``weights_only=True`` (no arbitrary unpickling), a tensor whose shape differs from
the model's raises an error that names the key, both shapes, a guess of the checkpoint's size
(:func:`describe_checkpoint`) and the preset to choose, and missing or unexpected keys are
logged and warned about instead of being dropped silently. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...errors import InputError, warn_input

if TYPE_CHECKING:  # only for annotations: .longnet re-exports this module's loader
    from .longnet import LongNetSlideEncoder

__all__ = ["load_gigapath_checkpoint", "read_gigapath_state_dict", "describe_checkpoint"]

log = logging.getLogger(__name__)


_FIX_DOWNLOAD = ("download slide_encoder.pth from the Hugging Face repository prov-gigapath/prov-gigapath "
                 "(after accepting its terms) and point the config's checkpoint at the local file")


def describe_checkpoint(sd: dict[str, torch.Tensor]) -> str:
    """Guess the size of a GigaPath-style state dict, for error messages.

    Args:
        sd: a state dict as returned by :func:`read_gigapath_state_dict`.

    Returns:
        e.g. ``"in_dim=1536, dim=768, depth=12, ffn_dim=3072"``, or ``"unknown size"``.
    """
    parts = []
    w = sd.get("patch_embed.proj.weight")
    if isinstance(w, torch.Tensor) and w.dim() == 2:
        parts.append(f"in_dim={w.shape[1]}, dim={w.shape[0]}")
    layer_ids = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.") and k.split(".")[2].isdigit()}
    if layer_ids:
        parts.append(f"depth={max(layer_ids) + 1}")
    f = sd.get("encoder.layers.0.ffn.fc1.weight")
    if isinstance(f, torch.Tensor) and f.dim() == 2:
        parts.append(f"ffn_dim={f.shape[0]}")
    return ", ".join(parts) if parts else "unknown size"


def read_gigapath_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the state dict of a slide-encoder checkpoint (local file only; nothing is downloaded).

    Accepts a state dict stored under ``"model"`` (GigaPath's format), under ``"state_dict"``, or
    bare; a leading ``module.`` prefix is stripped and GigaPath's fixed ``pos_embed`` table is
    dropped (we compute it on the fly). Uses ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint file.

    Returns:
        The state dict (parameter name -> tensor, on CPU).

    Raises:
        InputError: the file is missing, unreadable, or holds no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("GigaPath slide-encoder checkpoint not found", file=path, fix=_FIX_DOWNLOAD)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise InputError(f"could not read the slide-encoder checkpoint ({type(exc).__name__}: {exc})",
                         file=path, fix=_FIX_DOWNLOAD) from exc
    sd = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError("the checkpoint holds no state dict of tensors (expected GigaPath's "
                         "slide_encoder.pth: {'model': state_dict})", file=path, fix=_FIX_DOWNLOAD)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = dict(sd)
    sd.pop("pos_embed", None)   # fixed sin-cos table (non-persistent in GigaPath); computed on the fly
    return sd


def load_gigapath_checkpoint(model: LongNetSlideEncoder, path: str | Path, strict: bool = False, *,
                             state_dict: dict[str, torch.Tensor] | None = None
                             ) -> tuple[list[str], list[str]]:
    """Load Prov-GigaPath's ``slide_encoder.pth`` into ``model`` (local file only).

    The file is read by :func:`read_gigapath_state_dict` (formats accepted: see there).

    Args:
        model: the encoder to fill (its parameters are replaced in place).
        path: the checkpoint file.
        strict: raise when keys are missing or unexpected (otherwise they are warned about).
        state_dict: the contents of ``path`` when already read with
            :func:`read_gigapath_state_dict` (then ``path`` only names the file in messages).

    Returns:
        ``(missing_keys, unexpected_keys)``; both are logged and, when non-empty, warned about.

    Raises:
        InputError: the file is missing or unreadable, a tensor's shape differs from the model's
            (the message names the key, both shapes and the preset to choose), or ``strict`` and
            keys are missing/unexpected.
    """
    path = Path(path)
    sd = read_gigapath_state_dict(path) if state_dict is None else state_dict

    own = model.state_dict()
    cfg = getattr(model, "cfg", None)
    for k, v in sd.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            ours = (f"in_dim={cfg.in_dim}, dim={cfg.dim}, depth={cfg.depth}, ffn_dim={cfg.ffn_dim}"
                    if cfg is not None else "this model")
            raise InputError(
                f"checkpoint tensor '{k}' has shape {tuple(v.shape)} but the model's is {tuple(own[k].shape)} "
                f"(checkpoint: {describe_checkpoint(sd)}; model: {ours})",
                file=path,
                fix="choose the size preset that matches the checkpoint (LongNetConfig.gigapath(), i.e. "
                    "model.encoder_size: gigapath, for Prov-GigaPath's slide_encoder.pth) and tile features "
                    "of the checkpoint's in_dim")
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if strict and (missing or unexpected):
        raise InputError(f"checkpoint keys do not match the model: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}", file=path,
                         fix="use the size preset matching the checkpoint, or load with strict=False")
    model.load_state_dict(sd, strict=False)
    for name, keys in (("missing", missing), ("unexpected", unexpected)):
        for k in keys:
            log.info("GigaPath checkpoint %s: %s key %s", path, name, k)
    if missing or unexpected:
        warn_input(f"slide-encoder checkpoint loaded with {len(missing)} missing and {len(unexpected)} "
                   f"unexpected keys (missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                   f"unexpected: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''})", file=path,
                   fix="check that the checkpoint is Prov-GigaPath's slide_encoder.pth and the preset matches")
    log.info("loaded GigaPath slide encoder weights from %s (%d tensors)", path, len(sd) - len(unexpected))
    return missing, unexpected
