"""Run-directory files: names, weights, cohort info, environment metadata.

Checkpoints hold the *trainable* parameters and all persistent buffers of the method, not its frozen
parameters (e.g. a frozen 86M-parameter slide encoder), which are rebuilt from the config: from the
pretrained checkpoint the config names, or from the same seeded random initialisation. A
fingerprint of the frozen parameters is stored with the weights and checked on loading, so a
mismatch (another pretrained file, another seed) is reported instead of silently mixing weights.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import InputError, warn_input
from ..methods.base import CohortInfo

__all__ = ["CONFIG", "SPLIT", "STATE", "INFO", "HISTORY", "BEST", "RUN", "METRICS", "PREDICTIONS", "EMBEDDINGS",
           "CHECKPOINTS", "FIGURES", "LAST", "kept_keys", "weights_state", "frozen_fingerprint", "save_weights",
           "load_weights", "info_to_dict", "info_from_dict", "environment", "now"]

CONFIG, SPLIT, STATE, INFO = "config.yaml", "split.csv", "fitted_state.json", "cohort_info.json"
HISTORY, BEST, RUN = "history.csv", "best.ckpt", "run.json"
METRICS, PREDICTIONS, EMBEDDINGS = "metrics.json", "predictions.csv", "embeddings.npz"
CHECKPOINTS, FIGURES, LAST = "checkpoints", "figures", "last.ckpt"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------------------------
# weights


def kept_keys(module: nn.Module, prefix: str = "") -> set[str]:
    """State-dict keys saved in checkpoints: trainable parameters + persistent buffers."""
    keys = {prefix + n for n, p in module.named_parameters() if p.requires_grad}
    params = {prefix + n for n, _ in module.named_parameters()}
    keys |= {k for k in module.state_dict(prefix=prefix) if k not in params}
    return keys


def weights_state(module: nn.Module) -> dict[str, torch.Tensor]:
    keep = kept_keys(module)
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if k in keep}


def frozen_fingerprint(module: nn.Module) -> list[float]:
    """[count, sum, sum of squares] of the frozen parameters (float64)."""
    n, s, s2 = 0, 0.0, 0.0
    with torch.no_grad():
        for p in module.parameters():
            if not p.requires_grad:
                x = p.detach().double()
                n += x.numel()
                s += float(x.sum())
                s2 += float((x * x).sum())
    return [float(n), s, s2]


def fingerprints_match(a, b) -> bool:
    if a is None or b is None:
        return True
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))


def save_weights(module: nn.Module, path: str | Path, **meta: Any) -> None:
    """Weights-only checkpoint ``{"state_dict", "frozen_fingerprint", **meta}`` (loadable with weights_only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"state_dict": weights_state(module), "frozen_fingerprint": frozen_fingerprint(module), **meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_weights(module: nn.Module, path: str | Path, strip_prefix: str = "") -> dict:
    """Load a checkpoint written by :func:`save_weights` (or a Lightning one) into ``module``.

    Missing keys must be frozen parameters; anything else missing or unexpected is an error.
    Returns the checkpoint's metadata (everything but the state dict).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("checkpoint not found", file=path, fix="train the run first (modaltune train)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt)
    if strip_prefix:
        sd = {k[len(strip_prefix):]: v for k, v in sd.items() if k.startswith(strip_prefix)}
    res = module.load_state_dict(sd, strict=False)
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    bad_missing = [k for k in res.missing_keys if k not in frozen]
    if bad_missing or res.unexpected_keys:
        raise InputError(f"checkpoint does not fit the method: missing {bad_missing[:5]}, unexpected "
                         f"{list(res.unexpected_keys)[:5]}", file=path,
                         fix="evaluate with the config.yaml and cohort_info.json written with the run")
    if not fingerprints_match(ckpt.get("frozen_fingerprint"), frozen_fingerprint(module)):
        warn_input("the frozen parameters rebuilt from the config differ from those used in training "
                   "(another pretrained checkpoint or seed?)", file=path,
                   fix="keep model.checkpoint and seed as in the run's config.yaml")
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


# ----------------------------------------------------------------------------------------------
# cohort info


def info_to_dict(info: CohortInfo) -> dict:
    return {"feature_dim": int(info.feature_dim), "feature_dim_secondary": int(info.feature_dim_secondary),
            "n_genes": int(info.n_genes), "pathways": [np.asarray(p).astype(int).tolist() for p in info.pathways],
            "pathway_names": list(info.pathway_names), "n_classes": int(info.n_classes), "n_bins": int(info.n_bins),
            "sites": list(info.sites), "text_dim": int(info.text_dim), "task": str(info.task)}


def info_from_dict(d: Mapping) -> CohortInfo:
    return CohortInfo(feature_dim=int(d["feature_dim"]), feature_dim_secondary=int(d["feature_dim_secondary"]),
                      n_genes=int(d["n_genes"]), pathways=[np.asarray(p, dtype=np.int64) for p in d["pathways"]],
                      pathway_names=list(d["pathway_names"]), n_classes=int(d["n_classes"]),
                      n_bins=int(d["n_bins"]), sites=list(d["sites"]), text_dim=int(d["text_dim"]),
                      task=str(d["task"]))


def read_info(path: str | Path) -> CohortInfo:
    return info_from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------------------------
# environment


def environment() -> dict:
    """Package, torch and device versions for run.json."""
    import lightning

    try:
        from .. import __version__ as version
    except ImportError:  # pragma: no cover
        version = "unknown"
    cuda = torch.cuda.is_available()
    return {"modaltune_version": version, "torch_version": torch.__version__,
            "lightning_version": lightning.__version__, "python_version": platform.python_version(),
            "platform": platform.platform(), "cuda_available": cuda,
            "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "cuda_version": torch.version.cuda}
