"""One pass over a dataset with a method: embeddings, predictions and loss per patient.

Used by epoch selection (validation), ``evaluate_run``, ``embed_run`` and ``evaluate_ood``. The
method is put in eval mode (and restored), gradients are off, and on a GPU the forward runs under
bf16 autocast when the run's precision is bf16; outputs are returned as float32 NumPy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.dataset import collate_single

__all__ = ["InferenceResult", "infer", "move_to", "autocast_context"]


@dataclass
class InferenceResult:
    ids: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None      # [n, D]
    logits: list[np.ndarray | None] = field(default_factory=list)
    risk: np.ndarray | None = None            # [n] (NaN where the method gives none)
    loss: float = float("nan")                # mean of method.loss over the patients (eval mode)

    @property
    def pred_class(self) -> np.ndarray:
        return np.asarray([int(np.argmax(lg)) if lg is not None and np.size(lg) else -1 for lg in self.logits],
                          dtype=np.int64)


def move_to(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def autocast_context(device: torch.device, precision: str):
    if device.type == "cuda" and str(precision).startswith("bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cuda" and str(precision).startswith("16"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _np(x) -> np.ndarray | None:
    if x is None:
        return None
    return x.detach().float().cpu().numpy()


def infer(method: torch.nn.Module, dataset: Dataset, *, device: torch.device | None = None, precision: str = "32",
          embed: bool = True, predict: bool = False, loss: bool = False, num_workers: int = 0) -> InferenceResult:
    """Run ``method.embed`` / ``method.predict`` / ``method.loss`` over every patient of ``dataset``."""
    device = device or next(method.parameters()).device
    loader = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_single, num_workers=num_workers)
    out = InferenceResult()
    embs, risks, losses = [], [], []
    was = method.training
    method.eval()
    try:
        with torch.no_grad(), autocast_context(device, precision):
            for batch in loader:
                batch = move_to(batch, device)
                out.ids.append(str(batch["case_id"]))
                out.sites.append(str(batch["site"]))
                if embed:
                    embs.append(_np(method.embed(batch)).reshape(-1))
                if predict:
                    p = method.predict(batch) or {}
                    out.logits.append(None if p.get("logits") is None else _np(p["logits"]).reshape(-1))
                    r = p.get("risk")
                    risks.append(float(_np(r).reshape(-1)[0]) if r is not None else float("nan"))
                if loss:
                    value, _ = method.loss(batch)
                    v = float(value.detach().float())
                    if np.isfinite(v):
                        losses.append(v)
    finally:
        method.train(was)
    if embed:
        out.embeddings = np.stack(embs).astype(np.float32) if embs else np.zeros((0, 0), np.float32)
    if predict:
        out.risk = np.asarray(risks, dtype=np.float64)
    if losses:
        out.loss = float(np.mean(losses))
    return out
