"""MICE through the engine: pan-cancer pre-training then per-site fine-tuning with
``modaltune.chains.train_chain`` on the shared two-site cohort, then test metrics (tiny widths, one
epoch per stage)."""

from __future__ import annotations

import json
import math
import warnings
import zlib

import numpy as np
import torch

from modaltune.chains import train_chain
from modaltune.registry import TEXT_ENCODERS
from modaltune.runs.evaluate import evaluate_run
from modaltune.runs.layout import BEST

ENCODER = "_test_mice_report_encoder"


class _Encoder:
    """A toy report encoder (8-d vectors seeded by the text) so the test needs no language model."""

    def __init__(self, path=None, device=None, **kw):
        pass

    def encode(self, texts, batch_size=64, **kw):
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts]
                        ).astype(np.float32)


if ENCODER not in TEXT_ENCODERS:
    TEXT_ENCODERS.register(ENCODER)(_Encoder)

TINY = ["model.dim=32", "model.genomics_hidden=[16, 32]", "model.report_hidden=[16, 32]", "model.path_attn_dim=8",
        "model.mamba={d_state: 4}", "model.pre_expert={heads: 2, dim_head: 8, mlp: 16}",
        "model.expert_ranks=[4, 8, 12]", "model.keep_k=2", "model.specialized_rank=8", "model.consensual_rank=8",
        "model.fusion_rank=8", "model.router_hidden=8"]
SETS = ["train.progress_bar=false", "seed=0", f"report.encoder={ENCODER}", "stages.pretrain.train.epochs=1",
        "stages.finetune.train.epochs=1"]


def test_pretrain_then_finetune_per_site_and_evaluate(small_cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finals = train_chain("mice", small_cohort, tmp_path / "out", overrides=SETS + TINY)
        assert finals == [tmp_path / "out" / "BRCA", tmp_path / "out" / "NSCLC"]
        pre = torch.load(tmp_path / "out" / "stages" / "pretrain" / BEST, weights_only=True)["state_dict"]
        assert pre["synthesis.cancer_tokens"].shape == (2, 32)
        for run in finals:
            fine = torch.load(run / BEST, weights_only=True)["state_dict"]
            assert fine.keys() == pre.keys()                          # both cancer types' tensors are kept
            sites = json.loads((run / "cohort_info.json").read_text())["sites"]
            assert sites == ["BRCA", "NSCLC"]                          # the pre-training vocabulary, in order
            metrics = evaluate_run(run, cohort=small_cohort)
            site = run.name
            assert math.isfinite(metrics[site]["c_index"]), metrics
