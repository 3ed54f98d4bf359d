"""The LightningModule around a Method, the epoch-seeded sampler, the lr schedule, last.ckpt."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import Callback
from torch.utils.data import Sampler

from ..data.dataset import PatientDataset
from ..methods.base import Method
from . import io

__all__ = ["EpochSampler", "LastCheckpoint", "lr_lambda", "LitMethod"]


# ----------------------------------------------------------------------------------------------
# Lightning pieces


class EpochSampler(Sampler[int]):
    """Random order seeded by (seed, epoch): the same order with or without a resume."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class LastCheckpoint(Callback):
    """Full training state (weights, optimiser, scheduler, loop, callbacks) at the end of every
    epoch, written atomically to ``checkpoints/last.ckpt``; ``--resume`` continues from it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warm-up to the base lr over ``warmup_steps``, then cosine to 0 at ``total_steps``."""
    total_steps, warmup_steps = max(1, int(total_steps)), max(0, int(warmup_steps))

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        prog = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, prog))))

    return f


class LitMethod(L.LightningModule):
    """LightningModule around a :class:`Method`: ``training_step`` = ``method.loss(batch)``.

    Checkpoints keep only trainable parameters and buffers (see ``io.py``); ``strict_loading`` is
    off so Lightning restores them into a method whose frozen part was rebuilt from the config.
    """

    def __init__(self, method: Method, cfg: dict, train_dataset: PatientDataset | None = None):
        super().__init__()
        self.method = method
        self.cfg = cfg
        self.train_dataset = train_dataset
        self.strict_loading = False
        self._loss_sum, self._loss_n = 0.0, 0

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = 0.0, 0
        if self.train_dataset is not None and hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int):
        loss, logs = self.method.loss(batch)
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return None  # nothing to learn from this patient (e.g. no label for this task)
        value = float(loss.detach().float())
        self._loss_sum += value
        self._loss_n += 1
        self.log("train_loss", value, on_step=True, on_epoch=True, prog_bar=True, batch_size=1, sync_dist=True)
        for k, v in (logs or {}).items():
            if k != "loss":
                self.log(f"train_{k}", float(v), on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        return loss

    def epoch_loss(self) -> float:
        t = torch.tensor([self._loss_sum, float(self._loss_n)], dtype=torch.float64, device=self.device)
        if self.trainer is not None and self.trainer.world_size > 1:
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
        return float(t[0] / t[1]) if float(t[1]) > 0 else float("nan")

    def configure_optimizers(self):
        tr = self.cfg["train"]
        params = [p for p in self.method.trainable_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, int(tr["epochs"]))
        warm = int(round(total * float(tr.get("warmup_epochs") or 0) / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, min(warm, total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = io.kept_keys(self.method, prefix="method.")
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["frozen_fingerprint"] = io.frozen_fingerprint(self.method)

