"""Text encoders (frozen, local files only) and the on-disk cache of their embeddings.

- :mod:`.encoders`: the encoders registered in :data:`modaltune.registry.TEXT_ENCODERS`
  (``minilm``, ``sentence-transformers``, ``hf``, ``conch``) and :func:`build_text_encoder`;
- :mod:`.cache`: :func:`cached_text_embeddings` and the cache keys.

The names below are the package's public API; import them from ``modaltune.encoders.text``.
"""

from __future__ import annotations

from .cache import cached_text_embeddings, text_encoder_key
from .encoders import (
    ConchTextEncoder,
    HFTextEncoder,
    MiniLMTextEncoder,
    SentenceTransformerTextEncoder,
    TextEncoder,
    build_text_encoder,
    default_minilm_path,
)

__all__ = ["TextEncoder", "MiniLMTextEncoder", "SentenceTransformerTextEncoder", "HFTextEncoder",
           "ConchTextEncoder", "build_text_encoder", "text_encoder_key", "cached_text_embeddings",
           "default_minilm_path"]
