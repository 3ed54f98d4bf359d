"""On-disk cache of text embeddings, so a frozen text encoder runs once per distinct text.

Text targets and report embeddings are fixed functions of the text and the encoder, and encoding
is the slow part (a transformer forward per text). The cache keeps one ``.npz`` per encoder
(:func:`text_encoder_key`), readable with ``allow_pickle=False``, and only encodes texts it has
not seen; the encoder itself is built only when something is missing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ...errors import warn_input
from ...registry import TEXT_ENCODERS

if TYPE_CHECKING:  # annotations only: .encoders imports this module for text_encoder_key
    from .encoders import TextEncoder

__all__ = ["text_encoder_key", "cached_text_embeddings"]


def text_encoder_key(name: str, path=None) -> str:
    """File-name-safe cache key: ``name`` alone for the packaged default, else name + path hash."""
    if path is None:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except OSError:
        pass
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.name or "model")[:40]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{stem}-{digest}"


def _load_cache(file: Path) -> tuple[list[str], np.ndarray] | None:
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            texts = [str(t) for t in data["texts"]]
            emb = np.asarray(data["embeddings"], dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError("shape mismatch")
        return texts, emb
    except Exception as exc:  # corrupted cache: rebuild rather than fail
        warn_input(f"text embedding cache is unreadable ({exc}); it will be rebuilt", file=file,
                   fix="nothing to do; delete the file to silence this warning")
        return None


def cached_text_embeddings(cache_dir, encoder_key: str, texts: Sequence[str],
                           encoder: TextEncoder | Callable[[], TextEncoder] | None = None, *,
                           path=None, device=None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Embeddings of ``texts`` (``{text: float32 [dim]}``), cached in ``cache_dir/<key>.npz``.

    Only prompts not in the cache are encoded; the encoder is built lazily, and only when there is
    something to encode. ``encoder`` may be a built :class:`TextEncoder`, a zero-argument factory,
    or ``None`` -- then ``encoder_key`` must be a registered encoder name and the encoder is
    ``build_text_encoder(encoder_key, path, device)`` (looked up in the registry) (cached under
    ``text_encoder_key(encoder_key, path)``). With an explicit encoder, ``encoder_key`` is used
    as given (make it unique per model; :func:`text_encoder_key` helps).

    The ``.npz`` holds ``texts`` (unicode array) and ``embeddings`` ``[n, dim]``; it is rewritten
    atomically when new prompts are added. A cache whose width differs from the encoder's is
    discarded with a warning.
    """
    cache_dir = Path(cache_dir)
    wanted = list(dict.fromkeys(str(t) for t in texts))
    file_key = encoder_key if encoder is not None else text_encoder_key(encoder_key, path)
    file = cache_dir / f"{file_key}.npz"
    loaded = _load_cache(file)
    known: dict[str, np.ndarray] = {}
    if loaded is not None:
        known = {t: e for t, e in zip(*loaded)}
    missing = [t for t in wanted if t not in known]
    if missing:
        if encoder is None:   # a registered name (the package __init__ has imported .encoders)
            enc = TEXT_ENCODERS.get(encoder_key)(path=path, device=device)
        elif hasattr(encoder, "encode"):
            enc = encoder
        else:
            enc = encoder()
        new = np.asarray(enc.encode(missing, batch_size=batch_size), dtype=np.float32)
        if new.ndim != 2 or new.shape[0] != len(missing):
            raise ValueError(f"text encoder returned shape {new.shape} for {len(missing)} prompts")
        if known and next(iter(known.values())).shape[0] != new.shape[1]:
            warn_input(f"text embedding cache width {next(iter(known.values())).shape[0]} differs "
                       f"from the encoder's {new.shape[1]}; the cache is rebuilt", file=file,
                       fix="use a distinct cache key per text encoder")
            known = {}
            missing = wanted
            new = np.asarray(enc.encode(missing, batch_size=batch_size), dtype=np.float32)
        for t, e in zip(missing, new):
            known[t] = e
        cache_dir.mkdir(parents=True, exist_ok=True)
        all_texts = list(known)
        tmp = file.with_name(file.name + ".tmp.npz")
        np.savez(tmp, texts=np.array(all_texts, dtype=str),
                 embeddings=np.stack([known[t] for t in all_texts]).astype(np.float32))
        tmp.replace(file)
    return {t: known[t] for t in wanted}
