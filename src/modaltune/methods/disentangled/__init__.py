"""The disentangled histology-transcriptomics framework (Zhang et al.; spec ``disentangled.md``).

Importing this package registers:

- ``dmsf_teacher`` (:mod:`.teacher`): WSI at 20x and 10x + tumor / TME gene subspaces, deformable
  cross-attention per subspace and magnification, CGC gradient coordination and the IGC/DEV loss;
- ``dmsf_student`` (:mod:`.student`): WSI-only, deformable self-attention + DPC-KNN token
  aggregation into two prototypes per magnification, trained on labels ("Ours (Stu)");
- ``dmsf_distill`` (:mod:`.distill`): the student refined from a frozen teacher by KD + feature MSE
  ("Ours (Dst)"); its ``stages`` chain teacher -> student -> distillation;
- ``sml`` (:mod:`.sml`): the conference model (10x only), a baseline.

Shared parts: :mod:`.common` (settings, task loss, dual-expert combination), :mod:`.losses` (DEV,
KD, CGC maths), :mod:`.subspaces` (gene subspaces and HVG selection), :mod:`.snn` (MaxNet).
"""

from . import distill, sml, student, teacher  # noqa: F401  (registration side effects)
from .distill import DMSFDistill
from .sml import SML
from .student import DMSFStudent
from .teacher import DMSFTeacher

__all__ = ["DMSFTeacher", "DMSFStudent", "DMSFDistill", "SML"]
