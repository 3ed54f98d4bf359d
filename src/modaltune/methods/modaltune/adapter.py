"""The Modal Adapter (ModalTune Sec. 3.3) around a frozen transformer slide encoder.

Structure (reference ``martellab-sri/ModalTune``, ViT-Adapter style):

- The frozen encoder's ``L`` layers are split into ``B`` consecutive groups (12 layers, B = 3 ->
  [0-3], [4-7], [8-11]; an uneven depth is split as evenly as possible).
- Multi-modal tokens ``mm = [task token] + modal tokens`` (``M + 1`` tokens of width ``D``) carry a
  learnable positional embedding ``pos`` (trunc-normal 0.02), added after the LayerNorm of every
  adapter attention that reads ``mm`` (as in the reference code).
- Block ``i``:
  1. Injector: ``patches = patches + gamma_i * CrossAttn(LN(patches), LN(mm) + pos)`` with
     ``gamma_i`` a learnable ``[D]`` vector initialised to 0 and no FFN. As in the reference code
     the image [CLS] token is not injected (only patch tokens are queries).
  2. ``[CLS] + patches`` go through the frozen layer group.
  3. Extractor: ``mm = mm + CrossAttn(LN(mm) + pos, LN(patches))`` then
     ``mm = mm + DropPath(FFN(LN(mm)))`` with FFN ``D -> D*ffn_ratio -> D`` (ReLU).
     The last block runs ``extra_extractors`` (2) more extractors on the same image tokens.
  4. Self-attention among the ``mm`` tokens (pre-norm, residual) after every block except the last
     (the reference applies it at the start of blocks 1..B-1, which is the same).
- Cross-/self-attention: the query is projected to ``D * attn_ratio`` (192 for 768) and split in
  ``heads`` (12) heads; keys and values are projected from the full-width ``D`` tokens to the same
  inner width; an output linear maps back to ``D``. (The reference stacks a ``q_proj`` and
  ``nn.MultiheadAttention``'s own input/output projections; two consecutive linears are one
  linear, so this is the same function class with fewer redundant weights.)
- Output per task: ``z = Linear(LN(cls + mean(modal tokens) + task token))`` -> ``d_final``.
  ``cls`` is the final-normed image [CLS] (``encoder.final_norm``), so with ``gamma = 0`` it equals
  the frozen encoder's own slide embedding. Without task tokens (T = 1, the reference's
  single-task setting) the sum omits the task term.
- The T task passes of one patient run as one batch of size T (the image tokens differ per task
  after the first injection).

The frozen encoder must provide ``embed_tokens(x [B,N,Din], coords [B,N,2]) -> [B,N+1,D]`` (CLS
first), ``layers`` (each ``layer(x [B,L,D]) -> [B,L,D]``) and ``final_norm(x)``. Its parameters
get ``requires_grad=False`` and it stays in eval mode (no dropout) whatever ``train()`` is called
with; gradients still flow through its activations into earlier adapter blocks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...encoders.slide.longnet import DropPath
from ...errors import ConfigError

__all__ = ["DropPath", "AdapterAttention", "Injector", "Extractor", "SelfAttentionBlock",
           "InteractionBlock", "ModalAdapter", "split_layers"]


class AdapterAttention(nn.Module):
    """Multi-head attention with a compressed query (``D -> D*ratio``) and full-width keys/values.

    ``forward(q [B,Lq,D], kv [B,Lk,D]) -> [B,Lq,D]``: inputs are already normalised; no residual.
    """

    def __init__(self, dim: int, heads: int = 12, ratio: float = 0.25, dropout: float = 0.0):
        super().__init__()
        inner = int(dim * ratio)
        if inner <= 0 or inner % heads:
            raise ConfigError(f"adapter attention width {inner} (= dim {dim} x ratio {ratio}) must be a "
                              f"positive multiple of adapter_heads {heads}")
        self.heads, self.inner = heads, inner
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)
        self.dropout = float(dropout)
        for lin in (self.q, self.k, self.v, self.out):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring."""
        b, lq, _ = q.shape
        lk = kv.shape[1]
        value = kv if value is None else value
        h, dh = self.heads, self.inner // self.heads
        qh = self.q(q).view(b, lq, h, dh).transpose(1, 2)
        kh = self.k(kv).view(b, lk, h, dh).transpose(1, 2)
        vh = self.v(value).view(b, lk, h, dh).transpose(1, 2)
        o = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, lq, self.inner))


def _add(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class Injector(nn.Module):
    """``x + gamma * CrossAttn(LN(x), LN(mm) + pos)``; gamma a learnable ``[D]`` vector."""

    def __init__(self, dim: int, heads: int, ratio: float, init_gamma: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = AdapterAttention(dim, heads, ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_gamma)))

    def forward(self, x: torch.Tensor, mm: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring."""
        if x.shape[1] == 0:
            return x
        return x + self.gamma * self.attn(self.norm_q(x), _add(self.norm_kv(mm), pos))


class Extractor(nn.Module):
    """``mm + CrossAttn(LN(mm) + pos, LN(img))`` then ``mm + DropPath(FFN(LN(mm)))``."""

    def __init__(self, dim: int, heads: int, ratio: float, ffn_ratio: float = 0.25,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = AdapterAttention(dim, heads, ratio)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, int(dim * ffn_ratio)), nn.ReLU(),
                                 nn.Linear(int(dim * ffn_ratio), dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, mm: torch.Tensor, img: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring."""
        mm = mm + self.attn(_add(self.norm_q(mm), pos), self.norm_kv(img))
        return mm + self.drop_path(self.ffn(self.norm_ffn(mm)))


class SelfAttentionBlock(nn.Module):
    """Pre-norm self-attention among the multi-modal (+ task) tokens: ``mm + SA(LN(mm) + pos)``."""

    def __init__(self, dim: int, heads: int, ratio: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = AdapterAttention(dim, heads, ratio)

    def forward(self, mm: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring."""
        h = self.norm(mm)
        qk = _add(h, pos)
        return mm + self.attn(qk, qk, value=h)


class InteractionBlock(nn.Module):
    """One injector, one extractor (+ extra extractors), optional trailing self-attention."""

    def __init__(self, dim: int, heads: int, attn_ratio: float, ffn_ratio: float, drop_path: float,
                 init_gamma: float, n_extra_extractors: int, self_attention: bool):
        super().__init__()
        self.injector = Injector(dim, heads, attn_ratio, init_gamma)
        self.extractor = Extractor(dim, heads, attn_ratio, ffn_ratio, drop_path)
        self.extra_extractors = nn.ModuleList(
            [Extractor(dim, heads, attn_ratio, ffn_ratio, drop_path) for _ in range(n_extra_extractors)])
        self.self_attn = SelfAttentionBlock(dim, heads, attn_ratio) if self_attention else None


def split_layers(depth: int, n_blocks: int) -> list[list[int]]:
    """Consecutive layer groups, e.g. ``split_layers(12, 3) == [[0..3], [4..7], [8..11]]``."""
    if n_blocks < 1 or n_blocks > depth:
        raise ConfigError(f"adapter_blocks must be between 1 and the encoder depth ({depth}); got {n_blocks}")
    return [list(map(int, g)) for g in np.array_split(np.arange(depth), n_blocks)]


class ModalAdapter(nn.Module):
    """Frozen slide encoder + Modal Adapter + task prompt + output head.

    Args:
        encoder: frozen slide encoder (see the module docstring for the interface).
        n_modal_tokens: ``M`` modal tokens given to :meth:`forward`.
        n_tasks: number of task prompts ``T_total`` (one-hot width); 1 = no task token.
        dim: encoder width ``D``.
    """

    def __init__(self, encoder: nn.Module, n_modal_tokens: int, n_tasks: int, dim: int, *,
                 blocks: int = 3, heads: int = 12, attn_ratio: float = 0.25, ffn_ratio: float = 0.25,
                 drop_path: float = 0.1, init_gamma: float = 0.0, extra_extractors: int = 2,
                 d_final: int = 256, use_task_token: bool | None = None, checkpointing: bool = False):
        super().__init__()
        self.encoder = encoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        self.dim = int(dim)
        self.n_tasks = int(n_tasks)
        self.use_task_token = (n_tasks > 1) if use_task_token is None else bool(use_task_token)
        self.n_modal_tokens = int(n_modal_tokens)
        self.checkpointing = bool(checkpointing)
        self.groups = split_layers(len(encoder.layers), blocks)
        self.blocks = nn.ModuleList([
            InteractionBlock(dim, heads, attn_ratio, ffn_ratio, drop_path, init_gamma,
                             extra_extractors if i == blocks - 1 else 0, self_attention=i < blocks - 1)
            for i in range(blocks)])
        n_mm = n_modal_tokens + int(self.use_task_token)
        self.modal_pos = nn.Parameter(torch.zeros(n_mm, dim))
        nn.init.trunc_normal_(self.modal_pos, std=0.02)
        if self.use_task_token:
            self.task_embed = nn.Sequential(nn.Linear(self.n_tasks, dim), nn.LayerNorm(dim))
            nn.init.trunc_normal_(self.task_embed[0].weight, std=0.02)
            nn.init.zeros_(self.task_embed[0].bias)
        else:
            self.task_embed = None
        self.out_norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, d_final)
        nn.init.trunc_normal_(self.out_proj.weight, std=0.02)
        nn.init.zeros_(self.out_proj.bias)
        for blk in self.blocks:  # FFN linears: trunc-normal 0.02 (attention keeps xavier)
            for ext in [blk.extractor, *blk.extra_extractors]:
                for m in ext.ffn:
                    if isinstance(m, nn.Linear):
                        nn.init.trunc_normal_(m.weight, std=0.02)
                        nn.init.zeros_(m.bias)

    def train(self, mode: bool = True):
        """Train/eval mode; the frozen slide encoder always stays in eval mode."""
        super().train(mode)
        self.encoder.eval()   # frozen encoder: never dropout / drop-path
        return self

    def _run_layer(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(layer, x, use_reentrant=False)
        return layer(x)

    def forward_features(self, bag: torch.Tensor, coords: torch.Tensor, modal_tokens: torch.Tensor,
                         task_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Run the adapted encoder for every task in ``task_ids`` as one batch.

        Args:
            bag: ``[N, Din]`` (or ``[1, N, Din]``) patch features of one patient.
            coords: ``[N, 2]`` (or ``[1, N, 2]``).
            modal_tokens: ``[M, D]`` or ``[1, M, D]``.
            task_ids: ``[T]`` task indices (ignored without task tokens; ``T = 1`` then).

        Returns:
            ``{"cls": [T, D] final-normed image CLS, "modal": [T, M, D], "task": [T, D] | None}``.
        """
        if bag.dim() == 2:
            bag = bag.unsqueeze(0)
        if coords.dim() == 2:
            coords = coords.unsqueeze(0)
        if modal_tokens.dim() == 2:
            modal_tokens = modal_tokens.unsqueeze(0)
        if self.use_task_token:
            if task_ids is None:
                raise ValueError("task_ids are required when the adapter uses task tokens")
            task_ids = torch.as_tensor(task_ids, device=modal_tokens.device).long().reshape(-1)
            t = task_ids.numel()
        else:
            t = 1
        x = self.encoder.embed_tokens(bag, coords)                      # [1, N+1, D]
        x = x.expand(t, -1, -1)
        mm = modal_tokens.to(x.dtype).expand(t, -1, -1)
        if self.use_task_token:
            onehot = F.one_hot(task_ids, self.n_tasks).to(self.task_embed[0].weight.dtype)
            mm = torch.cat([self.task_embed(onehot).unsqueeze(1).to(mm.dtype), mm], dim=1)
        pos = self.modal_pos.unsqueeze(0)
        cls, patches = x[:, :1], x[:, 1:]
        layers = self.encoder.layers
        for blk, group in zip(self.blocks, self.groups):
            patches = blk.injector(patches, mm, pos)
            x = torch.cat([cls, patches], dim=1)
            for li in group:
                x = self._run_layer(layers[li], x)
            cls, patches = x[:, :1], x[:, 1:]
            img = patches if patches.shape[1] > 0 else cls   # a patient without WSI: attend to CLS
            mm = blk.extractor(mm, img, pos)
            for ext in blk.extra_extractors:
                mm = ext(mm, img, pos)
            if blk.self_attn is not None:
                mm = blk.self_attn(mm, pos)
        cls_out = self.encoder.final_norm(cls)[:, 0]
        if self.use_task_token:
            return {"cls": cls_out, "modal": mm[:, 1:], "task": mm[:, 0]}
        return {"cls": cls_out, "modal": mm, "task": None}

    def head(self, feats: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """Output head: CLS + mean modal token (+ task token) -> LayerNorm -> Linear."""
        z = feats["cls"] + feats["modal"].mean(dim=1)
        if feats["task"] is not None:
            z = z + feats["task"]
        return self.out_proj(self.out_norm(z))

    def forward(self, bag: torch.Tensor, coords: torch.Tensor, modal_tokens: torch.Tensor,
                task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, d_final]`` outputs, one row per task in ``task_ids``."""
        return self.head(self.forward_features(bag, coords, modal_tokens, task_ids))
