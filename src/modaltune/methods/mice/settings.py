"""MICE's configuration: every width a ``model.*`` key with the spec's default, checked in one place.

Defaults are the official code's widths (spec ``mice.md`` (b)); the training protocol is the
paper's where paper and code disagree (spec (d), (k) 1-2): AdamW lr 1e-4, weight decay 1e-5, a
constant learning rate without warm-up, 5 survival bins, no bag cap; pre-training 30 epochs at 4
patients per step with ``L = 1 * L_cl + 2 * L_surv`` (the code has the reverse ratio, see (c)),
fine-tuning 20 epochs at 1 patient per step on the survival loss only. The stage settings live in
``stages: {pretrain, finetune}`` so :mod:`modaltune.chains` gives each run its own; the top-level
``train`` section equals the pre-training one, so a lone ``mice`` run is a pre-training run.

Epoch selection (our protocol; the official code picks epochs on the test fold, spec (i)): on
validation only, and for per-site runs *pooled over the sites* (``train.select_scope: pooled``,
:mod:`modaltune.runs.pooled`): inside five-fold cross-validation a small site has a handful of
validation patients (7 in the demo cohort), whose C-index jumps between 0 and 1 from epoch to
epoch, so every site shares the epoch that is best on average. Fine-tuning also lets the
pre-trained weights compete (``train.select_initial``): on the demo cohort, 5 folds, this took the
mean per-site test C-index from 0.534 (each site its own epoch) to 0.580, and the pooled choice was
"no fine-tuning" in 3 of 5 folds (``benchmarks/README.md``). ``--set train.select_scope=run
--set stages.finetune.train.select_initial=false`` gives the per-run choice.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ...errors import ConfigError
from ..losses import CONTRASTIVE_FORMS

__all__ = ["MODALITIES", "GROUPS", "MODEL_DEFAULTS", "CONTRASTIVE_FORMS", "CONTRASTIVE_HEADS", "GENOMICS_ENCODERS", "mice_config",
           "model_settings", "INPUT_OF", "SCALER_OF"]

#: The modality tokens, in the order they enter the pre-expert transformer (after z0 and the cancer token).
MODALITIES = ("pathology", "genomics", "report")
#: MICE's expert groups, in the order the fusion expert reads them
GROUPS = ("overlapping", "specialized", "consensual")
#: The dataset input each modality needs (``Method.declare().inputs``).
INPUT_OF = {"pathology": "bag", "genomics": "omics", "report": "report_embedding"}
#: The train-fitted per-dimension scaler each modality needs (spec (b) 1 and 3; omics are z-scored anyway).
SCALER_OF = {"pathology": "bag", "report": "report_embedding"}
GENOMICS_ENCODERS = ("mlp", "snn")
#: Where the contrastive loss reads the tokens: ``none`` on the tokens themselves (the official code),
#: ``mlp`` through a SimCLR-style projection head ``Linear -> ReLU -> Linear`` shared by the modalities,
#: so the alignment is imposed on the head's output and the tokens may keep what is specific to
#: their modality (``benchmarks/README.md``, issue 12: aligning the tokens themselves costs survival).
CONTRASTIVE_HEADS = ("none", "mlp")

MODEL_DEFAULTS: dict[str, Any] = {
    "modalities": list(MODALITIES),   # modality ablation: excluded ones are always synthesised
    "dim": 256,                       # token width d
    "dropout": 0.2,                   # of every MLP block
    "path_attn_dim": 64,              # MambaMIL attention MLP width
    "pool_from": "pre",               # MambaMIL pools pre-Mamba F (code) | post
    "mamba": {"d_state": 16, "d_conv": 4, "expand": 2},
    "genomics_encoder": "mlp",        # mlp (code: ReLU blocks) | snn (paper: SELU + AlphaDropout)
    "genomics_hidden": [512, 256],    # last = dim
    "report_hidden": [512, 256],      # last = dim
    "pre_expert": {"depth": 2, "heads": 4, "dim_head": 128, "mlp": 128},
    "expert_depth": 2,
    "expert_heads": 4,
    "expert_ranks": [8 * i for i in range(1, 16)],   # the 15 overlapping experts: 8, 16, ..., 120
    "keep_k": 9,
    "specialized_rank": 64,
    "consensual_rank": 64,
    "fusion_rank": 64,
    "router_hidden": 64,
    "renormalise": False,             # official: kept weights not renormalised
    "softplus_noise": False,          # official: raw sigma as the noise scale
    "router_noise": True,             # official: noisy top-k in training (false: route on mu, as at eval)
    "drop_groups": [],                # expert-group ablation: these groups' outputs are zero tokens
    "cancer_types": None,             # None = the run's site vocabulary (inherited by fine-tuning)
    "temperature": 0.1,               # contrastive loss
    "contrastive_form": "supcon_out",  # supcon_out (code) | infonce_in (paper Eq. 1)
    "contrastive_head": "none",       # none (code: loss on the tokens) | mlp (SimCLR projection head)
    "contrastive_head_dim": 128,      # output width of the mlp head
    "surv_alpha": 0.0,                # NLL: no extra uncensored term (code)
}

_PRETRAIN = {"batch_size": 4, "drop_last": True, "epochs": 30,
             "loss_weights": {"survival": 2.0, "contrastive": 1.0}}
_FINETUNE = {"batch_size": 1, "drop_last": None, "epochs": 20, "select_initial": True, "select_scope": "pooled",
             "loss_weights": {"survival": 1.0, "contrastive": 0.0}}


def mice_config(model: Mapping[str, Any], *, contrastive: bool = True, per_cohort: bool = False) -> dict[str, Any]:
    """A ``default_config()`` for MICE or one of its baselines.

    Args:
        model: the ``model`` section.
        contrastive: whether the method has a contrastive term (MICE only).
        per_cohort: a from-scratch per-cohort baseline (20 epochs, one patient per step, no stages);
            otherwise the pre-train -> fine-tune protocol.
    """
    weights = (lambda d: d) if contrastive else (lambda d: {"survival": d["survival"]})
    train = {"lr": 1.0e-4, "weight_decay": 1.0e-5, "schedule": "constant", "warmup_epochs": 0, "accumulate": 1}
    out: dict[str, Any] = {"model": copy.deepcopy(dict(model)), "data": {"n_bins": 5, "bag_cap": None}}
    if per_cohort:
        out["train"] = {**train, "epochs": 20, "batch_size": 1, "loss_weights": None, "select_scope": "pooled"}
        return out
    pre = {**_PRETRAIN, "loss_weights": weights(_PRETRAIN["loss_weights"])}
    fine = {**_FINETUNE, "loss_weights": weights(_FINETUNE["loss_weights"])}
    out["train"] = {**train, **copy.deepcopy(pre)}
    out["stages"] = {"pretrain": {"train": pre}, "finetune": {"train": fine}}
    return out


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(defaults))
    for k, v in (given or {}).items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, Mapping) else copy.deepcopy(v)
    return out


def model_settings(cfg: Mapping[str, Any], defaults: Mapping[str, Any] = MODEL_DEFAULTS) -> dict[str, Any]:
    """The ``model`` section of ``cfg`` over ``defaults`` (nested), checked.

    Raises:
        ConfigError: an unknown modality, encoder or contrastive form; ``keep_k`` outside
            ``1..len(expert_ranks)`` (encoder widths are checked when the encoders are built).
    """
    m = _merge(defaults, (cfg or {}).get("model") or {})
    if "modalities" in m:
        mods = list(m["modalities"] or [])
        bad = [x for x in mods if x not in MODALITIES]
        if bad or len(set(mods)) != len(mods) or not mods:
            raise ConfigError(f"model.modalities must be distinct names from {list(MODALITIES)} (at least one), "
                              f"got {m['modalities']}")
        m["modalities"] = [x for x in MODALITIES if x in mods]
    if m.get("genomics_encoder", "mlp") not in GENOMICS_ENCODERS:
        raise ConfigError(f"model.genomics_encoder must be one of {GENOMICS_ENCODERS}, got {m['genomics_encoder']!r}")
    if m.get("contrastive_form", "supcon_out") not in CONTRASTIVE_FORMS:
        raise ConfigError(f"model.contrastive_form must be one of {CONTRASTIVE_FORMS}, got {m['contrastive_form']!r}")
    if m.get("contrastive_head", "none") not in CONTRASTIVE_HEADS:
        raise ConfigError(f"model.contrastive_head must be one of {CONTRASTIVE_HEADS}, got {m['contrastive_head']!r}")
    if "expert_ranks" in m:
        ranks = [int(r) for r in m["expert_ranks"] or []]
        if not ranks or min(ranks) < 1:
            raise ConfigError(f"model.expert_ranks must be positive widths, got {m['expert_ranks']}")
        if not 1 <= int(m["keep_k"]) <= len(ranks):
            raise ConfigError(f"model.keep_k must lie in 1..{len(ranks)} (len(model.expert_ranks)), got {m['keep_k']}")
    if "drop_groups" in m:
        drop = list(m["drop_groups"] or [])
        if any(g not in GROUPS for g in drop) or len(set(drop)) != len(drop) or len(drop) == len(GROUPS):
            raise ConfigError(f"model.drop_groups must be distinct expert groups from {list(GROUPS)}, leaving "
                              f"at least one, got {m['drop_groups']}")
        m["drop_groups"] = drop
    if float(m.get("temperature", 0.1)) <= 0:
        raise ConfigError(f"model.temperature must be positive, got {m['temperature']}")
    return m
