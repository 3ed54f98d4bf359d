"""Help formatting and logging set-up of the ``modaltune`` command line (see :mod:`modaltune.cli`)."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from .errors import install_warning_format

__all__ = ["_DefaultsFormatter", "_shipped", "_setup_logging"]


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


def _setup_logging(verbose: bool) -> None:
    """Our messages at INFO; third-party chatter (Lightning tips, numexpr, model loading) only with -v."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    install_warning_format()    # our input warnings read as messages, not as Python source lines
    if verbose:
        warnings.simplefilter("default")
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "numexpr",
                 "sentence_transformers", "transformers", "matplotlib", "PIL"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING)
        lg.propagate = False if name.startswith("lightning") else lg.propagate
    for pat in (".*isinstance\\(treespec, LeafSpec\\).*", ".*module\\(s\\) in eval mode.*",
                ".*weights_only.*", ".*does not have many workers.*"):
        warnings.filterwarnings("ignore", message=pat)
    try:  # transformers' / sentence-transformers' progress bars when loading the text encoder
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
