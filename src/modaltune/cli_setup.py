"""Help formatting of the ``modaltune`` command line (see :mod:`modaltune.cli`; logging is :mod:`modaltune.logs`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["_DefaultsFormatter", "_shipped"]


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help texts end with the default value, when there is one worth saying and the text does not
    already say it."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings
                and action.nargs is None):
            return text
        return f"{text} (default: %(default)s)"


def _shipped() -> str:
    """Names of the configs shipped in ``modaltune/configs/`` (for help texts)."""
    return ", ".join(sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml")))
