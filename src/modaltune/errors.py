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


#: Keys of the warnings :func:`warn_input_once` has already emitted in this process.
_SAID: set[str] = set()


def warn_input_once(key: str, problem: str, *, file=None, case=None, fix=None, stacklevel: int = 2) -> str | None:
    """:func:`warn_input`, but once per process for ``key`` (a fact that holds for every run of a
    benchmark, such as a randomly initialised encoder). Returns the message, or None when already said."""
    if key in _SAID:
        return None
    _SAID.add(key)
    return warn_input(problem, file=file, case=case, fix=fix, stacklevel=stacklevel + 1)


def forget_said_warnings() -> None:
    """Let :func:`warn_input_once` warn again (tests)."""
    _SAID.clear()


def _format_input_warning(message, category, filename, lineno, line=None) -> str:
    """Our warnings as one message line (no Python source line, which reads like a crash)."""
    if isinstance(category, type) and issubclass(category, InputWarning):
        return f"warning: {message}\n"
    return _DEFAULT_FORMAT(message, category, filename, lineno, line)


_DEFAULT_FORMAT = warnings.formatwarning


def install_warning_format() -> None:
    """Print :class:`InputWarning` as ``warning: <message>`` (installed by the command line)."""
    warnings.formatwarning = _format_input_warning


def warn_input(problem: str, *, file=None, case=None, fix=None, stacklevel: int = 2) -> str:
    """Emit an :class:`InputWarning` and return its message (for summaries)."""
    msg = format_problem(problem, file=file, case=case, fix=fix)
    warnings.warn(msg, InputWarning, stacklevel=stacklevel + 1)
    return msg
