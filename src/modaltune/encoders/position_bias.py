"""Continuous position bias over a query grid, with a hand-written backward that stores nothing large.

Why: the deformable attention of the disentangled framework (:mod:`modaltune.encoders.deformable`)
adds to every attention logit a bias computed by a small MLP (Swin V2's continuous position bias,
``2 -> 32 ReLU -> 32 ReLU -> out``) of the log-spaced offset ``sign(d) * log(1 + |d|)`` between the
query's position and the sampled key's position. At the paper setting that is one MLP per (query,
sampled key, offset group): batch 8 x 8 groups x 2,500 queries x 144 keys = 23 M rows. Evaluated
with autograd, its 32-wide activations alone take ~12 GB, and when they are recomputed instead
(``torch.utils.checkpoint``) the MLP dominated the layer's time on CPU (``benchmarks/README.md``).

How it is cheaper, exactly (same values up to float rounding, tested against the plain MLP and
with ``gradcheck``):

1. **Separable first layer.** The queries are the ``H x W`` grid, so the x offset depends only on
   the query's column and the y offset only on its row; the first layer's pre-activation is
   ``a_y[row, key] + a_x[column, key]`` with ``a_y = w1[:, 1] * f(dy) + b1`` over ``H x keys`` and
   ``a_x = w1[:, 0] * f(dx)`` over ``W x keys`` (``f`` the log spacing): the logarithms and the
   2 -> 32 layer run on ``(H + W) x keys`` rows instead of ``H x W x keys``. That part stays in
   autograd (its tensors are small), so gradients reach the key positions, i.e. the offsets.
2. **Tiled layers 2-3 in one autograd node** (:class:`_GridMLP`): the forward pass runs over tiles
   of a few query rows of one group (about 2^14 rows of 32 floats, near the L2 cache) and keeps
   only ``a_y``, ``a_x`` and the weights; the backward pass recomputes each tile's hidden layers
   and forms the gradients with two GEMMs and two fused ReLU masks per tile
   (``threshold_backward``), accumulating ``dW2``, ``dW3`` and the biases, and reducing the first
   layer's gradient over columns (for ``a_y``) and rows (for ``a_x``). Autograd's generic path
   would keep or recompute about twice as many full-size temporaries.

At the paper size this is ~5x faster than the checkpointed autograd MLP (forward + backward,
2-core CPU: 24.8 s -> 4.5 s) with the same memory (the ``[G, out, H*W, keys]`` output and one tile of work). On a
GPU the tiles are much larger (a whole group at the paper size), since there the cost of many small
kernels, not cache misses, is what tiling must avoid; not measured (no GPU was available).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["ContinuousPositionBias"]

_TILE_ROWS = 2 ** 14  # (query, key) rows of one CPU tile: 2 MB of 32-wide fp32 activations, near L2
_TILE_ROWS_ACCELERATOR = 2 ** 21  # on GPUs: few large tiles (kernel launches, not caches, are the cost)


class ContinuousPositionBias(nn.Module):
    """Continuous position bias (Swin V2): an MLP of log-spaced query-to-key offsets on a grid.

    Parameter names (``mlp.0``, ``mlp.2``, ``mlp.4``) are those of an ``nn.Sequential`` of
    ``Linear(2, hidden), ReLU, Linear(hidden, hidden), ReLU, Linear(hidden, out_dim)``, so state
    dicts of the plain MLP load as they are.

    Args:
        hidden: width of the two hidden layers.
        out_dim: number of biases per (query, key) pair, one per head of an offset group.
    """

    def __init__(self, hidden: int = 32, out_dim: int = 1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, key_pos: Tensor, height: int, width: int) -> Tensor:
        """Bias for every (grid query, key) pair.

        Args:
            key_pos: ``[G, Nk, 2]`` normalised (x, y) key positions, one set per offset group.
            height: rows of the query grid; row ``i`` is at ``y = 2 i / (height - 1) - 1``.
            width: columns of the query grid; column ``j`` is at ``x = 2 j / (width - 1) - 1``.

        Returns:
            ``[G, out_dim, height * width, Nk]`` biases, queries in row-major (y, x) order.
        """
        lin1, lin2, lin3 = self.mlp[0], self.mlp[2], self.mlp[4]
        xs = grid_axis(width, key_pos)
        ys = grid_axis(height, key_pos)
        a_x = _log_spaced(xs[None, :, None] - key_pos[:, None, :, 0])[..., None] * lin1.weight[:, 0]  # [G, W, Nk, C]
        a_y = _log_spaced(ys[None, :, None] - key_pos[:, None, :, 1])[..., None] * lin1.weight[:, 1] + lin1.bias
        tile = _TILE_ROWS if key_pos.device.type == "cpu" else _TILE_ROWS_ACCELERATOR
        rows = max(1, round(tile / max(1, width * key_pos.shape[1])))
        out = _GridMLP.apply(a_y, a_x, lin2.weight, lin2.bias, lin3.weight, lin3.bias, rows)
        return out.view(out.shape[0], out.shape[1], height * width, key_pos.shape[1])


def grid_axis(n: int, like: Tensor) -> Tensor:
    """``n`` positions evenly spaced over [-1, 1] (-1 for ``n = 1``, as the official normalisation gives), in ``like``'s dtype and device."""
    return 2.0 * torch.arange(n, device=like.device, dtype=like.dtype) / max(n - 1, 1) - 1.0


def _log_spaced(d: Tensor) -> Tensor:
    return torch.sign(d) * torch.log1p(d.abs())


class _GridMLP(torch.autograd.Function):
    """``relu(relu(a_y[r] + a_x[c]) W2^T + b2) W3^T + b3`` for every (row r, column c, key), tiled.

    Inputs ``a_y [G, H, Nk, C]`` (with the first layer's bias), ``a_x [G, W, Nk, C]``, the last two
    layers' weights and the tile height in query rows; output ``[G, out, H, W, Nk]``.
    """

    @staticmethod
    def forward(ctx, a_y, a_x, w2, b2, w3, b3, rows):
        """Evaluate tile by tile; keep only the inputs for the backward pass."""
        g_n, h_n, k_n, c_n = a_y.shape
        w_n, o_n = a_x.shape[1], w3.shape[0]
        out = a_y.new_empty(g_n, o_n, h_n, w_n, k_n)
        for g, r0, r1 in _tiles(g_n, h_n, rows):
            _, h2 = _hidden(a_y[g, r0:r1], a_x[g], w2, b2, c_n)
            if o_n == 1:
                torch.addmv(b3, h2, w3[0], out=out[g, 0, r0:r1].view(-1))
            else:
                out[g, :, r0:r1] = torch.addmm(b3, h2, w3.t()).t().reshape(o_n, r1 - r0, w_n, k_n)
        ctx.save_for_backward(a_y, a_x, w2, b2, w3, b3)
        ctx.rows = rows
        return out

    @staticmethod
    @once_differentiable   # a second derivative through the hand-written backward is an error, not wrong
    def backward(ctx, grad_out):
        """Recompute each tile's hidden layers and accumulate every input's gradient."""
        a_y, a_x, w2, b2, w3, b3 = ctx.saved_tensors
        g_n, h_n, k_n, c_n = a_y.shape
        w_n, o_n = a_x.shape[1], w3.shape[0]
        grad_out = grad_out.contiguous()
        d_ay, d_ax = torch.zeros_like(a_y), torch.zeros_like(a_x)
        dw2, db2, dw3, db3 = (torch.zeros_like(t) for t in (w2, b2, w3, b3))
        for g, r0, r1 in _tiles(g_n, h_n, ctx.rows):
            h1, h2 = _hidden(a_y[g, r0:r1], a_x[g], w2, b2, c_n)
            go = grad_out[g, :, r0:r1].reshape(o_n, -1)  # [out, tile rows]
            dw3.addmm_(go, h2)
            db3.add_(go.sum(1))
            dz2 = torch.outer(go[0], w3[0]) if o_n == 1 else go.t() @ w3
            dz2 = torch.ops.aten.threshold_backward(dz2, h2, 0)
            dw2.addmm_(dz2.t(), h1)
            db2.add_(dz2.sum(0))
            dz1 = torch.ops.aten.threshold_backward(dz2 @ w2, h1, 0).view(r1 - r0, w_n, k_n, c_n)
            d_ay[g, r0:r1] += dz1.sum(1)
            d_ax[g] += dz1.sum(0)
        return d_ay, d_ax, dw2, db2, dw3, db3, None


def _tiles(groups: int, height: int, rows: int):
    for g in range(groups):
        for r0 in range(0, height, rows):
            yield g, r0, min(height, r0 + rows)


def _hidden(a_y: Tensor, a_x: Tensor, w2: Tensor, b2: Tensor, c_n: int) -> tuple[Tensor, Tensor]:
    """The two hidden layers of one tile, ``[tile rows, C]`` each (no autograd: called inside the Function)."""
    h1 = torch.add(a_y[:, None], a_x[None]).relu_().view(-1, c_n)
    return h1, torch.addmm(b2, h1, w2.t()).relu_()
