"""The training engine: one Lightning loop for every registered method.

``train_method`` builds what the method declares (:func:`modaltune.runs.inputs.prepare_run`: the
train-only state, text caches, CohortInfo, datasets), chains it to its parent or frozen runs when it
has them (:mod:`modaltune.runs.chain`), trains with AdamW over the method's parameter groups,
linear warm-up + cosine (or constant) decay stepped per optimiser step, the configured gradient
policy, selects the epoch on the validation split only, and writes the run directory
(:mod:`modaltune.runs.layout`). Scoring on the test split happens later, in
:mod:`modaltune.runs.evaluate`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from ..config import dump_config
from ..data.cohort import Cohort
from ..data.patient import collate_for, collate_single
from ..data.splits import validate_split
from ..errors import ConfigError, InputError, warn_input
from ..evaluation.per_site import probe_options
from ..methods.base import Declaration, Method
from ..runs import layout
from ..runs.builders import build_method, declaration, manifest_rows, method_class, resolve_precision
from ..runs.chain import load_frozen_runs, load_parent
from ..runs.inputs import prepare_run
from ..runs.pooled import POOLED_SELECTION, SELECT_SCOPES
from ..utils import read_json, seed_everything, write_json
from .callbacks import SeedEpochCallback, SelectionCallback
from .gradients import check_policy
from .module import EpochSampler, LastCheckpoint, LitMethod, lr_lambda
from .scoring import resolve_select_metric, score_epoch
from .threads import apply_threads

log = logging.getLogger(__name__)

__all__ = ["train_method", "check_training_config"]


def check_split(split: dict, cohort: Cohort) -> dict[str, list[str]]:
    """Validate a run's split (one validator: :func:`modaltune.data.splits.validate_split`)."""
    out = validate_split({k: split.get(k, []) for k in ("train", "val", "test")}, cohort.manifest,
                         file=getattr(cohort, "root", None))
    if not out["train"]:
        raise InputError("the split has no training patients", file=getattr(cohort, "root", None),
                         fix="check data.sites (`modaltune train --help`) and the split file")
    if not out["val"]:
        warn_input("the split has no validation patients: the last epoch is kept (no epoch selection)",
                   fix="use a split with a validation part")
    return out


def check_training_config(cfg: dict, decl: Declaration) -> None:
    """Fail before the first epoch on settings the method cannot train with."""
    tr = cfg["train"]
    probe_options(cfg)                               # a bad eval.* setting fails now
    check_policy(str(tr.get("gradient_policy") or "sum"))
    lr_lambda(1, 0, str(tr.get("schedule") or "cosine"))
    if str(tr.get("select_scope") or "run") not in SELECT_SCOPES:
        raise ConfigError(f"train.select_scope must be one of {list(SELECT_SCOPES)}, got {tr.get('select_scope')!r}")
    keep = tr.get("keep_epoch_weights", "auto")
    if keep not in ("auto", True, False):
        raise ConfigError(f"train.keep_epoch_weights must be auto, true or false, got {keep!r}")
    if keep is False and str(tr.get("select_scope") or "run") == "pooled":
        raise ConfigError("train.select_scope: pooled needs every epoch's weights until the sites' common epoch is "
                          "chosen, but train.keep_epoch_weights is false; set it to auto (they are deleted after "
                          "the choice) or use select_scope: run")
    bs = int(tr.get("batch_size") or 1)
    if bs < decl.min_batch_size:
        raise ConfigError(f"method '{cfg['method']}' needs train.batch_size >= {decl.min_batch_size} (its loss "
                          f"compares patients of a batch), got {bs}")
    bags = {"bag", "bag_secondary"} & set(decl.inputs)
    if decl.batching == "stack" and bags and "fixed_bags" not in decl.inputs:
        raise ConfigError(f"method '{cfg['method']}' stacks patients but its bags are ragged; declare 'fixed_bags'")
    unknown = set(tr.get("loss_weights") or {}) - set(getattr(method_class(cfg), "loss_terms", ()) or ())
    if getattr(method_class(cfg), "loss_terms", None) and unknown:
        raise ConfigError(f"train.loss_weights has unknown term(s) {sorted(unknown)}; method '{cfg['method']}' "
                          f"has {list(method_class(cfg).loss_terms)}")


def keeps_epoch_weights(cfg: dict) -> bool:
    """Whether a run keeps every epoch's weights (``checkpoints/epoch=NNN.ckpt``, and the starting
    weights with ``train.select_initial``): ``train.keep_epoch_weights`` true, or ``auto`` for a
    pooled selection, which needs them until it has chosen (then deletes them)."""
    keep = cfg["train"].get("keep_epoch_weights", "auto")
    if keep == "auto":
        return str(cfg["train"].get("select_scope") or "run") == "pooled"
    return bool(keep)


def _finished_result(cfg: dict, run_dir: Path) -> dict[str, Any]:
    """``--resume`` of a finished run whose training state was not kept: nothing to train."""
    run = read_json(run_dir / layout.RUN)
    history = pd.read_csv(run_dir / layout.HISTORY).to_dict(orient="records") if (run_dir / layout.HISTORY).exists() \
        else []
    done = int(run.get("epochs_completed") or 0)
    if int(cfg["train"]["epochs"]) > done:
        warn_input(f"the run finished {done} epoch(s) and its training state was not kept, so it cannot continue to "
                   f"{cfg['train']['epochs']}; nothing was trained", file=run_dir / layout.RUN,
                   fix="train into a new directory (or keep the state with train.keep_training_state=true)")
    log.info("%s already finished in %s; nothing to resume", cfg["method"], run_dir)
    return {"run_dir": str(run_dir), "best_epoch": run.get("best_epoch"), "best_score": run.get("best_score"),
            "select_metric": run.get("select_metric"), "epochs": len(history), "history": history}


def _clear_previous(run_dir: Path) -> None:
    if (run_dir / layout.CHECKPOINTS).is_dir():
        shutil.rmtree(run_dir / layout.CHECKPOINTS)
    for name in (layout.HISTORY, layout.CHOICES, layout.BEST, layout.METRICS, layout.PREDICTIONS, layout.EMBEDDINGS,
                 layout.METRICS_OOD, layout.PREDICTIONS_OOD, POOLED_SELECTION):
        if (run_dir / name).exists():
            (run_dir / name).unlink()


def _loggers(cfg: dict, run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if cfg["train"].get("tensorboard"):
        from lightning.pytorch.loggers import TensorBoardLogger

        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError as exc:
                raise ConfigError("train.tensorboard is true but TensorBoard is not installed; "
                                  "pip install 'modaltune[tensorboard]' or set train.tensorboard=false") from exc
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard"))
    return loggers


def _trainer(cfg: dict, run_dir: Path, callbacks: list) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint

    class EpochWeights(ModelCheckpoint):
        @property
        def state_key(self) -> str:
            return "EpochWeights"

    tr = cfg["train"]
    ckpt_dir = run_dir / layout.CHECKPOINTS
    per_epoch = [EpochWeights(dirpath=ckpt_dir, filename="epoch={epoch:03d}", auto_insert_metric_name=False,
                              save_top_k=-1, every_n_epochs=1, save_weights_only=True,
                              save_on_train_epoch_end=True, enable_version_counter=False)
                 ] if keeps_epoch_weights(cfg) else []
    last = LastCheckpoint(ckpt_dir / layout.LAST)
    steps = tr.get("max_steps_per_epoch")
    strategy = tr.get("strategy", "auto")
    if strategy == "ddp":
        # heads of the tasks a method is not trained on in a run (e.g. ModalTune's label heads when it
        # learns from text, or a task prompt skipped by single_task_prompt) receive no gradient
        strategy = "ddp_find_unused_parameters_true"
    return L.Trainer(
        max_epochs=int(tr["epochs"]), accelerator=tr.get("accelerator", "auto"), devices=tr.get("devices", "auto"),
        strategy=strategy, precision=resolve_precision(cfg),
        accumulate_grad_batches=int(tr.get("accumulate") or 1),
        limit_train_batches=int(steps) if steps else 1.0, limit_val_batches=0, num_sanity_val_steps=0,
        logger=_loggers(cfg, run_dir), callbacks=[*callbacks, last, *per_epoch],
        enable_progress_bar=progress_bar_enabled(tr.get("progress_bar", "auto")), enable_model_summary=False,
        log_every_n_steps=int(tr.get("log_every_n_steps") or 10), default_root_dir=str(run_dir))


def progress_bar_enabled(setting) -> bool:
    """``train.progress_bar``: ``auto`` = only when stderr is a terminal (not in logs, CI or pipes)."""
    if setting is None or str(setting).strip().lower() == "auto":
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(setting)


@contextlib.contextmanager
def run_log(run_dir: Path):
    """Copy modaltune's log records (start, one line per epoch, end) to ``RUN_DIR/train.log``."""
    logger = logging.getLogger("modaltune")
    handler = logging.FileHandler(run_dir / layout.LOG, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


def quiet_lightning() -> None:
    """Silence Lightning's warnings that say nothing about the user's run."""
    for pat in (".*does not have many workers.*", ".*`training_step` returned `None`.*",
                ".*Checkpoint directory .* exists and is not empty.*", ".*Experiment logs directory.*",
                ".*You called `self.log.*", ".*The number of training batches.*", ".*GPU available but not used.*",
                ".*LightningModule.*strict_loading.*", ".*Found keys that are.*"):
        warnings.filterwarnings("ignore", message=pat)


def _loader(cfg: dict, decl: Declaration, dataset, seed: int) -> DataLoader:
    bs = int(cfg["train"].get("batch_size") or 1)
    nw = int(cfg["data"].get("num_workers") or 0)
    sampler = EpochSampler(len(dataset), seed)
    if bs == 1 and decl.batching == "single":
        return DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_single, num_workers=nw)
    collate = collate_for("list" if decl.batching == "single" else decl.batching)
    drop_last = cfg["train"].get("drop_last")
    if drop_last is None:
        drop_last = decl.min_batch_size > 1 and len(dataset) % bs != 0 and len(dataset) % bs < decl.min_batch_size
    return DataLoader(dataset, batch_size=bs, sampler=sampler, collate_fn=collate, num_workers=nw,
                      drop_last=bool(drop_last))


def train_method(cfg: dict, cohort: Cohort, split: dict[str, list[str]], run_dir: str | Path,
                 resume: bool = False, *, callbacks: list | None = None) -> dict[str, Any]:
    """Train ``cfg["method"]`` on ``split["train"]``, select the epoch on ``split["val"]``.

    Args:
        cfg: resolved config (``modaltune.config.resolve_config``).
        cohort: the loaded cohort.
        split: ``{"train", "val", "test"}`` case ids (already restricted to the run's sites).
        run_dir: the run directory (created).
        resume: continue from ``RUN_DIR/checkpoints/last.ckpt`` when it exists (finished epochs are
            not redone); otherwise earlier checkpoints and results in ``run_dir`` are removed.
        callbacks: extra Lightning callbacks (e.g. for tests or custom logging).

    Returns:
        dict with ``run_dir``, ``best_epoch``, ``best_score``, ``select_metric``, ``epochs`` and ``history``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_log(run_dir):
        return _train_method(cfg, cohort, split, run_dir, resume, callbacks)


def _train_method(cfg: dict, cohort: Cohort, split: dict[str, list[str]], run_dir: Path, resume: bool,
                  callbacks: list | None) -> dict[str, Any]:
    t_start = time.time()
    cfg = copy.deepcopy(cfg)
    cohort = cohort.with_endpoints(cfg["data"].get("endpoint"))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    decl = declaration(cfg)
    check_training_config(cfg, decl)
    split = check_split(split, cohort)
    last_ckpt = run_dir / layout.CHECKPOINTS / layout.LAST
    if resume and not last_ckpt.exists() and layout.run_finished(run_dir):
        layout.warn_changed_config(run_dir, cfg, "--resume of a finished run trains nothing")
        return _finished_result(cfg, run_dir)
    resuming = bool(resume and last_ckpt.exists())
    if resume and not resuming:
        warn_input("--resume given but there is no checkpoint to resume from; training starts afresh",
                   file=last_ckpt)
    if resuming:   # weights only (never unpickle objects); a corrupt file is a named error, not a traceback
        layout.read_checkpoint(last_ckpt, fix=f"delete {last_ckpt} and train without --resume (the run restarts; "
                                              "finished epochs are redone)")
    if not resuming:
        _clear_previous(run_dir)
    else:
        layout.warn_changed_config(run_dir, cfg, "the run resumes from its last checkpoint")

    seed_everything(seed)
    sites = sorted({str(cohort.manifest.at[c, "site"]) for part in split.values() for c in part})
    init_from = cfg["train"].get("init_from")
    subset = float(cfg["data"].get("train_fraction") or 1.0) < 1.0   # a cut fine-tuning of a whole-part parent
    parent = load_parent(init_from, cohort, split, sites, train_subset=subset) if init_from else None
    inputs = prepare_run(cfg, cohort, split, run_dir, state=parent.state if parent else None,
                         info=None if parent is None else dataclasses.replace(
                             parent.info, task=str((cfg.get("model") or {}).get("task") or "multi"),
                             site_map={**parent.info.site_map, **dict(cfg["data"].get("site_map") or {})}))
    slots = method_class(cfg).frozen_slots(cfg)
    frozen = load_frozen_runs(slots, cohort, split, sites, inputs.state, train_subset=subset) if slots else None

    seed_everything(seed)
    method = build_method(cfg, inputs.info, frozen)
    threads = apply_threads(cfg, method)
    log.info("training %s (seed %d) in %s: %d train / %d val patients, %d epochs, %d CPU thread(s)%s", cfg["method"],
             seed, run_dir, len(split["train"]), len(split["val"]), int(cfg["train"]["epochs"]), threads,
             " (resumed)" if resuming else "")
    if parent is not None:
        layout.load_weights(method, parent.weights)
    dump_config({**cfg, "cohort": str(Path(cohort.root).resolve())}, run_dir / layout.CONFIG)
    pd.DataFrame([(c, k) for k in ("train", "val", "test") for c in split[k]],
                 columns=["case_id", "split"]).to_csv(run_dir / layout.SPLIT, index=False)
    write_json(run_dir / layout.STATE, inputs.state.to_dict())
    layout.write_info(inputs.info, run_dir / layout.INFO)
    choices = method.fitted_choices(list(inputs.state.genes))
    if choices:
        write_json(run_dir / layout.CHOICES, choices)
    write_json(run_dir / layout.RUN, {"seed": seed, "method": cfg["method"], "evaluation": decl.evaluation,
                                      "batching": decl.batching, "inputs": sorted(decl.inputs),
                                      "init_from": str(init_from) if init_from else None,
                                      "frozen_runs": {k: str(v) for k, v in (slots or {}).items()},
                                      **layout.environment(), "precision": resolve_precision(cfg),
                                      "threads": threads, "pid": os.getpid(),
                                      "started": layout.now(), "resumed": resuming, "n_train": len(split["train"]),
                                      "n_val": len(split["val"]), "n_test": len(split["test"])})

    train_df, val_df = manifest_rows(cohort, split["train"]), manifest_rows(cohort, split["val"])
    metric = resolve_select_metric(cfg, decl, train_df) if split["val"] else "last"
    precision = resolve_precision(cfg)
    lit = LitMethod(method, cfg, inputs.train)

    def scorer(m: Method) -> dict:
        return score_epoch(m, decl=decl, train_ds=inputs.train_eval, val_ds=inputs.val, train_df=train_df,
                           val_df=val_df, cfg=cfg, device=lit.device, precision=precision)

    selection = SelectionCallback(scorer, metric, run_dir, meta={"method": cfg["method"]},
                                  score_initial=bool(cfg["train"].get("select_initial")) and parent is not None,
                                  keep_initial=keeps_epoch_weights(cfg))
    loader = _loader(cfg, decl, inputs.train, seed)
    with warnings.catch_warnings():
        quiet_lightning()
        trainer = _trainer(cfg, run_dir, [SeedEpochCallback(seed), selection, *(callbacks or [])])
        trainer.fit(lit, train_dataloaders=loader, ckpt_path=str(last_ckpt) if resuming else None,
                    weights_only=True)

    if not (run_dir / layout.BEST).exists() and trainer.is_global_zero:   # zero epochs: keep the initial weights
        layout.save_weights(method, run_dir / layout.BEST, epoch=-1, select_metric=metric, score=float("nan"),
                            method=cfg["method"])
    if trainer.is_global_zero and selection.history:
        selection.write_history()
    run = read_json(run_dir / layout.RUN)
    run.update({"finished": layout.now(), "train_seconds": round(time.time() - t_start, 2),
                "epochs_completed": len(selection.history), "best_epoch": selection.best_epoch,
                "select_metric": metric, "best_score": selection.best_score,
                "device": str(lit.device), "world_size": int(trainer.world_size)})
    if trainer.is_global_zero:
        write_json(run_dir / layout.RUN, run)
        if not cfg["train"].get("keep_training_state"):   # it only serves --resume of a stopped run
            last_ckpt.unlink(missing_ok=True)
    log.info("finished %s in %.1f s: best epoch %s (%s = %s)", cfg["method"], time.time() - t_start,
             selection.best_epoch, metric, "n/a" if selection.best_score is None else f"{selection.best_score:.4f}")
    return {"run_dir": str(run_dir), "best_epoch": selection.best_epoch, "best_score": selection.best_score,
            "select_metric": metric, "epochs": len(selection.history), "history": list(selection.history)}
