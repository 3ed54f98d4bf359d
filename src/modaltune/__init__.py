"""modaltune: multi-modal, multi-task, pan-cancer learning for computational pathology."""

__version__ = "0.1.0"
