"""ModalTune's text side: the frozen random projector of the text targets (paper Sec. 3.3).

The text targets (the patient's prompts through a frozen text encoder) pass a projector before the
KL objective. Default: ``frozen_random`` (randomly initialised from ``model.projector_seed`` and
frozen, as in the reference code); the Table 8 ablations use ``none``, ``trainable`` or
``model_side`` (a trainable ``Linear(d_final, Dt)`` on the model side instead).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PROJECTORS", "TextProjector", "seeded_projector"]

PROJECTORS = ("frozen_random", "none", "trainable", "model_side")


class TextProjector(nn.Module):
    """``1x1 conv(Dt -> d) -> LayerNorm -> ReLU -> 1x1 conv(d -> d)`` on a vector, as linears.

    A 1x1 convolution on a ``[C, 1, 1]`` map is a linear layer with the same fan-in, so PyTorch's
    default initialisation (and hence the random projection's distribution) is the same.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU(),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project text embeddings ``[..., Dt]`` -> ``[..., d]``."""
        return self.net(x)


def seeded_projector(in_dim: int, out_dim: int, seed: int) -> TextProjector:
    """A :class:`TextProjector` initialised from its own seed (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return TextProjector(in_dim, out_dim)
