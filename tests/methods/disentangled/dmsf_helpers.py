"""Helpers of the disentangled-framework tests: tiny settings, building a method, a stacked batch."""

from __future__ import annotations

#: tiny model and data settings shared by the tests (grid 8: 64 patches, a 2 x 2 offset lattice)
SUBSPACES = ("model.subspaces={tumor: [SYN_HYPOXIA, SYN_EMT, SYN_G2M*, SYN_E2F*], "
             "tme: [SYN_INTERFERON*, SYN_TNFA*, SYN_P53*, SYN_MYC*]}")
TINY = ["model.dim=16", "model.dca.dim_head=8", "model.dca.heads=2", "model.dca.offset_groups=2",
        "model.snn_hidden=[8]", "model.selection_heads=2", SUBSPACES, "data.grid=8", "train.progress_bar=false",
        "seed=0", "train.epochs=1", "train.batch_size=2", "train.warmup_epochs=0"]


def tiny_cfg(method: str, *extra: str) -> dict:
    """The resolved config of ``method`` with :data:`TINY` and ``extra`` overrides."""
    from modaltune.config import resolve_config

    return resolve_config(method, overrides=[*TINY, *extra])


def build(method: str, cohort, split, *extra: str, frozen=None):
    """``(method instance, cfg, info)`` built as the engine builds it."""
    import torch

    from modaltune.runs.builders import build_method, cohort_info

    cfg = tiny_cfg(method, *extra)
    info = cohort_info(cohort, cfg, split["train"])
    torch.manual_seed(0)
    return build_method(cfg, info, frozen), cfg, info


def batch_of(cohort, split, cfg, n: int = 4, part: str = "train", omics: bool = True):
    """A stacked batch of the first ``n`` patients of ``split[part]`` with the inputs ``cfg``'s method declares."""
    from modaltune.data.dataset import PatientDataset
    from modaltune.data.fitted_state import FittedState
    from modaltune.data.patient import collate_stack
    from modaltune.runs.builders import declaration

    state = FittedState.fit(cohort, split["train"])
    inputs = set(declaration(cfg).inputs) | ({"omics"} if omics else set())
    ds = PatientDataset(cohort, split[part][:n], state, train=False, inputs=inputs, grid=cfg["data"]["grid"])
    return collate_stack([ds[i] for i in range(len(ds))])
