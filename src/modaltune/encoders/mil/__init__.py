"""Multiple-instance learning (MIL) slide aggregators: ABMIL and TransMIL.

All follow one small contract (as in MIL-Lab):

* ``forward_features(bag [B,N,D], mask=None) -> [B,H]`` slide embedding;
* ``forward_attention(bag [B,N,D], mask=None) -> [B,N]`` attention weights over patches
  (they sum to 1 over the valid patches of each bag);
* ``forward_head(h [B,H]) -> [B,n_out]`` an optional linear head (identity when ``n_out == 0``;
  the baselines put the shared task head of :mod:`modaltune.methods.baselines.heads` on top
  instead);
* ``forward(bag) = forward_head(forward_features(bag))``.

``mask`` is an optional bool tensor [B,N] (True = real patch) for padded batches.

Modules: :mod:`.abmil` (attention pooling, gated or not) and :mod:`.transmil` (TransMIL and
Nystrom attention).

References:
    ABMIL: Ilse, Tomczak, Welling. Attention-based deep multiple instance learning. ICML 2018
    (attention, Eq. 8, and gated attention, Eq. 9), with the patch-embedding layer used by CLAM
    (Lu et al. 2021).
    TransMIL: Shao et al. TransMIL: transformer based correlated multiple instance learning for
    whole slide image classification. NeurIPS 2021 (two Nystrom-attention layers, PPEG between
    them, class token).
    Nystrom attention: Xiong et al. Nystromformer. AAAI 2021 (segment-mean landmarks,
    iterative Moore-Penrose pseudo-inverse, depthwise convolution residual on the values).
"""

from __future__ import annotations

from .abmil import ABMIL, GatedAttention, NonGatedAttention
from .transmil import PPEG, NystromAttention, TransMIL, moore_penrose_pinv

__all__ = [
    "GatedAttention",
    "NonGatedAttention",
    "ABMIL",
    "NystromAttention",
    "PPEG",
    "TransMIL",
    "moore_penrose_pinv",
]
