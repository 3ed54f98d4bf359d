"""Text encoders (frozen, local files only) and the on-disk caches of their embeddings.

- :mod:`.base`: the :class:`TextEncoder` interface and the shared transformer code (pooling
  ``mean``/``cls``, normalisation, head truncation, token states);
- :mod:`.encoders`: the encoders registered in :data:`modaltune.registry.TEXT_ENCODERS`
  (``minilm``, ``sentence-transformers``, ``hf``, ``conch``) and :func:`build_text_encoder`;
- :mod:`.cache`: :func:`cached_text_embeddings` (pooled vectors), :func:`cached_token_embeddings`
  (token states) and the cache keys.

The names below are the package's public API; import them from ``modaltune.encoders.text``.
"""

from __future__ import annotations

from .base import POOLINGS, TextEncoder, TransformerTextEncoder
from .cache import cached_text_embeddings, cached_token_embeddings, embedding_cache_name, text_encoder_key
from .encoders import (
    ConchTextEncoder,
    HFTextEncoder,
    MiniLMTextEncoder,
    SentenceTransformerTextEncoder,
    build_text_encoder,
    default_minilm_path,
)

__all__ = ["TextEncoder", "TransformerTextEncoder", "MiniLMTextEncoder", "SentenceTransformerTextEncoder",
           "HFTextEncoder", "ConchTextEncoder", "build_text_encoder", "text_encoder_key",
           "cached_text_embeddings", "cached_token_embeddings", "embedding_cache_name",
           "default_minilm_path", "POOLINGS"]
