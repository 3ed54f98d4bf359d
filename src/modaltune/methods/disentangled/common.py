"""What the DMSF teacher, student and distillation methods share: config, task loss, dual experts.

Why one base: the three methods of the protocol (spec (d): teacher -> student warm-up ->
distillation) must agree on the task, the class weights, the model width and the combination of
the two magnifications, and a chain (``modaltune train dmsf_distill``) resolves every stage with
the same overrides, so the three share one ``model`` section (:func:`dmsf_model_defaults`); keys a
method does not use are ignored by it (the student reads no ``subspaces``).

- Magnifications ("experts"): ``m20`` reads ``batch["bag"]`` (the cohort's primary features, 20x in
  the paper and the synthetic cohort) and ``m10`` reads ``batch["bag_secondary"]`` (10x), both
  fixed-size ``[B, grid^2, D]`` bags in (y, x) raster order (spec (k) Q8, Q15).
- Task (``model.task``): ``subtype`` -- weighted cross-entropy over the patient's site's classes
  (pooled heads give each site its own logits, ``CohortInfo.subtype_slice``) with weights
  ``w_c = max_k n_k / n_c`` from the training patients (``class_weights: balanced``; spec (c)
  [OURS], the official weights were hard-coded from all patients, spec (i) D9), a class without
  training patients weighs 1; ``class_weights: none`` = plain CE. ``survival`` -- discrete-time
  NLL with ``surv_alpha`` 0 (spec (c)). Patients without a label contribute nothing.
- Dual-expert head (spec (b), official ``combination_type: max_confidence``): per patient, the
  10x logits when their maximal softmax probability is larger than the 20x one, else the 20x
  logits (ties -> 20x). For survival the code applies the same rule to the softmax over hazard
  logits, kept for parity (spec (k) Q7). ``combine: mean`` averages instead: the class
  probabilities (logits returned as their log) or the two survival risks.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import deep_merge
from ...encoders.deformable import DeformableAttention2D
from ...errors import ConfigError
from ..base import CohortInfo, GradientContext, Method
from ..losses import balanced_class_weights, nll_survival_loss, survival_risk
from .losses import class_confidence, coordinate_rows, partial_logits, survival_confidence

__all__ = ["DMSF_VARIANTS", "EXPERTS", "BAG_KEY", "TASKS", "COMBINE", "dmsf_model_defaults", "stage_train", "choose_10x",
           "DMSFBase"]

EXPERTS = ("m20", "m10")
BAG_KEY = {"m20": "bag", "m10": "bag_secondary"}
TASKS = ("subtype", "survival")
COMBINE = ("max_confidence", "mean")


def dmsf_model_defaults() -> dict[str, Any]:
    """The ``model`` section shared by ``dmsf_teacher``, ``dmsf_student`` and ``dmsf_distill``."""
    return {
        "task": "subtype", "class_weights": "balanced", "surv_alpha": 0.0,
        "dim": 128, "dropout": 0.1, "combine": "max_confidence",
        "dca": {"dim_head": 64, "heads": 8, "offset_groups": 8, "downsample_factor": 4, "offset_kernel_size": 6,
                "offset_scale": 4.0},
        # teacher
        "subspaces": {"tumor": ["TUMOR_*"], "tme": ["TME_*"]}, "hvg_fraction": 0.3, "hvg_random": False,
        "snn_hidden": [64, 48, 32], "snn_activation": "elu", "selection_query": "fused", "selection_heads": 8,
        "cgc": True, "cgc_projection": "paper", "dev_weight": 1.0e4, "dev_form": "code",
        "withhold_genes": 0.0,
        # student / distillation
        "ita_k": 5, "ita_variant": "code", "temperature": 2.0,
    }


#: the paper's ablations (Table III: gradient coordination; Table IV: which genes), as named
#: variants of the teacher and the distilled student (``dmsf_teacher:no_cgc``); the plain method is
#: CGC + IGC on 30 % highly variable genes (the tables' "both" and "30 % HVG" rows)
DMSF_VARIANTS: dict[str, tuple[str, dict]] = {
    "none": ("no CGC, no IGC", {"model": {"cgc": False, "dev_weight": 0.0}}),
    "cgc_only": ("CGC only", {"model": {"dev_weight": 0.0}}),
    "igc_only": ("IGC only", {"model": {"cgc": False}}),
    **{f"hvg{p}": (f"{p} % HVG", {"model": {"hvg_fraction": p / 100}}) for p in (10, 50, 80)},
    "random_genes": ("random 30 % genes", {"model": {"hvg_random": True}}),
}


def stage_train(lr: float, batch_size: int, **extra: Any) -> dict[str, Any]:
    """A stage's ``train`` defaults (spec (d) [OURS]: AdamW wd 0.01, 10 epochs, 1 warm-up epoch + cosine)."""
    return {"epochs": 10, "lr": lr, "weight_decay": 0.01, "warmup_epochs": 1, "batch_size": batch_size,
            "schedule": "cosine", **extra}


def choose_10x(logits_20x: Tensor, logits_10x: Tensor) -> Tensor:
    """Max-confidence rule: True where the 10x softmax is strictly more confident (ties -> 20x)."""
    return F.softmax(logits_10x.float(), -1).amax(-1) > F.softmax(logits_20x.float(), -1).amax(-1)


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"model.{key} must be one of {allowed}, got {value!r}")
    return str(value)


class DMSFBase(Method):
    """Base of the DMSF methods (module docstring): settings, task loss, confidences, combination."""

    batching: ClassVar[str] = "stack"
    evaluation: ClassVar[str] = "predict"
    tasks: ClassVar[tuple[str, ...]] = TASKS
    task_runs: ClassVar[tuple[str, ...]] = TASKS
    family: ClassVar[str] = "Disentangled"
    family_order: ClassVar[int] = 60
    #: the paper selects classification models on AUC (spec (k) Q14), survival on the C-index
    select_metrics: ClassVar[dict[str, str]] = {"subtype": "val_auc", "survival": "val_c_index"}
    #: whether the method reads both magnifications (the SML baseline reads 10x only)
    two_magnifications: ClassVar[bool] = True

    def __init__(self, cfg: dict, info: CohortInfo, frozen: Mapping[str, nn.Module] | None = None):
        super().__init__(cfg, info, frozen)
        self.mcfg = deep_merge(dmsf_model_defaults(), dict(cfg.get("model") or {}), strict=False)
        self.task = _choice(self.mcfg["task"], TASKS, "task")
        self.combine_mode = _choice(self.mcfg["combine"], COMBINE, "combine")
        weighting = _choice(self.mcfg["class_weights"], ("balanced", "none"), "class_weights")
        self.dim = int(self.mcfg["dim"])
        self.n_out = int(info.n_classes) if self.task == "subtype" else int(info.n_bins)
        if not info.feature_dim_secondary or (self.two_magnifications and not info.feature_dim):
            raise ConfigError(f"'{self.label()}' needs two magnifications, but the cohort has feature widths "
                              f"{info.feature_dim} / {info.feature_dim_secondary}; prepare it with "
                              "--features-secondary")
        self.register_buffer("class_weights", self._class_weights(weighting), persistent=False)

    # ------------------------------------------------------------------ building blocks
    def _class_weights(self, weighting: str) -> Tensor:
        """One weight per logit of the head: ``max_k n_k / n_c`` within each site's slice."""
        if self.task != "subtype" or weighting == "none":
            return torch.ones(max(1, self.n_out))
        return balanced_class_weights(self.info, self.n_out)

    def make_dca(self) -> DeformableAttention2D:
        """A deformable attention block with the configured geometry (spec (b), 93,921 parameters at 128)."""
        d = dict(self.mcfg["dca"])
        return DeformableAttention2D(self.dim, dim_head=int(d["dim_head"]), heads=int(d["heads"]),
                                     offset_groups=int(d["offset_groups"]),
                                     downsample_factor=int(d["downsample_factor"]),
                                     offset_kernel_size=int(d["offset_kernel_size"]),
                                     offset_scale=float(d["offset_scale"]), dropout=float(self.mcfg["dropout"]))

    def feature_dims(self) -> dict[str, int]:
        """Input width of each magnification's features."""
        return {"m20": int(self.info.feature_dim), "m10": int(self.info.feature_dim_secondary)}

    @staticmethod
    def bag(batch: Mapping[str, Any], expert: str) -> Tensor:
        """``[B, N, D]`` features of one magnification."""
        x = batch[BAG_KEY[expert]]
        return (x.unsqueeze(0) if x.dim() == 2 else x).float()

    @staticmethod
    def sites(batch: Mapping[str, Any], n: int) -> list[str]:
        """The site of every row."""
        s = batch.get("site", "")
        return [str(v) for v in s] if isinstance(s, (list, tuple)) else [str(s)] * n

    def site_groups(self, batch: Mapping[str, Any], n: int) -> dict[str, list[int]]:
        """Rows of the batch per site (order of first appearance)."""
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(self.sites(batch, n)):
            groups.setdefault(s, []).append(i)
        return groups

    @staticmethod
    def labels(batch: Mapping[str, Any], key: str, n: int, device: torch.device, default: float) -> Tensor:
        """A per-patient label as a ``[n]`` tensor on ``device``."""
        v = batch.get(key)
        if v is None:
            return torch.full((n,), default, device=device)
        return torch.as_tensor(v, device=device).reshape(-1)

    # ------------------------------------------------------------------ task loss and confidence
    def survival_targets(self, batch: Mapping[str, Any], n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(bin, event, known)`` of every row."""
        y = self.labels(batch, "survival_bin", n, device, -1).long()
        event = self.labels(batch, "event", n, device, 0.0).float()
        known = self.labels(batch, "has_survival", n, device, 1).bool() & (y >= 0)
        return y, event, known

    def task_loss(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        """Weighted CE over the rows' site classes, or the survival NLL; a graph-keeping 0 without labels."""
        n, device = logits.shape[0], logits.device
        zero = (0 * logits.float()).sum()
        if self.task == "survival":
            y, event, known = self.survival_targets(batch, n, device)
            if not bool(known.any()):
                return zero
            return nll_survival_loss(logits[known], y[known], event[known], alpha=float(self.mcfg["surv_alpha"]))
        y = self.labels(batch, "subtype", n, device, -1).long()
        num, den = zero, logits.new_zeros((), dtype=torch.float32)
        for site, rows in self.site_groups(batch, n).items():
            sl = self.info.subtype_slice(site)
            idx = torch.tensor(rows, device=device)
            yr = y[idx]
            keep = (yr >= 0) & (yr < sl.stop - sl.start)
            if not bool(keep.any()):
                continue
            w = self.class_weights[sl].float()
            num = num + F.cross_entropy(logits[idx[keep], sl].float(), yr[keep], weight=w, reduction="sum")
            den = den + w[yr[keep]].sum()
        return num / den if float(den) > 0 else zero

    def confidence(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        """Batch confidence of (partial) logits on the true label (CGC; see :mod:`.losses`)."""
        n, device = logits.shape[0], logits.device
        if self.task == "survival":
            y, event, known = self.survival_targets(batch, n, device)
            return survival_confidence(logits.detach(), y, event, known)
        y = self.labels(batch, "subtype", n, device, -1).long()
        total = logits.new_zeros((), dtype=torch.float32)
        for site, rows in self.site_groups(batch, n).items():
            sl = self.info.subtype_slice(site)
            idx = torch.tensor(rows, device=device)
            yr = y[idx]
            yr = torch.where(yr < sl.stop - sl.start, yr, torch.full_like(yr, -1))
            total = total + class_confidence(logits.detach()[idx, sl], yr)
        return total

    # ------------------------------------------------------------------ CGC
    def cgc_stats(self, key: str, x_tumor: Tensor, x_tme: Tensor, classifier: nn.Linear,
                  batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Batch confidences of a classifier's tumor and TME partial logits, as ``stats`` for CGC."""
        bias = None if classifier.bias is None else classifier.bias.detach()
        parts = partial_logits(x_tumor.detach(), x_tme.detach(), classifier.weight.detach(), bias)
        return {f"cgc_{key}_tumor": self.confidence(parts[0], batch), f"cgc_{key}_tme": self.confidence(parts[1], batch)}

    def cgc_apply(self, key: str, classifier: nn.Linear, ctx: GradientContext, mode: str) -> None:
        """Coordinate the two halves of ``classifier.weight.grad`` with the step's summed confidences."""
        weight = classifier.weight
        k_t, k_e = f"cgc_{key}_tumor", f"cgc_{key}_tme"
        if weight.grad is None or k_t not in ctx.stats or k_e not in ctx.stats:
            return
        grad, d = weight.grad, weight.shape[1] // 2
        g_t, g_e, _ = coordinate_rows(grad[:, :d], grad[:, d:], float(ctx.stats[k_t]), float(ctx.stats[k_e]), mode)
        with torch.no_grad():
            grad[:, :d].copy_(g_t)
            grad[:, d:].copy_(g_e)

    # ------------------------------------------------------------------ dual experts
    def combine(self, logits: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Any]:
        """``predict``'s output from the two experts' head outputs (module docstring)."""
        l20, l10 = logits["m20"].float(), logits["m10"].float()
        n = l20.shape[0]
        if self.task == "survival":
            if self.combine_mode == "mean":
                return {"logits": None, "risk": (survival_risk(l20) + survival_risk(l10)) / 2}
            chosen = torch.where(choose_10x(l20, l10)[:, None], l10, l20)
            return {"logits": None, "risk": survival_risk(chosen)}
        rows: list[Tensor | None] = [None] * n
        groups = self.site_groups(batch, n)
        for site, idx in groups.items():
            sl = self.info.subtype_slice(site)
            a, b = l20[idx, sl], l10[idx, sl]
            if self.combine_mode == "mean":
                out = torch.log((F.softmax(a, -1) + F.softmax(b, -1)) / 2)
            else:
                out = torch.where(choose_10x(a, b)[:, None], b, a)
            for j, i in enumerate(idx):
                rows[i] = out[j]
        if len(groups) == 1:
            return {"logits": torch.stack(rows), "risk": None}   # type: ignore[arg-type]
        return {"logits": rows, "risk": None}

    @classmethod
    def model_section(cls, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The merged ``model`` section of ``cfg`` (defaults under the user's values)."""
        return deep_merge(dmsf_model_defaults(), copy.deepcopy(dict(cfg.get("model") or {})), strict=False)
