"""Shared by the benchmark tests: a toy survival method with one named variant, registered once."""

from __future__ import annotations

from torch import nn

from modaltune.methods.base import LossOutput, Method
from modaltune.methods.losses import nll_survival_loss, survival_risk
from modaltune.registry import METHODS

TOY = "_test_runner_toy"


class _Toy(Method):
    requires = frozenset({"omics"})
    evaluation = "predict"
    tasks = ("survival",)
    family = "Toy family"
    family_order = 7
    display_name = "Toy"
    variants = {"x3": ("scale 3", {"model": {"scale": 3.0}})}

    @classmethod
    def default_config(cls):
        return {"model": {"scale": 1.0}}

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.net = nn.Linear(info.n_genes, info.n_bins)

    def loss(self, p):
        out = self.net(p["omics"].float())
        if not bool(p["has_survival"]) or int(p["survival_bin"]) < 0:
            return LossOutput({"nll": out.sum() * 0})
        return LossOutput({"nll": nll_survival_loss(out, p["survival_bin"], p["event"])})

    def embed(self, p):
        return self.net(p["omics"].float())

    def predict(self, p):
        return {"logits": None, "risk": survival_risk(self.net(p["omics"].float()))}


if TOY not in METHODS:
    METHODS.register(TOY)(_Toy)
