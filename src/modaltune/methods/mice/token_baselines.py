"""MCAT and SurvPath with report tokens: the last row of MICE's baselines (spec ``mice.md`` (e)).

``mcat_report`` / ``survpath_report`` are :class:`~modaltune.methods.baselines.multimodal.MCATMethod`
and :class:`~modaltune.methods.baselines.multimodal.SurvPathMethod` with ``model.tokens: report``:
the pathway tokens are replaced by the report's token states from the frozen report encoder (the
``report`` config section; BioBERT via ``hf`` in MICE's setting, at most 512 real tokens) through
``Linear(Dr, dim)``, "substitut[ing] the genomics features with text features from the same text
encoder" [MICE §4.5]. The pathology side is MCAT's / SurvPath's own and unchanged; expression is
not read. A patient without a report is kept: one learned missing-report token stands in for its
report tokens (MICE's learned missing embedding of a single-cohort run), so every method of the
table is scored on the same test patients (spec (i) 12); a patient without a slide gets the
learned missing-WSI token, as in ``mcat`` / ``survpath``.

Protocol as MICE's other per-cohort baselines (spec (i) 11): survival only, one run per cohort
(site) trained from scratch for 20 epochs, one patient per step, AdamW 1e-4 with a constant rate,
5 discrete-time bins, the NLL at ``alpha = 0``, scored by the C-index of the risk ``-sum_t S_t``.
They sit in the ``MICE`` family of the benchmark tables beside MICE's baselines.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import ConfigError
from ...registry import METHODS
from ..base import CohortInfo
from ..baselines.multimodal import MCATMethod, SurvPathMethod
from .settings import mice_config

__all__ = ["MCATReport", "SurvPathReport"]


class _ReportTokenBaseline:
    """MICE's protocol over an MCAT / SurvPath class with ``model.tokens: report`` (a mixin)."""

    family: ClassVar[str] = "MICE"
    family_order: ClassVar[int] = 50
    tasks: ClassVar[tuple[str, ...]] = ("survival",)
    task_runs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The model's own widths, report tokens, survival; MICE's per-cohort schedule."""
        model = {**super().default_config()["model"], "task": "survival", "tokens": "report",  # type: ignore[misc]
                 "surv_alpha": 0.0}
        return mice_config(model, contrastive=False, per_cohort=True)

    def __init__(self, cfg: dict, info: CohortInfo):
        cls = type(self)
        name = getattr(cls, "registry_name", cls.__name__)
        task = {**cls.default_config()["model"], **(cfg.get("model") or {})}["task"]
        if task != "survival":
            raise ConfigError(f"{name} is survival only (MICE's benchmark), got model.task={task!r}")
        if cls.token_source(cfg) != "report":  # type: ignore[attr-defined]
            raise ConfigError(f"{name} reads report tokens; use '{name.removesuffix('_report')}' for "
                              "model.tokens=pathways")
        super().__init__(cfg, info)  # type: ignore[call-arg]


@METHODS.register("mcat_report")
class MCATReport(_ReportTokenBaseline, MCATMethod):
    """MCAT with report tokens as the co-attention queries (MICE's baseline, ref 30)."""

    display_name: ClassVar[str] = "MCAT (report)"


@METHODS.register("survpath_report")
class SurvPathReport(_ReportTokenBaseline, SurvPathMethod):
    """SurvPath with report tokens in place of the pathway tokens (MICE's baseline, ref 31)."""

    display_name: ClassVar[str] = "SurvPath (report)"
