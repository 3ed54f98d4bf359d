"""Training: losses, the Lightning engine, epoch selection and run-directory I/O.

The engine is imported lazily (``modaltune.training.train_method`` etc.), because methods import
``modaltune.training.losses`` and the engine imports the methods.
"""

from __future__ import annotations

_ENGINE = ("train_method", "evaluate_run", "evaluate_ood", "embed_run", "build_method", "cohort_info", "load_run",
           "LitMethod")

__all__ = list(_ENGINE)


def __getattr__(name: str):
    if name in _ENGINE:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'modaltune.training' has no attribute '{name}'")
