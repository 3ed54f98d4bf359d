"""On-disk caches of text embeddings, so a frozen text encoder runs once per distinct text.

Text targets, report vectors and report tokens are fixed functions of the text, the model and
how its output is read, and encoding is the slow part (a transformer forward per text). Each
cache is one ``.npz`` file per (model, settings) that only ever grows: texts already in it are
read back, only the others are encoded, and the encoder is built only when something is
missing. Files are read with ``allow_pickle=False`` (plain arrays plus a JSON settings string),
so opening someone's cache cannot run code.

File names. ``<key>`` is :func:`text_encoder_key` (the encoder name, plus the model path's name
and hash). Pooled embeddings go to ``<key>.npz`` for the encoder's default settings (mean or the
encoder's own pooling, normalised, the model's maximum length: the prompt targets, with the same
file name as before these options existed) and to ``<key>-<pooling>-<norm|raw>[-L<max>].npz``
otherwise, so prompt targets and report [CLS] vectors never share a file. Token states go to
``<key>-tokens[-L<max>].npz``, stored ragged: ``tokens [sum L_i, D]`` with ``offsets [n + 1]``.
The settings are also written inside each file and checked when it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ...errors import ConfigError, warn_input
from ...registry import TEXT_ENCODERS
from .base import build_registered

if TYPE_CHECKING:
    from .base import TextEncoder

__all__ = ["text_encoder_key", "cached_text_embeddings", "cached_token_embeddings", "embedding_cache_name"]

_FORMAT = 1


def text_encoder_key(name: str, path=None) -> str:
    """File-name-safe cache key of a model.

    Args:
        name: the encoder's registered name.
        path: the local model path (``None`` for the packaged default).

    Returns:
        ``name`` alone for the packaged default, else ``name-<dir name>-<hash of the path>``.
    """
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


def embedding_cache_name(key: str, pooling: str, normalize: bool, max_length: int | None,
                         default_pooling: str = "mean") -> str:
    """File name (without ``.npz``) of the pooled-embedding cache of a model and its settings.

    Args:
        key: the model's cache key (:func:`text_encoder_key`).
        pooling: ``"mean"`` or ``"cls"``.
        normalize: whether the embeddings are L2-normalised.
        max_length: tokens kept per text as requested (``None``: the model's maximum).
        default_pooling: the encoder's default pooling.

    Returns:
        ``key`` for the default settings, else ``key-<pooling>-<norm|raw>[-L<max_length>]``.
    """
    if pooling == default_pooling and normalize and max_length is None:
        return key
    return f"{key}-{pooling}-{'norm' if normalize else 'raw'}" + (f"-L{max_length}" if max_length else "")


def _read(file: Path, settings: dict, fields: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or ``None`` if absent, unreadable or made with other settings."""
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in fields}
            stored = json.loads(str(data["settings"])) if "settings" in data.files else None
    except Exception as exc:  # corrupted cache: rebuild rather than fail
        warn_input(f"text embedding cache is unreadable ({exc}); it will be rebuilt", file=file,
                   fix="nothing to do; delete the file to silence this warning")
        return None
    if stored is not None and stored != settings:
        warn_input(f"text embedding cache was made with other settings ({stored}, now {settings}); "
                   "it will be rebuilt", file=file, fix="nothing to do")
        return None
    return arrays


def _write(file: Path, settings: dict, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (a temporary file, then a rename)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp.npz")   # one per process (parallel benchmark jobs)
    np.savez(tmp, settings=np.array(json.dumps(settings, sort_keys=True)), **arrays)
    tmp.replace(file)


def _resolve(encoder, name: str | None, path, device, options: dict
             ) -> tuple[Callable[[], TextEncoder], dict]:
    """``(get_encoder, settings)`` for a registered name, a built encoder, or a factory.

    Settings are ``pooling``, ``normalize``, ``max_length`` (as requested) and ``default_pooling``.
    A built encoder's are read from it, and options in ``options`` that are not ``None`` must
    agree with them; a factory's encoder is checked, once built, against every key of
    ``options`` (the cache file was chosen from them before building it).
    """
    if encoder is not None and hasattr(encoder, "encode"):
        settings = {"pooling": getattr(encoder, "pooling", "mean"),
                    "normalize": bool(getattr(encoder, "normalize", True)),
                    "max_length": getattr(encoder, "requested_max_length", None),
                    "default_pooling": getattr(type(encoder), "default_pooling", "mean")}
        clash = {k: (v, settings[k]) for k, v in options.items() if v is not None and v != settings[k]}
        if clash:
            raise ConfigError(f"text cache settings {clash} (asked, encoder's) contradict the text encoder")
        return (lambda: encoder), settings
    default = getattr(TEXT_ENCODERS.get(name), "default_pooling", "mean") if encoder is None else "mean"
    settings = {"pooling": options.get("pooling") or default,
                "normalize": True if options.get("normalize") is None else bool(options["normalize"]),
                "max_length": options.get("max_length"), "default_pooling": default}
    if encoder is None:
        return (lambda: build_registered(name, path, device, **options)), settings

    def build() -> TextEncoder:
        enc = encoder()
        got = _resolve(enc, None, None, None, {})[1]
        clash = {k: (settings[k], got[k]) for k in options if settings[k] != got[k]}
        if clash:
            raise ConfigError(f"text cache settings {clash} (cache, encoder's) contradict the encoder the "
                              "factory built; pass the encoder's settings")
        return enc

    return build, settings


def cached_text_embeddings(cache_dir, encoder_key: str, texts: Sequence[str],
                           encoder: TextEncoder | Callable[[], TextEncoder] | None = None, *,
                           path=None, device=None, batch_size: int = 64, pooling: str | None = None,
                           normalize: bool | None = None, max_length: int | None = None) -> dict[str, np.ndarray]:
    """Pooled embeddings of ``texts`` (``{text: float32 [dim]}``), cached under ``cache_dir``.

    Only texts not in the cache are encoded; the encoder is built lazily, and only when there is
    something to encode. ``encoder`` may be a built text encoder, a zero-argument factory, or
    ``None`` -- then ``encoder_key`` must be a registered encoder name, the encoder is built from
    it with ``path``, ``device`` and the options, and the cache key is
    ``text_encoder_key(encoder_key, path)``. With an explicit encoder, ``encoder_key`` is used as
    given (make it unique per model; :func:`text_encoder_key` helps) and the options are the
    encoder's. A cache whose width differs from the encoder's is discarded with a warning.

    Args:
        cache_dir: folder of the cache files (see the module docstring for their names).
        encoder_key: registered encoder name, or the cache key of ``encoder``.
        texts: the texts (duplicates are encoded once).
        encoder: see above.
        path: local model path (with ``encoder=None``).
        device: torch device (with ``encoder=None``).
        batch_size: texts per forward pass.
        pooling: ``"mean"`` or ``"cls"`` (default: the encoder's).
        normalize: L2-normalise (default: true).
        max_length: tokens kept per text (default: the model's maximum).

    Returns:
        ``{text: embedding}`` in the order of first appearance in ``texts``.
    """
    wanted = list(dict.fromkeys(str(t) for t in texts))
    options = {"pooling": pooling, "normalize": normalize, "max_length": max_length}
    get_encoder, settings = _resolve(encoder, encoder_key, path, device, options)
    key = encoder_key if encoder is not None else text_encoder_key(encoder_key, path)
    stem = embedding_cache_name(key, settings["pooling"], settings["normalize"], settings["max_length"],
                                settings.pop("default_pooling"))
    file = Path(cache_dir) / f"{stem}.npz"
    settings = {"format": _FORMAT, "kind": "pooled", "key": key, **settings}
    loaded = _read(file, settings, ("texts", "embeddings"))
    known: dict[str, np.ndarray] = {}
    if loaded is not None and loaded["embeddings"].ndim == 2 and len(loaded["texts"]) == len(loaded["embeddings"]):
        known = {str(t): e.astype(np.float32) for t, e in zip(loaded["texts"], loaded["embeddings"])}
    missing = [t for t in wanted if t not in known]
    if missing:
        enc = get_encoder()
        new = np.asarray(enc.encode(missing, batch_size=batch_size), dtype=np.float32)
        if new.ndim != 2 or new.shape[0] != len(missing):
            raise ValueError(f"text encoder returned shape {new.shape} for {len(missing)} texts")
        if known and next(iter(known.values())).shape[0] != new.shape[1]:
            warn_input(f"text embedding cache width {next(iter(known.values())).shape[0]} differs "
                       f"from the encoder's {new.shape[1]}; the cache is rebuilt", file=file,
                       fix="use a distinct cache key per text encoder")
            known, missing = {}, wanted
            new = np.asarray(enc.encode(missing, batch_size=batch_size), dtype=np.float32)
        known.update(zip(missing, new))
        all_texts = list(known)
        _write(file, settings, texts=np.array(all_texts, dtype=str),
               embeddings=np.stack([known[t] for t in all_texts]).astype(np.float32))
    return {t: known[t] for t in wanted}


def cached_token_embeddings(cache_dir, encoder: str | TextEncoder | Callable[[], TextEncoder],
                            texts: Sequence[str], *, key: str | None = None, path=None, device=None,
                            max_length: int | None = None, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Token-level states of ``texts`` (``{text: float32 [L_i, D]}``), cached under ``cache_dir``.

    What :meth:`~.base.TransformerTextEncoder.encode_tokens` returns (real tokens, special
    tokens included, head-truncated to ``max_length``), stored ragged in one
    ``<key>-tokens[-L<max>].npz``; only texts not yet in it are encoded.

    Args:
        cache_dir: folder of the cache file.
        encoder: a registered encoder name (built lazily from ``path``/``device``), a built
            encoder, or a zero-argument factory (then ``key`` is required).
        texts: the texts (duplicates are encoded once).
        key: cache key (default: from the name and path, or the built encoder's ``key``).
        path: local model path (with a name).
        device: torch device (with a name).
        max_length: tokens kept per text (default: the model's maximum).
        batch_size: texts per forward pass.

    Returns:
        ``{text: states}`` in the order of first appearance in ``texts``.

    Raises:
        ConfigError: a factory without ``key``, or a ``max_length`` contradicting the encoder's.
    """
    wanted = list(dict.fromkeys(str(t) for t in texts))
    if isinstance(encoder, str):
        get_encoder, settings = _resolve(None, encoder, path, device, {"max_length": max_length})
        key = key or text_encoder_key(encoder, path)
    elif hasattr(encoder, "encode"):
        get_encoder, settings = _resolve(encoder, None, None, None, {"max_length": max_length})
        key = key or encoder.key
    elif key is None:
        raise ConfigError("cached_token_embeddings needs key= when the encoder is a factory")
    else:
        get_encoder, settings = _resolve(encoder, None, None, None, {"max_length": max_length})
    limit = settings["max_length"]
    file = Path(cache_dir) / (f"{key}-tokens" + (f"-L{limit}" if limit else "") + ".npz")
    settings = {"format": _FORMAT, "kind": "tokens", "key": key, "max_length": limit}
    loaded = _read(file, settings, ("texts", "offsets", "tokens"))
    known: dict[str, np.ndarray] = {}
    if loaded is not None and len(loaded["offsets"]) == len(loaded["texts"]) + 1:
        off, tok = loaded["offsets"], loaded["tokens"].astype(np.float32)
        known = {str(t): tok[off[i]:off[i + 1]] for i, t in enumerate(loaded["texts"])}
    missing = [t for t in wanted if t not in known]
    if missing:
        new = get_encoder().encode_tokens(missing, batch_size=batch_size)
        widths = {a.shape[1] for a in new} | {a.shape[1] for a in known.values()}
        if len(widths) > 1:
            warn_input(f"token cache widths {sorted(widths)} differ; the cache is rebuilt", file=file,
                       fix="use a distinct cache key per text encoder")
            known, missing = {}, wanted
            new = get_encoder().encode_tokens(missing, batch_size=batch_size)
        known.update(zip(missing, (np.asarray(a, dtype=np.float32) for a in new)))
        all_texts = list(known)
        offsets = np.cumsum([0] + [len(known[t]) for t in all_texts]).astype(np.int64)
        _write(file, settings, texts=np.array(all_texts, dtype=str), offsets=offsets,
               tokens=np.concatenate([known[t] for t in all_texts]).astype(np.float32))
    return {t: known[t] for t in wanted}
