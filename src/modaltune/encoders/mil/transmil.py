"""TransMIL (Shao et al., NeurIPS 2021) and the Nystrom attention it is built on.

TransMIL models correlations between the patches of a slide, which attention pooling (ABMIL)
cannot: two Nystrom-attention layers with a pyramid position encoding (PPEG) between them and a
class token whose final state is the slide embedding. Nystrom attention (Xiong et al.,
Nystromformer, AAAI 2021) makes that affordable for bags of thousands of patches: softmax
attention is approximated through segment-mean landmarks and an iterative Moore-Penrose
pseudo-inverse, with a depthwise-convolution residual on the values.

Everything is plain torch (no ``nystrom-attention`` package), so it runs on CPU in fp32 and
under bf16 autocast; the attention core is kept in fp32 because the pseudo-inverse needs it.

Contract shared with the other MIL aggregators: see :mod:`modaltune.encoders.mil`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import neg_big

__all__ = ["moore_penrose_pinv", "NystromAttention", "PPEG", "TransMIL"]


def moore_penrose_pinv(x: Tensor, iters: int = 6) -> Tensor:
    """Iterative Moore-Penrose pseudo-inverse of square matrices ``x`` [...,m,m].

    Razavi et al. (2014) iteration used by Nystromformer:
    ``Z <- 1/4 Z (13 I - X Z (15 I - X Z (7 I - X Z)))`` from ``Z0 = X^T / (||X||_1 ||X||_inf)``.
    """
    absx = x.abs()
    col = absx.sum(dim=-2).amax(dim=-1, keepdim=True)  # max column sum, [...,1]
    row = absx.sum(dim=-1).amax(dim=-1, keepdim=True)  # max row sum
    z = x.transpose(-1, -2) / (col * row).unsqueeze(-1)
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class NystromAttention(nn.Module):
    """Multi-head Nystrom self-attention (Xiong et al. 2021), written in plain torch.

    The sequence is left-padded to a multiple of ``num_landmarks``; landmarks are means of
    consecutive segments of queries / keys (padding excluded), softmax attention is
    approximated by ``softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V``, and a
    depthwise convolution over the sequence of values is added (``residual=True``). The
    attention core runs in float32 even under bf16 autocast (the pseudo-inverse needs it).
    With as many landmarks as tokens the approximation is exact up to the pseudo-inverse
    iterations.

    Args:
        dim: model width.
        heads: attention heads.
        dim_head: width per head.
        num_landmarks: number of landmarks ``m``.
        pinv_iterations: iterations of :func:`moore_penrose_pinv`.
        residual: add the depthwise-convolution residual on the values.
        residual_conv_kernel: kernel length of that convolution.
        dropout: dropout on the output projection.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        num_landmarks: int = 256,
        pinv_iterations: int = 6,
        residual: bool = True,
        residual_conv_kernel: int = 33,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.num_landmarks = num_landmarks
        self.pinv_iterations = pinv_iterations
        self.scale = dim_head ** -0.5
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.res_conv = None
        if residual:
            k = residual_conv_kernel
            self.res_conv = nn.Conv2d(heads, heads, (k, 1), padding=(k // 2, 0), groups=heads, bias=False)

    def _prepare(self, x: Tensor, mask: Tensor | None):
        b, n, _ = x.shape
        m = self.num_landmarks
        pad = (m - n % m) % m
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
        if pad:
            x = F.pad(x, (0, 0, pad, 0))
            mask = F.pad(mask, (pad, 0), value=False)
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        h = self.heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(b, -1, h, self.dim_head).transpose(1, 2).float()

        q, k, v = split(q), split(k), split(v)
        keep = mask[:, None, :, None].float()
        q, k, v = q * keep * self.scale, k * keep, v * keep
        return q, k, v, mask, pad

    def _core(self, q: Tensor, k: Tensor, mask: Tensor):
        b, h, n, d = q.shape
        m = self.num_landmarks
        seg = n // m
        count = mask.float().reshape(b, 1, m, seg).sum(-1, keepdim=True).clamp(min=1.0)  # [b,1,m,1]
        q_land = q.reshape(b, h, m, seg, d).sum(-2) / count
        k_land = k.reshape(b, h, m, seg, d).sum(-2) / count
        land_ok = mask.reshape(b, m, seg).any(-1)  # [b,m]
        big = neg_big(q)
        sim1 = (q @ k_land.transpose(-1, -2)).masked_fill(~land_ok[:, None, None, :], big)
        sim2 = (q_land @ k_land.transpose(-1, -2)).masked_fill(
            ~(land_ok[:, None, :, None] & land_ok[:, None, None, :]), big
        )
        sim3 = (q_land @ k.transpose(-1, -2)).masked_fill(~mask[:, None, None, :], big)
        a1, a2, a3 = (torch.softmax(s, dim=-1) for s in (sim1, sim2, sim3))
        return a1, moore_penrose_pinv(a2, self.pinv_iterations), a3

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Self-attention over ``x`` [B,N,dim] -> [B,N,dim]."""
        n = x.shape[1]
        q, k, v, mask_p, pad = self._prepare(x, mask)  # projections may run under autocast
        with torch.autocast(device_type=x.device.type, enabled=False):
            a1, a2_inv, a3 = self._core(q, k, mask_p)
            out = (a1 @ a2_inv) @ (a3 @ v)
            if self.res_conv is not None:
                conv = self.res_conv
                out = out + F.conv2d(v, conv.weight.float(), padding=conv.padding, groups=conv.groups)
        b, h, _, d = out.shape
        out = out.transpose(1, 2).reshape(b, -1, h * d)[:, pad:pad + n]
        return self.to_out(out.to(x.dtype))

    def attention_row(self, x: Tensor, row: int = 0, mask: Tensor | None = None) -> Tensor:
        """Approximate attention of query ``row`` over all tokens, averaged over heads: [B,N]."""
        n = x.shape[1]
        q, k, _, mask_p, pad = self._prepare(x, mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            a1, a2_inv, a3 = self._core(q, k, mask_p)
            r = a1[:, :, pad + row: pad + row + 1] @ a2_inv @ a3  # [b,h,1,n_padded]
        return r.squeeze(2).mean(1)[:, pad:pad + n]


class PPEG(nn.Module):
    """Pyramid position encoding generator of TransMIL: depthwise 7/5/3 convolutions + identity
    over the patch tokens laid out on a square grid (the class token passes through)."""

    def __init__(self, dim: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, x: Tensor, side: int) -> Tensor:
        """Class token + ``side * side`` patch tokens [B,1+side^2,dim] -> the same shape."""
        cls, feat = x[:, :1], x[:, 1:]
        b, n, c = feat.shape
        grid = feat.transpose(1, 2).reshape(b, c, side, side)
        grid = grid + sum(conv(grid) for conv in self.convs)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


class _TransLayer(nn.Module):
    def __init__(self, dim: int, heads: int, landmarks: int, pinv_iterations: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(
            dim, heads=heads, dim_head=dim // heads, num_landmarks=landmarks,
            pinv_iterations=pinv_iterations, residual=True, dropout=dropout,
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x + self.attn(self.norm(x), mask)


class TransMIL(nn.Module):
    """TransMIL (Shao et al. 2021).

    ``Linear(D, dim) + ReLU``; the patch sequence is padded to a square number by repeating its
    first patches cyclically (the paper's "squaring"); a learned class token is prepended;
    Nystrom layer -> PPEG -> Nystrom layer -> LayerNorm; the class token is the slide embedding.
    Sizes follow the paper's code (dim 512, 8 heads, dim/2 landmarks, 6 pseudo-inverse
    iterations); dropout on the attention output is ours (0.1). ``mask`` marks padded patches
    of a batch; the square padding repeats real patches only.

    Args:
        in_dim: patch feature width.
        dim: model width ``H``.
        heads: attention heads.
        landmarks: Nystrom landmarks (default ``dim // 2``).
        pinv_iterations: pseudo-inverse iterations.
        dropout: dropout after each attention output projection.
        n_out: width of the optional linear head (0 = identity).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 512,
        heads: int = 8,
        landmarks: int | None = None,
        pinv_iterations: int = 6,
        dropout: float = 0.1,
        n_out: int = 0,
    ):
        super().__init__()
        self.out_dim = dim
        landmarks = landmarks or max(1, dim // 2)
        self.fc = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layer1 = _TransLayer(dim, heads, landmarks, pinv_iterations, dropout)
        self.ppeg = PPEG(dim)
        self.layer2 = _TransLayer(dim, heads, landmarks, pinv_iterations, dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_out) if n_out > 0 else nn.Identity()

    def _tokens(self, bag: Tensor, mask: Tensor | None):
        h = self.fc(bag)
        b, n, _ = h.shape
        if n == 0:
            raise ValueError("TransMIL needs at least one patch per bag")
        side = math.ceil(math.sqrt(n))
        extra = side * side - n
        if extra:
            idx = torch.arange(extra, device=h.device) % n
            h = torch.cat([h, h[:, idx]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, mask[:, idx]], dim=1)
        h = torch.cat([self.cls_token.expand(b, -1, -1).to(h.dtype), h], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=h.device), mask], dim=1)
        return h, mask, side

    def forward_features(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Slide embedding [B,dim] (normalised class token)."""
        h, mask, side = self._tokens(bag, mask)
        h = self.layer1(h, mask)
        h = self.ppeg(h, side)
        h = self.layer2(h, mask)
        return self.norm(h[:, 0])

    def forward_attention(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Class-token attention [B,N] of the last layer (Nystrom approximation, averaged over
        heads), restricted to the original patches and renormalised to sum to 1."""
        n = bag.shape[1]
        h, mask2, side = self._tokens(bag, mask)
        h = self.ppeg(self.layer1(h, mask2), side)
        a = self.layer2.attn.attention_row(self.layer2.norm(h), 0, mask2)[:, 1:n + 1].clamp(min=0)
        if mask is not None:
            a = a * mask.to(a.dtype)
        return a / a.sum(-1, keepdim=True).clamp(min=1e-12)

    def forward_head(self, h: Tensor) -> Tensor:
        """The optional linear head on slide embeddings ``h`` [B,dim]."""
        return self.head(h)

    def forward(self, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """``forward_head(forward_features(bag, mask))``."""
        return self.forward_head(self.forward_features(bag, mask))
