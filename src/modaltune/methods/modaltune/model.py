"""ModalTune as a registered :class:`~modaltune.methods.base.Method` (``"modaltune"``).

Model: frozen LongNet slide encoder (Prov-GigaPath architecture) + :class:`ModalAdapter` fed by
the :class:`~modaltune.encoders.omics.TranscriptomicsEncoder` (64 pathway tokens) and a task
prompt per task. Training target: the patient's text prompts (general / survival / diagnosis),
encoded by a frozen text encoder (``batch["text_emb"]`` ``[3, Dt]`` in ``prompts.TASKS`` order),
passed through a frozen random projector, matched by :func:`~modaltune.training.losses.kl_text_loss`.

Config switches (``model.*``; Table 8 ablations in brackets):

- ``encoder_size``: ``"gigapath"`` (12 x 768, 16 heads, FFN 3072) or ``"small"``; ``encoder``:
  overrides of :class:`LongNetConfig` fields; ``checkpoint``: ``slide_encoder.pth`` of
  Prov-GigaPath (``null`` = random init, warned: results are then not GigaPath's).
- ``single_modal`` [Single Modal]: learnable modal tokens instead of transcriptomics.
- ``text_embedding`` [No Text Embedding]: ``false`` trains heads on labels: a subtype head
  (cross-entropy) on the diagnosis-task output and a discrete-time survival head (NLL) on the
  survival-task output (each falls back to the general task when its task is not in ``tasks``);
  ``info.task`` picks which of the two losses are used.
- ``kl_temperature``: softmax temperature of the KL (paper 1; see :func:`kl_text_loss`).
- ``survival_head`` and ``modal_norm`` (default on; not in the paper, issue 15): a discrete-time
  NLL head on the probed general output, trained beside the KL as the loss term ``head_nll``
  (default weight ``train.loss_weights.head_nll = 0.1``), and a LayerNorm on the modal tokens
  before the adapter. Without them the general embedding carries none of what the expression says
  (``benchmarks/embedding_content.py``): the transcriptomics tokens (trunc-normal 0.02
  initialisation) enter at about 1/200 of the image tokens' scale, and the text targets' survival
  content is mostly the died / censored word, so nothing teaches the adapter a path for the
  expression's risk. ``benchmarks/README.md`` (issue 15) has the evidence; ``--config paper``
  turns both off (the paper's setting).
- ``single_task_prompt`` [Single Task Prompt]: ``T = 1`` (general prompt only, no task token, as
  the reference code's single-task model).
- ``projector`` [No / Trainable / Model-side Projector]:
  ``"frozen_random"`` (default; text side: 1x1 conv ``Dt -> d_final``, LayerNorm, ReLU, 1x1 conv,
  written as linears, seeded by ``projector_seed``, frozen), ``"none"`` (no projector; the model's
  output width is set to ``Dt`` as in the paper's ablation, ``d_final`` is ignored),
  ``"trainable"`` (the same projector, trained), ``"model_side"`` (raw text targets; a trainable
  ``Linear(d_final, Dt)`` on the model output; probes use the ``d_final`` output before it).

A patient without omics (``has_omics`` false) uses a learnable set of fallback modal tokens, and
one without WSI (empty bag) runs the encoder on its [CLS] token alone.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from ...data.prompts import TASKS as PROMPT_TASKS
from ...encoders.omics import TranscriptomicsEncoder, chunk_pathways
from ...errors import ConfigError, InputError, warn_input
from ...registry import METHODS, SLIDE_ENCODERS
from ..base import CohortInfo, Declaration, LossOutput, Method
from ..losses import cross_entropy, kl_text_loss, nll_survival_loss, survival_risk
from .adapter import ModalAdapter
from .targets import PROJECTORS, TextProjector, seeded_projector

__all__ = ["ModalTune", "TextProjector", "PROMPT_TASKS", "build_slide_encoder"]

def build_slide_encoder(model_cfg: dict, feature_dim: int) -> tuple[nn.Module, int]:
    """The LongNet slide encoder of ``model.encoder_size`` / ``encoder`` / ``checkpoint``, built by the
    registered ``longnet`` factory; returns it with its width."""
    overrides = dict(model_cfg.get("encoder") or {})
    in_dim = int(overrides.pop("in_dim", None) or feature_dim)
    encoder = SLIDE_ENCODERS.get("longnet")(str(model_cfg.get("encoder_size", "gigapath")), in_dim, overrides,
                                            model_cfg.get("checkpoint"))
    return encoder, int(encoder.cfg.dim)


@METHODS.register("modaltune")
class ModalTune(Method):
    """ModalTune: frozen slide encoder + Modal Adapter, multi-task text-embedding supervision."""

    requires: ClassVar[frozenset[str]] = frozenset({"bag", "omics", "text_targets"})
    evaluation: ClassVar[str] = "probe"
    tasks: ClassVar[tuple[str, ...]] = ("subtype", "survival")
    family: ClassVar[str] = "ModalTune"
    family_order: ClassVar[int] = 40
    display_name: ClassVar[str] = "ModalTune"
    loss_terms: ClassVar[tuple[str, ...]] = ("kl", "ce", "nll", "head_nll")
    stored_defaults: ClassVar[dict[str, Any]] = {"model": {"modal_norm": False}}   # runs from before the key

    @classmethod
    def declare(cls, cfg: Mapping[str, Any]) -> Declaration:
        """Text-supervised and probed; with ``model.text_embedding: false`` (the No Text Embedding
        ablation) label-trained and scored on its own predictions."""
        if (cfg.get("model") or {}).get("text_embedding") is False:
            return Declaration(inputs=frozenset({"bag", "omics"}), evaluation="predict", tasks=cls.tasks)
        return Declaration(inputs=cls.requires, evaluation="probe", tasks=cls.tasks)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The paper's settings (Table 6), except ``survival_head`` and ``modal_norm`` (on; issue 15):
        ``--config paper`` turns them off."""
        return {
            "model": {
                "encoder_size": "gigapath",   # gigapath (12 x 768) | small
                "encoder": None,              # null or LongNetConfig overrides {dim, depth, heads, ffn_dim, ...}
                "checkpoint": None,           # Prov-GigaPath slide_encoder.pth; null = random init (warned)
                "adapter_blocks": 3,
                "adapter_heads": 12,
                "attn_ratio": 0.25,           # query width D*ratio (192 for 768)
                "ffn_ratio": 0.25,            # extractor FFN D -> D*ratio -> D
                "drop_path": 0.1,             # Table 6 "adapter dropout"
                "init_gamma": 0.0,
                "extra_extractors": 2,        # in the last interaction block
                "checkpointing": False,       # activation checkpointing of the frozen layers
                "n_tokens": 64,               # compressed transcriptomics tokens
                "omics": {"dim": 256, "depth": 3, "token_ratio": 0.5, "channel_ratio": 0.5,
                          "dropout": 0.25},
                "d_final": 256,
                "tasks": ["general", "survival", "diagnosis"],
                "single_modal": False,        # ablation: learnable tokens instead of transcriptomics
                "text_embedding": True,       # ablation false: label-trained heads (CE + NLL)
                "single_task_prompt": False,  # ablation: T = 1 (general prompt only)
                "projector": "frozen_random",  # frozen_random | none | trainable | model_side
                "projector_seed": 0,
                "kl_scale": 10.0,
                "kl_temperature": 1.0,        # softmax temperature of the KL (paper: 1)
                "survival_head": True,        # NLL survival head on the probed output (issue 15; paper: false)
                "modal_norm": True,           # LayerNorm on the modal tokens (issue 15; paper: false)
                "nll_alpha": 0.4,
            },
            "train": {"epochs": 30, "lr": 1.0e-4, "weight_decay": 5.0e-4, "warmup_epochs": 10,
                      "accumulate": 1, "loss_weights": {"head_nll": 0.1}},
        }

    def __init__(self, cfg: dict, info: CohortInfo, slide_encoder: nn.Module | None = None,
                 encoder_dim: int | None = None):
        super().__init__(cfg, info)
        defaults = self.default_config()["model"]
        m = {**defaults, **((cfg or {}).get("model") or {})}
        m["omics"] = {**defaults["omics"], **(m.get("omics") or {})}
        self.mcfg = m
        if m["projector"] not in PROJECTORS:
            raise ConfigError(f"model.projector must be one of {PROJECTORS}, got '{m['projector']}'")

        self._build_prompt_tasks(m)
        self.dim = self._build_slide_encoder(m, info, slide_encoder, encoder_dim)
        self.text_dim = int(info.text_dim)
        self.d_final = self._output_width(m)
        n_tok = self._build_modal_tokens(m, info)
        self.adapter = ModalAdapter(
            self._slide_encoder, n_tok, len(self.task_names), self.dim, blocks=int(m["adapter_blocks"]),
            heads=int(m["adapter_heads"]), attn_ratio=float(m["attn_ratio"]),
            ffn_ratio=float(m["ffn_ratio"]), drop_path=float(m["drop_path"]),
            init_gamma=float(m["init_gamma"]), extra_extractors=int(m["extra_extractors"]),
            d_final=self.d_final, checkpointing=bool(m["checkpointing"]))
        del self._slide_encoder
        self._build_targets(m, info)

    # ------------------------------------------------------------------ construction steps
    def _build_prompt_tasks(self, m: dict) -> None:
        """The task prompts (general / survival / diagnosis, or general only)."""
        tasks = ["general"] if m["single_task_prompt"] else list(m["tasks"])
        bad = [t for t in tasks if t not in PROMPT_TASKS]
        if not tasks or bad or len(set(tasks)) != len(tasks):
            raise ConfigError(f"model.tasks must be distinct names from {PROMPT_TASKS}; got {m['tasks']}")
        self.task_names = tasks
        self.task_rows = [PROMPT_TASKS.index(t) for t in tasks]
        self.register_buffer("task_ids", torch.arange(len(tasks)), persistent=False)
        self.general_index = tasks.index("general") if "general" in tasks else 0

    def _build_slide_encoder(self, m: dict, info: CohortInfo, slide_encoder: nn.Module | None,
                             encoder_dim: int | None) -> int:
        """The frozen slide encoder (kept aside until the adapter wraps it); returns its width."""
        if slide_encoder is None:
            slide_encoder, dim = build_slide_encoder(m, info.feature_dim)
        else:
            dim = int(encoder_dim if encoder_dim is not None else getattr(slide_encoder, "dim", 0)
                      or getattr(getattr(slide_encoder, "cfg", None), "dim", 0))
            if not dim:
                raise ConfigError("pass encoder_dim with a custom slide encoder")
        object.__setattr__(self, "_slide_encoder", slide_encoder)   # registered by the adapter, not here
        return dim

    def _output_width(self, m: dict) -> int:
        """``d_final``, or the text width in the No Projector ablation."""
        d_final = int(m["d_final"])
        if m["text_embedding"] and m["projector"] == "none":
            if d_final != self.text_dim:
                warn_input(f"model.projector=none: the output width is set to the text width "
                           f"{self.text_dim} (model.d_final={d_final} is ignored), as in the paper's "
                           "No Projector ablation")
            d_final = self.text_dim
        return d_final

    def _build_modal_tokens(self, m: dict, info: CohortInfo) -> int:
        """The transcriptomics encoder (or learnable tokens) feeding the adapter; returns the token count."""
        n_tok = int(m["n_tokens"])
        self.single_modal = bool(m["single_modal"])
        self.omics_encoder: TranscriptomicsEncoder | None = None
        if not self.single_modal:
            if info.n_genes <= 0:
                warn_input("the cohort has no transcriptomics: ModalTune runs with learnable modal "
                           "tokens (as model.single_modal=true)",
                           fix="prepare the cohort with --expression (and --gene-sets) for ModalTune")
                self.single_modal = True
            else:
                pathways = list(info.pathways)
                if not pathways:
                    warn_input("no gene sets in the cohort: genes are grouped in contiguous chunks of "
                               "100 as pseudo-pathways",
                               fix="prepare the cohort with a GMT file (e.g. the SurvPath pathways)")
                    pathways = chunk_pathways(info.n_genes, 100)
                o = m["omics"]
                self.omics_encoder = TranscriptomicsEncoder(
                    pathways, info.n_genes, dim=int(o["dim"]), depth=int(o["depth"]),
                    token_ratio=float(o["token_ratio"]), channel_ratio=float(o["channel_ratio"]),
                    n_tokens=n_tok, out_dim=self.dim, dropout=float(o["dropout"]))
                _trunc_normal_linears(self.omics_encoder)
                self.omics_encoder.tokenizer.reset_parameters(std=0.02)
        self.learned_tokens = nn.Parameter(torch.zeros(n_tok, self.dim))      # single-modal / no-omics fallback
        nn.init.trunc_normal_(self.learned_tokens, std=0.02)
        self.modal_norm = nn.LayerNorm(self.dim) if m["modal_norm"] else None
        return n_tok

    def _build_targets(self, m: dict, info: CohortInfo) -> None:
        """The text projector (or, without text embeddings, the label heads)."""
        self.projector: nn.Module | None = None
        self.model_projector: nn.Module | None = None
        self.subtype_head: nn.Module | None = None
        self.survival_head: nn.Module | None = None
        if m["text_embedding"]:
            if m["projector"] in ("frozen_random", "trainable"):
                self.projector = seeded_projector(self.text_dim, self.d_final, int(m["projector_seed"]))
                if m["projector"] == "frozen_random":
                    for p in self.projector.parameters():
                        p.requires_grad_(False)
            elif m["projector"] == "model_side":
                self.model_projector = nn.Linear(self.d_final, self.text_dim)
            if m["survival_head"]:
                self.survival_head = nn.Linear(self.d_final, max(1, int(info.n_bins)))
        else:
            self.subtype_head = nn.Linear(self.d_final, max(1, int(info.n_classes)))
            self.survival_head = nn.Linear(self.d_final, max(1, int(info.n_bins)))

    # ------------------------------------------------------------------ helpers
    def train(self, mode: bool = True):
        """Train/eval mode; a frozen random projector always stays in eval mode."""
        super().train(mode)
        if self.projector is not None and self.mcfg["projector"] == "frozen_random":
            self.projector.eval()
        return self

    def _device(self) -> torch.device:
        return self.learned_tokens.device

    def modal_tokens(self, batch: dict) -> torch.Tensor:
        """``[1, M, D]`` modal tokens of one patient (layer-normed with ``model.modal_norm``)."""
        tokens = self._raw_modal_tokens(batch)
        return self.modal_norm(tokens) if self.modal_norm is not None else tokens

    def _raw_modal_tokens(self, batch: dict) -> torch.Tensor:
        if self.single_modal or self.omics_encoder is None:
            return self.learned_tokens.unsqueeze(0)
        has = batch.get("has_omics", True)
        has = bool(has.item()) if isinstance(has, torch.Tensor) else bool(has)
        omics = batch.get("omics")
        if not has or omics is None:
            return self.learned_tokens.unsqueeze(0)
        omics = omics.to(self._device()).float().reshape(1, -1)
        return self.omics_encoder(omics)

    def forward(self, batch: dict, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, d_final]`` outputs for ``task_ids`` (indices into ``self.task_names``; default all)."""
        dev = self._device()
        bag = batch["bag"].to(dev).float()
        coords = batch["coords"].to(dev).float()
        if task_ids is None:
            task_ids = self.task_ids
        tokens = self.modal_tokens(batch)
        return self.adapter(bag, coords, tokens, task_ids)

    def _text_targets(self, batch: dict) -> torch.Tensor:
        if "text_emb" not in batch:
            raise InputError("ModalTune needs text targets but the batch has no 'text_emb'",
                             case=batch.get("case_id"),
                             fix="build the dataset with a text cache (the training engine does this)")
        y = batch["text_emb"].to(self._device()).float()
        if y.dim() != 2 or y.shape[0] != len(PROMPT_TASKS) or y.shape[1] != self.text_dim:
            raise InputError(f"text_emb has shape {tuple(y.shape)}, expected "
                             f"[{len(PROMPT_TASKS)}, {self.text_dim}]", case=batch.get("case_id"),
                             fix="rebuild the text cache with the text encoder named in the config")
        y = y[self.task_rows]
        if self.projector is not None:
            y = self.projector(y)
        return y

    def _subtype_logits(self, z: torch.Tensor, batch: dict) -> torch.Tensor:
        """The patient's site's subtype logits (a pooled head gives each site its own)."""
        out = self.subtype_head(z[self._task_index("diagnosis")])
        return out[self.info.subtype_slice(str(batch.get("site", "")))]

    def _task_index(self, name: str) -> int:
        return self.task_names.index(name) if name in self.task_names else self.general_index

    # ------------------------------------------------------------------ Method API
    def loss(self, batch: dict) -> LossOutput:
        """KL to the text targets (or, in the No Text Embedding ablation, CE + NLL on labels)."""
        z = self.forward(batch)                                     # [T, d_final]
        if self.mcfg["text_embedding"]:
            y = self._text_targets(batch)
            z_text = self.model_projector(z) if self.model_projector is not None else z
            kl = kl_text_loss(z_text, y, scale=float(self.mcfg["kl_scale"]),
                              temperature=float(self.mcfg["kl_temperature"]))
            terms, logs = {"kl": kl}, {"kl": float(kl.detach())}
            nll = self._survival_nll(z[self.general_index], batch) if self.survival_head is not None else None
            if nll is not None:
                terms["head_nll"], logs["head_nll"] = nll, float(nll.detach())
            return LossOutput(terms, logs)
        logs: dict[str, float] = {}
        loss = z.sum() * 0.0
        task = getattr(self.info, "task", "multi")
        dev = z.device
        terms: dict[str, torch.Tensor] = {}
        if task in ("subtype", "multi"):
            sub = int(torch.as_tensor(batch.get("subtype", -1)).item())
            if sub >= 0:
                ce = cross_entropy(self._subtype_logits(z, batch), torch.tensor(sub, device=dev))
                terms["ce"] = ce
                loss = loss + ce
                logs["ce"] = float(ce.detach())
        if task in ("survival", "multi"):
            nll = self._survival_nll(z[self._task_index("survival")], batch)
            if nll is not None:
                terms["nll"] = nll
                loss = loss + nll
                logs["nll"] = float(nll.detach())
        logs["loss"] = float(loss.detach())
        return LossOutput(terms or {"loss": loss}, logs)

    def _survival_nll(self, z: torch.Tensor, batch: dict) -> torch.Tensor | None:
        """Discrete-time NLL of the survival head on one output ``[d_final]`` (None without survival)."""
        has_s = bool(torch.as_tensor(batch.get("has_survival", False)).item())
        b = int(torch.as_tensor(batch.get("survival_bin", -1)).item())
        if not has_s or b < 0:
            return None
        return nll_survival_loss(self.survival_head(z), torch.tensor(b, device=z.device),
                                 torch.as_tensor(batch["event"], device=z.device).float(),
                                 alpha=float(self.mcfg["nll_alpha"]))

    @contextlib.contextmanager
    def _eval_mode(self):
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was)

    def embed(self, batch: dict) -> torch.Tensor:
        """General-task output ``[d_final]`` (eval mode, no grad)."""
        with self._eval_mode():
            ids = self.task_ids[self.general_index:self.general_index + 1]
            return self.forward(batch, ids)[0]

    def predict(self, batch: dict) -> dict[str, torch.Tensor | None]:
        """Label heads' logits and risk in the No Text Embedding ablation (None otherwise)."""
        if self.mcfg["text_embedding"]:
            return {"logits": None, "risk": None}
        with self._eval_mode():
            z = self.forward(batch)
            logits = self._subtype_logits(z, batch)
            risk = survival_risk(self.survival_head(z[self._task_index("survival")]))
        return {"logits": logits, "risk": risk}


def _trunc_normal_linears(module: nn.Module, std: float = 0.02) -> None:
    """Reference initialisation of the gene encoder's linears (trunc-normal 0.02, zero bias)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
