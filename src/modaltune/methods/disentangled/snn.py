"""The teacher's per-subspace gene encoder: the official ``MaxNet`` self-normalising network.

Spec (b) "SNN per subspace": ``Linear(G_s, 64) - ELU - AlphaDropout -> Linear(64, 48) - ELU - AD ->
Linear(48, 32) - ELU - AD -> Linear(32, 128) - ELU - AD -> ReLU``, weights ``N(0, 1/sqrt(fan_in))``
and zero biases (``init_max_weights``), dropout 0.1. The paper cites SNN (Klambauer et al.) with
SELU; the code uses ELU, which we follow (``activation: elu``, ``selu`` available). The final
ReLU makes the gene embedding non-negative. One network per subspace, shared by the teacher's two
magnifications.

Kept here rather than in ``encoders/genomics.py::SNNEncoder`` (shared with other baselines) because
it differs in activation, final ReLU and hidden widths; building it here changes nothing for them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ["MaxNet"]

_ACTIVATIONS = {"elu": nn.ELU, "selu": nn.SELU}


class MaxNet(nn.Module):
    """Self-normalising MLP of the official teacher (module docstring).

    Args:
        n_genes: input width (genes of the subspace).
        out_dim: embedding width (the model width, 128).
        hidden: widths of the hidden layers before the output layer (official: 64, 48, 32).
        dropout: AlphaDropout rate after every layer.
        activation: ``elu`` (official code) or ``selu`` (the SNN paper).
    """

    def __init__(self, n_genes: int, out_dim: int = 128, hidden: Sequence[int] = (64, 48, 32), dropout: float = 0.1,
                 activation: str = "elu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"model.snn_activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if n_genes < 1:
            raise ConfigError("the gene encoder needs at least one gene")
        layers: list[nn.Module] = []
        d = int(n_genes)
        for width in [*[int(h) for h in hidden], int(out_dim)]:
            lin = nn.Linear(d, width)
            nn.init.normal_(lin.weight, 0.0, 1.0 / np.sqrt(d))
            nn.init.zeros_(lin.bias)
            layers += [lin, _ACTIVATIONS[activation](), nn.AlphaDropout(dropout)]
            d = width
        layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: Tensor) -> Tensor:
        """Embed ``x`` [B, G_s] into [B, out_dim]."""
        return self.net(x)
