"""The training engine: one Lightning loop for every registered method, and run evaluation.

``train_method`` fits the train-only state (omics scaler, survival bins), builds the text targets of
text-supervised methods, trains with AdamW + linear warm-up + cosine decay (stepped per optimiser
step), selects the epoch on the validation split only, and writes the run directory:

    RUN_DIR/config.yaml          resolved config (+ ``cohort``: the cohort directory)
    RUN_DIR/split.csv            case_id,split of the patients this run used
    RUN_DIR/fitted_state.json    omics scaler and survival bin edges (training patients only)
    RUN_DIR/cohort_info.json     the CohortInfo the method was built with (to rebuild it without the cohort)
    RUN_DIR/history.csv          one row per epoch: train loss, lr, validation scores, best epoch so far
    RUN_DIR/best.ckpt            weights of the selected epoch (trainable params + buffers; see io.py)
    RUN_DIR/checkpoints/         last.ckpt (full training state, for --resume) + epoch=NNN.ckpt (weights)
    RUN_DIR/logs/                CSVLogger (and TensorBoard with train.tensorboard)
    RUN_DIR/run.json             seed, versions, device, start/end times, best epoch

``evaluate_run`` then touches the test split for the first time and adds ``metrics.json``,
``predictions.csv``, ``embeddings.npz`` (text methods) and ``figures/km_<site>.png``;
``evaluate_ood`` adds ``metrics_ood.json`` and ``predictions_ood.csv``.
"""
from __future__ import annotations

import copy
import shutil
import time
import warnings
from pathlib import Path
from typing import Iterable

import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from ..config import dump_config, load_yaml
from ..data.cohort import Cohort
from ..data.dataset import FittedState, PatientDataset, collate_single
from ..errors import InputError, warn_input
from ..evaluation.probing import probe_options
from ..methods.base import Method
from ..utils import read_json, seed_everything, write_json
from . import io
from .builders import build_method, cohort_info, device_of, frame, make_dataset, resolve_precision, supervision_of
from .callbacks import SeedEpochCallback, SelectionCallback
from .evaluate import LoadedRun, embed_run, evaluate_ood, evaluate_run, load_run
from .module import EpochSampler, LastCheckpoint, LitMethod, lr_lambda
from .scoring import resolve_select_metric, score_epoch

__all__ = ["build_method", "cohort_info", "supervision_of", "LitMethod", "EpochSampler", "LastCheckpoint",
           "lr_lambda", "train_method", "load_run", "LoadedRun", "embed_run", "evaluate_run", "evaluate_ood",
           "resolve_precision", "device_of", "RunResult"]

RunResult = dict  # train_method's return: run_dir, best_epoch, best_score, select_metric, epochs, history


# ----------------------------------------------------------------------------------------------
# training


def _text_cache(cfg: dict, cohort: Cohort, datasets: Iterable[PatientDataset], run_dir: Path) -> dict:
    from ..encoders.text import cached_text_embeddings

    texts = sorted({t for ds in datasets for t in ds.prompt_texts()})
    t = cfg.get("text") or {}
    cache_dir = Path(cohort.root) / "text_cache"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache_dir = run_dir / "text_cache"
    return cached_text_embeddings(cache_dir, str(t.get("encoder", "minilm")), texts, path=t.get("path"),
                                  batch_size=int(t.get("batch_size", 64)))


def _check_split(split: dict, cohort: Cohort) -> dict[str, list[str]]:
    out = {k: [str(c) for c in split.get(k, [])] for k in ("train", "val", "test")}
    if not out["train"]:
        raise InputError("the split has no training patients", fix="check data.sites and the split file")
    missing = [c for k in out for c in out[k] if c not in cohort.manifest.index]
    if missing:
        raise InputError(f"split patients not in the cohort: {missing[:10]}", file=getattr(cohort, "root", None),
                         fix="use a split made for this cohort")
    seen: dict[str, str] = {}
    for k, ids in out.items():
        for c in ids:
            if c in seen:
                raise InputError(f"patient in both '{seen[c]}' and '{k}' splits", case=c, fix="fix the split file")
            seen[c] = k
    if not out["val"]:
        warn_input("the split has no validation patients: the last epoch is kept (no epoch selection)",
                   fix="use a split with a validation part")
    return out


def _clear_previous(run_dir: Path) -> None:
    for name in (io.CHECKPOINTS,):
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
    for name in (io.HISTORY, io.BEST, io.METRICS, io.PREDICTIONS, io.EMBEDDINGS, "metrics_ood.json",
                 "predictions_ood.csv"):
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
                from ..errors import ConfigError

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
    ckpt_dir = run_dir / io.CHECKPOINTS
    per_epoch = EpochWeights(dirpath=ckpt_dir, filename="epoch={epoch:03d}", auto_insert_metric_name=False,
                                save_top_k=-1, every_n_epochs=1, save_weights_only=True,
                                save_on_train_epoch_end=True, enable_version_counter=False)
    last = LastCheckpoint(ckpt_dir / io.LAST)
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
        logger=_loggers(cfg, run_dir), callbacks=[*callbacks, last, per_epoch],
        enable_progress_bar=bool(tr.get("progress_bar", True)), enable_model_summary=False,
        log_every_n_steps=int(tr.get("log_every_n_steps") or 10), default_root_dir=str(run_dir))


def _quiet_lightning() -> None:
    for pat in (".*does not have many workers.*", ".*`training_step` returned `None`.*",
                ".*Checkpoint directory .* exists and is not empty.*", ".*Experiment logs directory.*",
                ".*You called `self.log.*", ".*The number of training batches.*", ".*GPU available but not used.*",
                ".*LightningModule.*strict_loading.*", ".*Found keys that are.*"):
        warnings.filterwarnings("ignore", message=pat)


def train_method(cfg: dict, cohort: Cohort, split: dict[str, list[str]], run_dir: str | Path,
                 resume: bool = False, *, callbacks: list | None = None) -> RunResult:
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
    t_start = time.time()
    cfg = copy.deepcopy(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    probe_options(cfg)                      # a bad eval.* setting fails now, not after the first epoch
    split = _check_split(split, cohort)
    last_ckpt = run_dir / io.CHECKPOINTS / io.LAST
    resuming = bool(resume and last_ckpt.exists())
    if resume and not resuming:
        warn_input("--resume given but there is no checkpoint to resume from; training starts afresh",
                   file=last_ckpt)
    if not resuming:
        _clear_previous(run_dir)
    elif (run_dir / io.CONFIG).exists():
        old = {k: v for k, v in load_yaml(run_dir / io.CONFIG).items() if k != "cohort"}
        if old != cfg:
            warn_input("resuming with a config that differs from the run's config.yaml", file=run_dir / io.CONFIG,
                       fix="resume with the same settings, or train into a new directory")

    seed_everything(seed)
    state = FittedState.fit(cohort, split["train"], n_bins=int(cfg["data"].get("n_bins", 4)))
    sup = supervision_of(cfg)
    train_ds = make_dataset(cohort, split["train"], state, cfg, train=True)
    train_eval = make_dataset(cohort, split["train"], state, cfg, train=False)
    val_ds = make_dataset(cohort, split["val"], state, cfg, train=False)
    text_dim = None
    if sup == "text":
        test_ds = make_dataset(cohort, split["test"], state, cfg, train=False)
        cache = _text_cache(cfg, cohort, [train_ds, val_ds, test_ds], run_dir)
        text_dim = int(next(iter(cache.values())).shape[-1]) if cache else None
        train_ds.text_cache = val_ds.text_cache = cache
    info = cohort_info(cohort, cfg, split["train"], text_dim=text_dim)

    seed_everything(seed)
    method = build_method(cfg, info)
    dump_config({**cfg, "cohort": str(Path(cohort.root).resolve())}, run_dir / io.CONFIG)
    pd.DataFrame([(c, k) for k in ("train", "val", "test") for c in split[k]],
                 columns=["case_id", "split"]).to_csv(run_dir / io.SPLIT, index=False)
    write_json(run_dir / io.STATE, state.to_dict())
    write_json(run_dir / io.INFO, io.info_to_dict(info))
    env = io.environment()
    write_json(run_dir / io.RUN, {"seed": seed, "method": cfg["method"], "supervision": sup, **env,
                                  "precision": resolve_precision(cfg), "started": io.now(), "resumed": resuming,
                                  "n_train": len(split["train"]), "n_val": len(split["val"]),
                                  "n_test": len(split["test"])})

    train_df, val_df = frame(cohort, split["train"]), frame(cohort, split["val"])
    task = getattr(method, "task", None) or (cfg.get("model") or {}).get("task")
    metric = resolve_select_metric(cfg, sup, task, train_df) if split["val"] else "last"
    precision = resolve_precision(cfg)
    lit = LitMethod(method, cfg, train_ds)

    def scorer(m: Method) -> dict:
        return score_epoch(m, supervision=sup, train_ds=train_eval, val_ds=val_ds, train_df=train_df,
                           val_df=val_df, cfg=cfg, device=lit.device, precision=precision)

    selection = SelectionCallback(scorer, metric, run_dir, meta={"method": cfg["method"]})
    loader = DataLoader(train_ds, batch_size=1, sampler=EpochSampler(len(train_ds), seed), collate_fn=collate_single,
                        num_workers=int(cfg["data"].get("num_workers") or 0))
    with warnings.catch_warnings():
        _quiet_lightning()
        trainer = _trainer(cfg, run_dir, [SeedEpochCallback(seed), selection, *(callbacks or [])])
        trainer.fit(lit, train_dataloaders=loader, ckpt_path=str(last_ckpt) if resuming else None)

    if not (run_dir / io.BEST).exists() and trainer.is_global_zero:   # zero epochs: keep the initial weights
        io.save_weights(method, run_dir / io.BEST, epoch=-1, select_metric=metric, score=float("nan"),
                        method=cfg["method"])
    if trainer.is_global_zero and selection.history:
        selection.write_history()
    run = read_json(run_dir / io.RUN)
    run.update({"finished": io.now(), "train_seconds": round(time.time() - t_start, 2),
                "epochs_completed": len(selection.history), "best_epoch": selection.best_epoch,
                "select_metric": metric, "best_score": selection.best_score,
                "device": str(lit.device), "world_size": int(trainer.world_size)})
    if trainer.is_global_zero:
        write_json(run_dir / io.RUN, run)
    return {"run_dir": str(run_dir), "best_epoch": selection.best_epoch, "best_score": selection.best_score,
            "select_metric": metric, "epochs": len(selection.history), "history": list(selection.history)}

