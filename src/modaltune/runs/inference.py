"""One pass over a dataset with a method: embeddings, predictions and loss per patient.

Used by epoch selection (validation), ``evaluate_run``, ``embed_run`` and ``evaluate_ood``. The
method is put in eval mode (and restored), gradients are off, and on a GPU the forward runs under
bf16 autocast when the run's precision is bf16; outputs are returned as float32 NumPy.

Patients are batched as the method declares (``single``: one dict; ``list`` / ``stack``: batches of
``batch_size`` patients, outputs with a leading batch dimension). The loss of a batch is its
weighted sum of terms (``train.loss_weights``), averaged over batches.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.patient import collate_for
from ..methods.base import as_loss_output

__all__ = ["InferenceResult", "infer", "move_to", "autocast_context", "weighted_total"]


@dataclass
class InferenceResult:
    """Per-patient outputs of one pass (rows in dataset order)."""

    ids: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None      # [n, D]
    logits: list[np.ndarray | None] = field(default_factory=list)
    risk: np.ndarray | None = None            # [n] (NaN where the method gives none)
    loss: float = float("nan")                # mean of method.loss over the patients (eval mode)

    @property
    def pred_class(self) -> np.ndarray:
        """Arg-max class per patient (-1 where the method gives no logits)."""
        return np.asarray([int(np.argmax(lg)) if lg is not None and np.size(lg) else -1 for lg in self.logits],
                          dtype=np.int64)


def move_to(obj, device: torch.device):
    """``obj`` (tensors, dicts, lists) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def autocast_context(device: torch.device, precision: str):
    """bf16 / fp16 autocast on a GPU when the precision asks for it, else nothing."""
    if device.type == "cuda" and str(precision).startswith("bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cuda" and str(precision).startswith("16"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _np(x) -> np.ndarray | None:
    if x is None:
        return None
    return x.detach().float().cpu().numpy()


def weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float] | None) -> torch.Tensor | None:
    """``sum_t weights[t] * terms[t]`` over the terms that are tensors (weights default to 1)."""
    total = None
    for name, value in terms.items():
        if value is None:
            continue
        w = float((weights or {}).get(name, 1.0))
        if w == 0.0:
            continue
        part = value * w if w != 1.0 else value
        total = part if total is None else total + part
    return total


def _rows(x, n: int, single: bool) -> list:
    """Per-patient rows of an output: a tensor (batch first unless single) or a list of tensors."""
    if x is None:
        return [None] * n
    if isinstance(x, (list, tuple)):
        return [None if v is None else _np(v).reshape(-1) for v in x]
    x = _np(x)
    return [x.reshape(-1)] if single else [x[i] for i in range(n)]


def infer(method: torch.nn.Module, dataset: Dataset, *, device: torch.device | None = None, precision: str = "32",
          embed: bool = True, predict: bool = False, loss: bool = False, num_workers: int = 0,
          batching: str = "single", batch_size: int = 1, loss_weights: dict[str, float] | None = None
          ) -> InferenceResult:
    """Run ``method.embed`` / ``method.predict`` / ``method.loss`` over every patient of ``dataset``."""
    device = device or next(method.parameters()).device
    single = batching == "single"
    loader = DataLoader(dataset, batch_size=1 if single else max(1, int(batch_size)), shuffle=False,
                        collate_fn=collate_for(batching), num_workers=num_workers)
    out = InferenceResult()
    embs, risks, losses = [], [], []
    was = method.training
    method.eval()
    try:
        with torch.no_grad(), autocast_context(device, precision):
            for batch in loader:
                batch = move_to(batch, device)
                if single:
                    ids, sites = [str(batch["case_id"])], [str(batch["site"])]
                elif isinstance(batch, list):
                    ids, sites = [str(p["case_id"]) for p in batch], [str(p["site"]) for p in batch]
                else:
                    ids, sites = [str(c) for c in batch["case_id"]], [str(s) for s in batch["site"]]
                out.ids += ids
                out.sites += sites
                if embed:
                    embs += [e.reshape(-1) for e in _rows(method.embed(batch), len(ids), single)]
                if predict:
                    p = method.predict(batch) or {}
                    out.logits += _rows(p.get("logits"), len(ids), single)
                    r = _rows(p.get("risk"), len(ids), single)
                    risks += [float(np.reshape(v, -1)[0]) if v is not None else float("nan") for v in r]
                if loss:
                    total = weighted_total(as_loss_output(method.loss(batch)).terms, loss_weights)
                    v = float(total.detach().float()) if total is not None else float("nan")
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
