"""``dmsf_distill``: Subspace Knowledge Distillation into the WSI-only student (paper Sec. III-D.2).

The student's architecture (:class:`.student.DMSFStudent`, same trainable state-dict keys, so the
run starts from the student warm-up's selected weights through ``train.init_from``) plus a frozen
``dmsf_teacher`` run (``model.teacher_run``; the engine loads it after checking it used the same
split and fitted state, so a teacher trained on this fold's test patients is refused, spec (i)
D8). The teacher sits in ``frozen_runs`` (eval mode, no gradient, never saved with the student).

Loss per magnification m (spec (c) "Distillation", code form), as three engine terms summed over
m so ``train.loss_weights`` weighs them (defaults: task 1, kd 0.01, feat 0.01, the code's weights;
the paper's Eq. 18 uses 1 / 1, spec (k) Q4):

- ``task``: the student's task loss;
- ``kd``: ``T^2 KL(softmax(t^m / T) || softmax(s^m / T))``, ``batchmean``, ``T = model.temperature``
  (2); for subtypes over the patient's site's classes, for survival over the hazard logits as the
  code does (spec (k) Q7);
- ``feat``: ``MSE(f_s^m, f_t^m)`` between the student's ``[P_1; P_2]`` and the teacher's
  ``[X_T; X_E]`` of the same magnification (mean over rows and features). ``model.feat_match``:
  ``ordered`` (the code: prototype 1 to the tumor subspace) or ``best`` (per patient the better of
  the two prototype orders, since the prototypes come in the clustering's score order, not in a
  compartment order; :func:`.losses.prototype_mse`).

The teacher runs under ``no_grad`` and only inside :meth:`DMSFDistill.loss`; the KD and feature
terms use only patients that have expression (the teacher's input), others add their task loss
only. Inference (``predict``, ``embed``) is the student's and never touches the teacher or the
omics; an evaluated run is rebuilt without its teacher, and its loss is then the task term alone.

Stages (:meth:`DMSFDistill.stages`): ``teacher`` (``dmsf_teacher``), ``student`` (``dmsf_student``),
``distill`` (this method, from the student's weights, the teacher frozen), the protocol of
spec (d).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo, LossOutput, Stage
from .common import DMSF_VARIANTS, EXPERTS, dmsf_model_defaults, stage_train
from .losses import FEAT_MATCH, kd_kl_loss, prototype_mse
from .student import DMSFStudent
from .teacher import DMSFTeacher

__all__ = ["DMSFDistill"]


@METHODS.register("dmsf_distill")
class DMSFDistill(DMSFStudent):
    """The student distilled from a frozen teacher (module docstring)."""

    requires = frozenset({"bag", "bag_secondary", "fixed_bags", "omics"})   # omics feed the teacher only
    display_name = "DMSF distilled"
    variants = DMSF_VARIANTS
    loss_terms = ("task", "kd", "feat")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Shared DMSF model settings + ``teacher_run``; lr 1e-4, batch 16, loss weights 1 / 0.01 / 0.01."""
        return {"model": {**dmsf_model_defaults(), "teacher_run": None, "feat_match": "ordered"},
                "train": stage_train(1e-4, 16, loss_weights={"task": 1.0, "kd": 0.01, "feat": 0.01})}

    @classmethod
    def stages(cls, cfg: Mapping[str, Any]) -> list[Stage]:
        """Teacher, student warm-up, then distillation from the student with the teacher frozen."""
        return [Stage("teacher", "dmsf_teacher"), Stage("student", "dmsf_student"),
                Stage("distill", "dmsf_distill", init_from="student", frozen=(("teacher", "teacher"),))]

    @classmethod
    def frozen_slots(cls, cfg: Mapping[str, Any]) -> dict[str, str | None]:
        """The frozen teacher run (``model.teacher_run``)."""
        return {"teacher": (cfg.get("model") or {}).get("teacher_run")}

    def __init__(self, cfg: dict, info: CohortInfo, frozen=None):
        super().__init__(cfg, info, frozen)
        self.temperature = float(self.mcfg["temperature"])
        self.feat_match = str(self.mcfg.get("feat_match", "ordered"))
        if self.feat_match not in FEAT_MATCH:
            raise ConfigError(f"model.feat_match must be one of {FEAT_MATCH}, got {self.feat_match!r}")
        teacher = self.teacher
        if teacher is not None:
            if not isinstance(teacher, DMSFTeacher) or teacher.task != self.task:
                raise ConfigError(f"model.teacher_run must be a dmsf_teacher run of task '{self.task}'")
            if int(teacher.dim) != self.dim or int(teacher.n_out) != self.n_out:
                raise ConfigError(f"the teacher (dim {teacher.dim}, {teacher.n_out} outputs) does not match the "
                                  f"student (dim {self.dim}, {self.n_out} outputs); train both with the same "
                                  "model.dim, task and cohort")
            grids = [(c.get("data") or {}).get("grid") for c in (teacher.cfg, cfg)]
            if grids[0] != grids[1]:
                raise ConfigError(f"the teacher was trained on {grids[0]} x {grids[0]} bags but this run uses "
                                  f"data.grid = {grids[1]}; train both with the same data.grid")

    @property
    def teacher(self):
        """The frozen teacher, or None (an evaluated run is rebuilt without it)."""
        return self.frozen_runs["teacher"] if "teacher" in self.frozen_runs else None

    def _kd(self, student: Tensor, teacher: Tensor, batch: Mapping[str, Any], rows: list[int]) -> Tensor:
        """KD over ``rows``: on each site's classes (subtype) or on the hazard logits (survival)."""
        if self.task == "survival":
            return kd_kl_loss(student[rows], teacher[rows], self.temperature)
        sites = self.sites(batch, student.shape[0])
        total = (0 * student.float()).sum()
        groups: dict[str, list[int]] = {}
        for i in rows:
            groups.setdefault(sites[i], []).append(i)
        for site, idx in groups.items():
            sl = self.info.subtype_slice(site)
            total = total + kd_kl_loss(student[idx, sl], teacher[idx, sl], self.temperature) * len(idx)
        return total / len(rows)

    def loss(self, batch: Mapping[str, Any]) -> LossOutput:
        """``task``, ``kd`` and ``feat`` summed over the magnifications (module docstring)."""
        out = self.forward_experts(batch)
        task, logs = self.task_terms(out, batch)
        teacher = self.teacher
        if teacher is None:
            if self.training:
                raise ConfigError("dmsf_distill trains with a frozen teacher: set model.teacher_run to a dmsf_teacher "
                                  "run (`modaltune train dmsf_distill` chains it for you)")
            return LossOutput({"task": task}, logs)
        n = out["m20"]["logits"].shape[0]
        has = self.labels(batch, "has_omics", n, out["m20"]["logits"].device, 1).bool()
        rows = [i for i in range(n) if bool(has[i])]
        if not rows:
            zero = sum((0 * out[e]["features"].float()).sum() for e in EXPERTS)
            return LossOutput({"task": task, "kd": zero, "feat": zero}, logs)
        with torch.no_grad():
            t_out = teacher.forward_experts(batch)
        kd = feat = None
        for e in EXPERTS:
            k = self._kd(out[e]["logits"], t_out[e]["logits"].detach(), batch, rows)
            f = prototype_mse(out[e]["features"][rows], t_out[e]["features"][rows].detach(), self.feat_match)
            logs[f"kd_{e}"], logs[f"feat_{e}"] = float(k.detach()), float(f.detach())
            kd = k if kd is None else kd + k
            feat = f if feat is None else feat + f
        return LossOutput({"task": task, "kd": kd, "feat": feat}, logs)
