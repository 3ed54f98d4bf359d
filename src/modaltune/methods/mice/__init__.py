"""MICE: multimodal pan-cancer prognosis with collaborative experts (Zhou et al.), and its baselines.

Implementation spec: ``mice.md`` (architecture (b), losses (c), protocol (d), baselines (e)).

- :mod:`.layers`: the MLP block, the pre-norm transformer ``TF`` and the class-token ``Expert``;
- :mod:`.router`: the per-cancer noisy top-k router (official quirks by default);
- :mod:`.encoders`: one token per modality and the cancer-token synthesis of missing ones;
- :mod:`.model`: :class:`MICE` (``"mice"``), pre-train -> fine-tune stages;
- :mod:`.baselines`: the baselines of the paper's tables (``mice_report``, ``mice_path``,
  ``mice_gene``, ``mice_early``, ``mice_late``, ``mice_multihead``, ``mice_moe``);
- :mod:`.token_baselines`: MCAT and SurvPath with report tokens (``mcat_report``, ``survpath_report``);
- :mod:`.settings`: every ``model.*`` key with its default, and the training protocol.

Importing this package registers the methods.
"""

from . import baselines, token_baselines  # noqa: F401  (registration side effects)
from .model import GROUPS, MICE
from .settings import MODALITIES, MODEL_DEFAULTS

__all__ = ["MICE", "GROUPS", "MODALITIES", "MODEL_DEFAULTS"]
