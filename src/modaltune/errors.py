"""User-facing errors and warnings.

Every problem with a user's input is reported through :class:`InputError` (fatal) or
:func:`warn_input` (recoverable). Both messages name the file, the case and the fix,
so a researcher can act on them without reading our code.
"""

from __future__ import annotations

import warnings
from pathlib import Path


class ModaltuneError(Exception):
    """Base class of the errors modaltune raises on purpose."""


class InputError(ModaltuneError, ValueError):
    """A problem with the user's input files or settings."""

    def __init__(self, problem: str, *, file: str | Path | None = None, case: str | None = None,
                 fix: str | None = None):
        self.problem, self.file, self.case, self.fix = problem, file, case, fix
        super().__init__(format_problem(problem, file=file, case=case, fix=fix))


class CheckpointError(InputError):
    """A checkpoint that cannot be read: corrupt, truncated, or holding Python objects (refused, never
    unpickled: a crafted checkpoint could run code when loaded)."""


class ConfigError(ModaltuneError, ValueError):
    """An invalid configuration value or key."""


class InputWarning(UserWarning):
    """A recoverable problem with the user's input (the data is kept, the fact recorded)."""


def format_problem(problem: str, *, file=None, case=None, fix=None) -> str:
    """One line: the problem, then file, case and fix when given."""
    parts = [problem]
    if file is not None:
        parts.append(f"file: {file}")
    if case is not None:
        parts.append(f"case: {case}")
    if fix is not None:
        parts.append(f"fix: {fix}")
    return " | ".join(parts)


def warn_input(problem: str, *, file=None, case=None, fix=None, stacklevel: int = 2) -> str:
    """Emit an :class:`InputWarning` and return its message (for summaries)."""
    msg = format_problem(problem, file=file, case=case, fix=fix)
    warnings.warn(msg, InputWarning, stacklevel=stacklevel + 1)
    return msg
