"""Tiny MICE settings and patient factories shared by the MICE tests (CPU, a few thousand parameters)."""

from __future__ import annotations

import pytest
import torch

from modaltune.methods.base import CohortInfo

#: model.* overrides that shrink every width (same structure as the defaults).
TINY = {"dim": 32, "genomics_hidden": [16, 32], "report_hidden": [16, 32], "path_attn_dim": 8,
        "mamba": {"d_state": 4, "chunk_size": 8}, "pre_expert": {"depth": 2, "heads": 2, "dim_head": 8, "mlp": 16},
        "expert_ranks": [4, 8, 12], "keep_k": 2, "specialized_rank": 8, "consensual_rank": 8, "fusion_rank": 8,
        "router_hidden": 8, "hidden": 32}


def _tiny_cfg(cls, extra: dict) -> dict:
    m = {k: v for k, v in TINY.items() if k in cls.model_defaults}
    m.update(extra)
    return {"model": m}


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(name, **model_keys)`` -> ``{"model": ...}``: the TINY widths the method knows, plus the keys."""
    from modaltune.registry import METHODS, load_builtin

    load_builtin()
    return lambda name, **extra: _tiny_cfg(METHODS.get(name), extra)


@pytest.fixture
def build(info, tiny_cfg):
    """``build(name, info=None, seed=0, **model_keys)`` -> a tiny registered method in eval mode."""
    from modaltune.registry import METHODS

    def make(name: str, info_: CohortInfo | None = None, seed: int = 0, **extra):
        torch.manual_seed(seed)
        return METHODS.get(name)(tiny_cfg(name, **extra), info_ or info).eval()

    return make


@pytest.fixture
def info() -> CohortInfo:
    """Three cancer types, 12-d patches, 10 genes, 6-d reports, 4 bins."""
    return CohortInfo(feature_dim=12, n_genes=10, report_dim=6, n_bins=4, sites=["A", "B", "C"])


@pytest.fixture
def patient():
    """``patient(i, site, wsi=True, omics=True, report=True)`` -> a patient dict (absent inputs are zeros)."""

    def make(i: int, site: str = "A", wsi: bool = True, omics: bool = True, report: bool = True,
             n_patches: int = 5) -> dict:
        g = torch.Generator().manual_seed(100 + i)
        return {"case_id": f"c{i}", "site": site,
                "bag": torch.randn(n_patches if wsi else 0, 12, generator=g),
                "omics": torch.randn(10, generator=g) if omics else torch.zeros(10),
                "report_emb": torch.randn(6, generator=g) if report else torch.zeros(6),
                "has_wsi": torch.tensor(wsi), "has_omics": torch.tensor(omics), "has_report": torch.tensor(report),
                "survival_bin": torch.tensor(i % 4), "event": torch.tensor(float(i % 2)),
                "has_survival": torch.tensor(True)}

    return make
