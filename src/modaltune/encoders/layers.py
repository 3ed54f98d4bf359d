"""Small generic layers shared by encoders and methods.

They live here, not next to one model, so that a method reusing a layer (the Modal Adapter uses
:class:`DropPath`) does not have to import a whole slide encoder for it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "neg_big"]


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with ``p = 0``).

    In training, each sample of the batch keeps the residual branch with probability ``1 - p``
    and the kept samples are scaled by ``1 / (1 - p)``, so the expectation is unchanged.

    Args:
        p: probability of dropping the branch for a sample.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop ``x`` for whole samples (dim 0) with probability ``p`` in training mode."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        """The drop probability, for ``print(module)``."""
        return f"p={self.p}"


def neg_big(x: torch.Tensor) -> float:
    """The most negative finite value of ``x``'s dtype, to mask scores before a softmax.

    Finite (unlike ``-inf``) so that a row whose entries are all masked gives a uniform softmax
    instead of NaNs.

    Args:
        x: the tensor whose dtype decides the value.

    Returns:
        ``-torch.finfo(x.dtype).max``.
    """
    return -torch.finfo(x.dtype).max
