"""ModalTune: Modal Adapter over a frozen slide encoder, trained on text embeddings.

Importing this package registers the method ``"modaltune"`` in ``modaltune.registry.METHODS``.
"""

from .adapter import ModalAdapter, split_layers
from .model import ModalTune, TextProjector

__all__ = ["ModalAdapter", "ModalTune", "TextProjector", "split_layers"]
