"""Logging set-up shared by the command line and the benchmark's parallel jobs.

Our own messages are shown at INFO; third-party chatter (Lightning's accelerator lines and tips,
numexpr, the text encoder's loading bars) only with ``verbose``. Both the ``modaltune`` process and
every spawned benchmark job call :func:`setup_logging`, so a parallel benchmark prints each message
once, tagged with its job.
"""

from __future__ import annotations

import logging
import warnings

from .errors import install_warning_format

__all__ = ["setup_logging"]

_QUIET = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "numexpr",
          "sentence_transformers", "transformers", "matplotlib", "PIL")
_IGNORED_WARNINGS = (".*isinstance\\(treespec, LeafSpec\\).*", ".*module\\(s\\) in eval mode.*",
                     ".*weights_only.*", ".*does not have many workers.*")


def setup_logging(verbose: bool = False, tag: str = "") -> None:
    """Configure the root logger (``tag`` goes before the logger's name, e.g. ``[job 123]``).

    Lightning sets its loggers to INFO when it is first imported, which may come later (a spawned
    job imports it when it trains); its loggers therefore stop propagating to ours as well, so that
    its INFO lines are dropped whenever it is imported.
    """
    prefix = f" {tag}" if tag else ""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format=f"%(levelname)s{prefix} %(name)s: %(message)s")
    install_warning_format()    # our input warnings read as messages, not as Python source lines
    if verbose:
        warnings.simplefilter("default")
        return
    for name in _QUIET:
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING)
        lg.propagate = False if name.startswith("lightning") else lg.propagate
    for pat in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pat)
    try:  # transformers' / sentence-transformers' progress bars when loading the text encoder
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
