"""Every shipped config initialises every registered method, and its forward pass runs
(``cpu_small``)."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.config import resolve_config, shipped_configs
from modaltune.data.patient import collate_stack
from modaltune.errors import InputWarning
from modaltune.methods.base import CohortInfo, Method
from modaltune.registry import METHODS
from modaltune.runs.builders import build_method

# ----------------------------------------------------------------------------------------------
# every shipped config initialises every registered method


N_GENES, TEXT_DIM, N_CLASSES, N_BINS = 50, 384, 3, 4
SMALL_FEATURE_DIM, GIGAPATH_FEATURE_DIM = 64, 1536
CONFIGS = sorted(shipped_configs())
METHOD_NAMES = [n for n in METHODS.names() if not n.startswith("_")]   # built-in methods, not test toys


def _pathways() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.sort(rng.choice(N_GENES, size, replace=False)).astype(np.int64) for size in (4, 6, 8, 10, 5, 12)]


def _uses_gigapath(model_cfg) -> bool:
    """Whether a resolved ``model`` section asks for the GigaPath-size (12 x 768) slide encoder."""
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            if key in ("encoder_size", "slide_size") and value == "gigapath":
                return True
            if _uses_gigapath(value):
                return True
    return False


def _feature_dim(config: str) -> int:
    """The tile-feature width a config implies: GigaPath's 1536 when ModalTune runs the GigaPath encoder."""
    return GIGAPATH_FEATURE_DIM if _uses_gigapath(resolve_config("modaltune", file=config)["model"]) \
        else SMALL_FEATURE_DIM


#: gene-set names as prepared cohorts have them (including the tumor / microenvironment subspaces)
PATHWAY_NAMES = ["TUMOR_PROLIFERATION", "TUMOR_INVASION", "TME_IMMUNE", "TME_STROMA", "pathway_4", "pathway_5"]
REPORT_DIM = 8


def _info(cfg: dict, feature_dim: int) -> CohortInfo:
    return CohortInfo(feature_dim=feature_dim, feature_dim_secondary=feature_dim, n_genes=N_GENES,
                      pathways=_pathways(), pathway_names=list(PATHWAY_NAMES), n_classes=N_CLASSES, n_bins=N_BINS,
                      class_counts={"BRCA": N_CLASSES}, class_offsets={"BRCA": 0}, sites=["BRCA"], text_dim=TEXT_DIM,
                      report_dim=REPORT_DIM, task=str(cfg["model"].get("task") or "multi"),
                      train_class_counts={"BRCA": [5] * N_CLASSES},
                      gene_variance=[1.0 + 0.1 * i for i in range(N_GENES)])


def _build(config: str, method: str):
    cfg = resolve_config(method, file=config)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)   # model.checkpoint: null is warned on purpose
        model = build_method(cfg, _info(cfg, _feature_dim(config)))
    return cfg, model


def test_feature_dims_implied_by_the_shipped_configs():
    assert _feature_dim("cpu_small") == SMALL_FEATURE_DIM
    assert _feature_dim("paper") == GIGAPATH_FEATURE_DIM
    assert _feature_dim("paper_pan_cancer") == GIGAPATH_FEATURE_DIM


def test_every_method_and_config_is_covered():
    assert {"abmil", "modaltune", "gigapath_tuned", "gigapath_cat", "gigapath_kp"} <= set(METHOD_NAMES)
    assert {"cpu_small", "paper", "paper_pan_cancer"} <= set(CONFIGS)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_config_builds_method(config, method):
    cfg, model = _build(config, method)
    assert cfg["method"] == method
    assert isinstance(model, Method) and type(model) is METHODS.get(method)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_trainable > 0
    if _uses_gigapath(cfg["model"]):
        # the GigaPath-size LongNet: 12 layers x 768 (~86M parameters)
        assert n_params > 80_000_000, f"{config}/{method}: {n_params} parameters"
    else:
        assert n_params < 15_000_000, f"{config}/{method}: {n_params} parameters"
    if config == "cpu_small":
        assert not _uses_gigapath(cfg["model"])
    if method == "modaltune" and _uses_gigapath(cfg["model"]):
        assert n_trainable < n_params // 2       # the slide encoder is frozen, only the adapter trains


def _patient(seed: int = 0, n_patches: int = 20) -> dict:
    """One patient as PatientDataset yields it, with every input any method declares."""
    g = torch.Generator().manual_seed(seed)
    return {
        "case_id": "TCGA-AA-0001", "site": "BRCA", "index": 0,
        "bag": torch.randn(n_patches, SMALL_FEATURE_DIM, generator=g),
        "coords": torch.randint(0, 20, (n_patches, 2), generator=g).float() * 256,
        "bag_secondary": torch.randn(n_patches, SMALL_FEATURE_DIM, generator=g),
        "coords_secondary": torch.randint(0, 20, (n_patches, 2), generator=g).float() * 512,
        "omics": torch.randn(N_GENES, generator=g),
        "has_wsi": torch.tensor(True), "has_wsi_secondary": torch.tensor(True), "has_omics": torch.tensor(True),
        "has_report": torch.tensor(True), "report": "a report", "report_emb": torch.randn(REPORT_DIM, generator=g),
        "report_tokens": torch.randn(5, REPORT_DIM, generator=g),
        "subtype": torch.tensor(1), "survival_months": torch.tensor(14.0), "event": torch.tensor(1.0),
        "has_survival": torch.tensor(True), "survival_bin": torch.tensor(2),
        "prompts": ["general prompt", "survival prompt", "diagnosis prompt"],
        "text_emb": torch.randn(3, TEXT_DIM, generator=g),
    }


def _batch(cfg: dict, method: str) -> tuple[dict | list, str]:
    """The patient batched as the method declares (one dict, a list of one, or a stack of one)."""
    decl = METHODS.get(method).declare(cfg)
    n = int(cfg["data"]["grid"]) ** 2 if "fixed_bags" in decl.inputs else 20
    p = _patient(n_patches=n)
    if decl.batching == "list":
        return [p], decl.batching
    if decl.batching == "stack":
        return collate_stack([p]), decl.batching
    return p, decl.batching


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_cpu_small_forward(method):
    cfg, model = _build("cpu_small", method)
    batch, batching = _batch(cfg, method)
    before = copy.deepcopy(batch)
    if METHODS.get(method).frozen_slots(cfg):
        model.eval()            # a method that holds a frozen run (a teacher) trains only with it
    with torch.no_grad():
        out = model.loss(batch)
        loss = out.total
        assert loss.dim() == 0 and math.isfinite(float(loss)), f"cpu_small/{method}: loss {loss}"
        assert isinstance(out.logs, dict)
        model.eval()
        emb = model.embed(batch)
    if batching == "single":
        assert emb.dim() == 1, f"cpu_small/{method}"
    else:
        assert emb.dim() == 2 and emb.shape[0] == 1, f"cpu_small/{method}"
    assert emb.numel() > 0 and torch.isfinite(emb).all(), f"cpu_small/{method}"
    # the forward does not modify the patient record in place
    patients = batch if isinstance(batch, list) else [batch]
    for now, then in zip(patients, before if isinstance(before, list) else [before]):
        assert now.keys() == then.keys()
        for key, value in then.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(now[key], value), (method, key)
