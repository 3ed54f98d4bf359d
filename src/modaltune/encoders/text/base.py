"""What every text encoder shares: the interface, its options, and the transformer-backed code.

Prompts, reports and report tokens are all read off the same transformer forward pass; only
what is kept differs (a mean, the [CLS] row, or every real token's state). So the pooling, the
normalisation, the head truncation (with its count) and the token extraction are written once
here, in :class:`TransformerTextEncoder`, for every encoder built on a Hugging Face model
(sentence-transformers directories included). The registered encoders in :mod:`.encoders` only
say how to load their model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

from ...errors import ConfigError, InputError
from ...registry import TEXT_ENCODERS

__all__ = ["TextEncoder", "TransformerTextEncoder", "POOLINGS", "build_registered"]

log = logging.getLogger(__name__)

#: Poolings of the last hidden state: the attention-masked mean, or the first ([CLS]) row.
POOLINGS: tuple[str, ...] = ("mean", "cls")
_NO_LIMIT = 1_000_000   # Hugging Face tokenizers without a limit report a huge model_max_length


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _resolve_device(device) -> str:
    if device is not None:
        return str(device)
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _require_path(path, *, name: str, what: str, fix: str, is_file: bool | None = None) -> Path:
    if path is None:
        raise InputError(f"text encoder '{name}' needs a local {what} (text.path is not set)",
                         fix=fix)
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"text encoder '{name}': {what} not found", file=p, fix=fix)
    if is_file is True and not p.is_file():
        raise InputError(f"text encoder '{name}': expected a checkpoint file, got a directory",
                         file=p, fix=fix)
    if is_file is False and not p.is_dir():
        raise InputError(f"text encoder '{name}': expected a model directory, got a file",
                         file=p, fix=fix)
    return p


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class TextEncoder:
    """Common interface of the text encoders.

    Attributes:
        name: registered name. dim: embedding width. key: file-name-safe cache key of the model.
        pooling: ``"mean"`` or ``"cls"``. normalize: whether embeddings are L2-normalised.
        max_length: tokens kept per text (the model's maximum unless set; ``None`` if unknown).
        requested_max_length: ``max_length`` as asked for (``None``: the model's), used in cache keys.
        last_truncated: how many texts of the last ``encode``/``encode_tokens`` call were cut.
    """

    name: str = "text"
    dim: int = 0
    key: str = "text"
    poolings: ClassVar[tuple[str, ...]] = POOLINGS
    default_pooling: ClassVar[str] = "mean"
    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = None
    requested_max_length: int | None = None
    last_truncated: int = 0

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:  # pragma: no cover
        """Embeddings ``[n, dim]`` float32 of ``texts``, encoded ``batch_size`` at a time."""
        raise NotImplementedError

    def encode_tokens(self, texts: Sequence[str], batch_size: int = 16) -> list[np.ndarray]:
        """Token-level states ``[L_i, D]`` of each text (see :class:`TransformerTextEncoder`).

        Raises:
            ConfigError: this encoder has no token states.
        """
        raise ConfigError(f"text encoder '{self.name}' does not give token-level states; use a "
                          "Hugging Face or sentence-transformers model (text.encoder: hf)")

    def _set_options(self, pooling: str, normalize: bool, max_length: int | None) -> None:
        """Validate and store the options (before any model is loaded, so errors come first)."""
        if pooling not in self.poolings:
            raise ConfigError(f"text encoder '{self.name}': pooling must be one of {list(self.poolings)}, "
                              f"got {pooling!r}")
        if not isinstance(normalize, (bool, np.bool_)):
            raise ConfigError(f"text encoder '{self.name}': normalize must be true or false, got {normalize!r}")
        if max_length is not None and (isinstance(max_length, bool) or int(max_length) != max_length
                                       or int(max_length) < 2):
            raise ConfigError(f"text encoder '{self.name}': max_length must be an integer >= 2, "
                              f"got {max_length!r}")
        self.pooling, self.normalize = pooling, bool(normalize)
        self.requested_max_length = None if max_length is None else int(max_length)

    def _open_local(self, path, device, *, what: str, fix: str, is_file: bool) -> None:
        """Check the local model ``path`` (a file or a directory), switch the process to offline
        mode and set ``self.path`` (resolved) and ``self.device``."""
        p = _require_path(path, name=self.name, what=what, is_file=is_file, fix=fix)
        _offline()
        self.path = p.resolve()
        self.device = _resolve_device(device)

    def _finish(self, x: np.ndarray) -> np.ndarray:
        """float32 rows, L2-normalised when ``normalize``."""
        return _l2(x) if self.normalize else np.asarray(x, dtype=np.float32)

    def _encode_in_batches(self, texts: Sequence[str], batch_size: int,
                           encode_batch: Callable) -> np.ndarray:
        """Run ``encode_batch(list_of_texts) -> tensor [b, d]`` over batches without gradients;
        returns the float32 rows (see :meth:`_finish`; an empty [0, dim] array for no texts)."""
        import torch

        texts = list(texts)
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out.append(encode_batch(texts[i:i + batch_size]).float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return self._finish(np.concatenate(out))


class TransformerTextEncoder(TextEncoder):
    """A text encoder on a Hugging Face transformer: pooling, truncation and token states.

    Subclasses load the model, then call :meth:`_set_options` (first) and :meth:`_set_backbone`.
    Texts are tokenised with the model's special tokens, padded per batch, and cut to their
    first ``max_length`` tokens (deterministic head truncation).
    """

    tokenizer = None
    backbone = None

    def _set_backbone(self, tokenizer, backbone, max_length: int | None) -> None:
        """Store the tokenizer and the transformer; resolve ``max_length`` and ``dim``."""
        self.tokenizer, self.backbone = tokenizer, backbone
        config = getattr(backbone, "config", None)
        positions = getattr(config, "max_position_embeddings", None)
        limits = [v for v in (getattr(tokenizer, "model_max_length", None), positions)
                  if isinstance(v, int) and 0 < v < _NO_LIMIT]
        if max_length is not None and positions and int(max_length) > int(positions):
            raise ConfigError(f"text encoder '{self.name}': max_length {max_length} exceeds the model's "
                              f"{positions} positions")
        self.max_length = int(max_length) if max_length is not None else (min(limits) if limits else None)
        if config is not None and getattr(config, "hidden_size", None):
            self.dim = int(config.hidden_size)

    def _report_truncation(self, texts: list[str]) -> None:
        """Count the texts longer than ``max_length`` tokens; log and keep the count."""
        if self.tokenizer is None or self.max_length is None or not texts:
            self.last_truncated = 0
            return
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        self.last_truncated = sum(n > self.max_length for n in lengths)
        if self.last_truncated:
            log.warning("text encoder %s: %d of %d texts are longer than %d tokens and were cut to their "
                        "first %d tokens", self.key, self.last_truncated, len(texts), self.max_length,
                        self.max_length)

    def _hidden(self, batch: list[str]):
        """Last hidden state ``[b, L, D]`` fp32 and attention mask ``[b, L]`` of a batch of texts."""
        tok = self.tokenizer(batch, padding=True, truncation=self.max_length is not None,
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        return self.backbone(**tok).last_hidden_state.float(), tok["attention_mask"]

    def _pooled(self, batch: list[str]):
        hidden, attention = self._hidden(batch)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention.unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Pooled last hidden states ``[n, dim]`` float32.

        ``pooling="mean"``: attention-masked mean over the real tokens; ``"cls"``: the first row
        (the [CLS] token of BERT-like models). L2-normalised when ``normalize``.
        """
        texts = list(texts)
        self._report_truncation(texts)
        return self._encode_in_batches(texts, batch_size, self._pooled)

    def encode_tokens(self, texts: Sequence[str], batch_size: int = 16) -> list[np.ndarray]:
        """Last hidden states of the real tokens of each text, ``[L_i, D]`` float32 each.

        ``L_i`` is the tokenizer's length of text ``i`` with special tokens ([CLS] ... [SEP] for
        BERT), after head truncation to ``max_length``; padding is removed with the attention
        mask. Not normalised (``normalize`` applies to pooled embeddings only).
        """
        import torch

        texts = list(texts)
        self._report_truncation(texts)
        out: list[np.ndarray] = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                hidden, attention = self._hidden(texts[i:i + batch_size])
                for row, keep in zip(hidden, attention.bool()):
                    out.append(row[keep].cpu().numpy().astype(np.float32))
        return out


def build_registered(name: str, path=None, device=None, **options) -> TextEncoder:
    """Build the text encoder registered as ``name``; options that are ``None`` are not passed.

    Leaving unset options out keeps encoders registered with only ``(path, device)`` working.
    The encoders register when :mod:`modaltune.encoders.text` is imported.

    Args:
        name: registered name.
        path: local model directory or file.
        device: torch device.
        **options: ``pooling``, ``normalize``, ``max_length``.

    Returns:
        The encoder.
    """
    cls = TEXT_ENCODERS.get(name)
    return cls(path=path, device=device, **{k: v for k, v in options.items() if v is not None})
