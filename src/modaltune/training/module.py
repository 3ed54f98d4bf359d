"""The LightningModule around a Method, the epoch-seeded sampler, the lr schedule, last.ckpt.

``LitMethod.training_step`` asks the method for its :class:`~modaltune.methods.base.LossOutput`,
weights the named terms with ``train.loss_weights`` and returns their sum to Lightning (automatic
optimisation: accumulation, bf16 autocast and DDP as usual). Per-patient methods that receive a
list of patients (``train.batch_size > 1``) are looped over, and their losses averaged.
``on_before_optimizer_step`` runs the gradient policy and the method's gradient hook
(:mod:`modaltune.training.gradients`); epoch and optimiser-step hooks are forwarded to the method.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from torch.utils.data import Sampler

from ..data.dataset import PatientDataset
from ..errors import ConfigError
from ..methods.base import LossOutput, Method, as_loss_output
from ..runs import layout
from ..runs.builders import declaration
from .gradients import GradientHook

__all__ = ["EpochSampler", "LastCheckpoint", "lr_lambda", "LitMethod", "SCHEDULES"]

SCHEDULES = ("cosine", "constant")


class EpochSampler(Sampler[int]):
    """Random order seeded by (seed, epoch): the same order with or without a resume."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
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
        """Write ``last.ckpt``."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        # weights_only=False: the full training state (optimiser, schedule, loops) that --resume needs;
        # said explicitly, so Lightning does not log that it chose it (it reads like an unsafe load)
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str = "cosine"):
    """Linear warm-up to the base lr over ``warmup_steps``, then cosine to 0 at ``total_steps``
    (``schedule="constant"``: the base lr after the warm-up)."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {SCHEDULES}, not '{schedule}'")
    total_steps, warmup_steps = max(1, int(total_steps)), max(0, int(warmup_steps))

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        prog = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, prog))))

    return f


def _mean_outputs(outs: list[LossOutput]) -> LossOutput:
    """Average the terms of per-patient losses (a patient without a term counts as 0 for it)."""
    n = len(outs)
    terms: dict[str, torch.Tensor] = {}
    for o in outs:
        for k, v in o.terms.items():
            if v is not None:
                terms[k] = terms[k] + v if k in terms else v
    logs: dict[str, float] = {}
    for o in outs:
        for k, v in o.logs.items():
            logs[k] = logs.get(k, 0.0) + float(v) / n
    stats: dict[str, torch.Tensor] = {}
    for o in outs:
        for k, v in o.stats.items():
            stats[k] = stats[k] + v if k in stats else v
    return LossOutput({k: v / n for k, v in terms.items()}, logs, stats)


class LitMethod(L.LightningModule):
    """LightningModule around a :class:`Method` (see the module docstring).

    Checkpoints keep only trainable parameters and buffers (see :mod:`modaltune.runs.layout`);
    ``strict_loading`` is off so Lightning restores them into a method whose frozen part was rebuilt
    from the config.
    """

    def __init__(self, method: Method, cfg: dict, train_dataset: PatientDataset | None = None):
        super().__init__()
        self.method = method
        self.cfg = cfg
        self.train_dataset = train_dataset
        self.strict_loading = False
        self.batching = declaration(cfg).batching
        tr = cfg["train"]
        self.loss_weights = {str(k): float(v) for k, v in (tr.get("loss_weights") or {}).items()}
        named = [(n, p) for n, p in method.named_parameters()
                 if p.requires_grad and not n.startswith(layout.FROZEN_PREFIX)]
        self.hook = GradientHook(method, str(tr.get("gradient_policy") or "sum"), named)
        self._loss_sum, self._loss_n = 0.0, 0

    def on_train_epoch_start(self) -> None:
        """Reset the epoch loss, move the dataset to this epoch, forward the hook."""
        self._loss_sum, self._loss_n = 0.0, 0
        if self.train_dataset is not None and hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(self.current_epoch)
        self.method.on_train_epoch_start(int(self.current_epoch))

    def on_train_epoch_end(self) -> None:
        """Forward the hook."""
        self.method.on_train_epoch_end(int(self.current_epoch))

    def _loss(self, batch: Any) -> LossOutput:
        if self.batching == "single" and isinstance(batch, list):
            return _mean_outputs([as_loss_output(self.method.loss(p)) for p in batch])
        return as_loss_output(self.method.loss(batch))

    def training_step(self, batch: Any, batch_idx: int):
        """Weighted sum of the method's loss terms (None: nothing to learn from this batch)."""
        out = self._loss(batch)
        weighted: dict[str, torch.Tensor] = {}
        for name, value in out.terms.items():
            if not isinstance(value, torch.Tensor) or not value.requires_grad:
                continue
            w = self.loss_weights.get(name, 1.0)
            if w != 0.0:
                weighted[name] = value * w if w != 1.0 else value
        if self.hook.active:
            self.hook.observe(weighted, out.stats, int(self.trainer.accumulate_grad_batches) if self._trainer else 1)
        if not weighted:
            return None  # nothing to learn from this batch (e.g. no label for this task)
        loss = None
        for value in weighted.values():
            loss = value if loss is None else loss + value
        value = float(loss.detach().float())
        self._loss_sum += value
        self._loss_n += 1
        self.log("train_loss", value, on_step=True, on_epoch=True, prog_bar=True, batch_size=1, sync_dist=True)
        logs = dict(out.logs or {})
        if len(out.terms) > 1:
            logs.update({k: float(v.detach().float()) for k, v in out.terms.items() if isinstance(v, torch.Tensor)})
        for k, v in logs.items():
            if k != "loss":
                self.log(f"train_{k}", float(v), on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient policy and the method's gradient hook (see :mod:`modaltune.training.gradients`)."""
        if self.hook.active:
            self.hook.apply(lambda t, op: self.trainer.strategy.reduce(t, reduce_op=op), int(self.global_step))

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the method's ``on_after_optimizer_step``."""
        super().optimizer_step(*args, **kwargs)
        self.method.on_after_optimizer_step(int(self.global_step))

    def epoch_loss(self) -> float:
        """Mean training loss of the epoch (over ranks)."""
        t = torch.tensor([self._loss_sum, float(self._loss_n)], dtype=torch.float64, device=self.device)
        if self.trainer is not None and self.trainer.world_size > 1:
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
        return float(t[0] / t[1]) if float(t[1]) > 0 else float("nan")

    def configure_optimizers(self):
        """AdamW over the method's parameter groups; warm-up + cosine (or constant), per step."""
        tr = self.cfg["train"]
        groups = self.method.param_groups(tr)
        opt = torch.optim.AdamW(groups, lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, int(tr["epochs"]))
        warm = int(round(total * float(tr.get("warmup_epochs") or 0) / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, min(warm, total),
                                                                 str(tr.get("schedule") or "cosine")))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable parameters and buffers; record the frozen fingerprint."""
        keep = layout.kept_keys(self.method, prefix="method.")
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["frozen_fingerprint"] = layout.frozen_fingerprint(self.method)
