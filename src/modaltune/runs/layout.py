"""The run directory: its file names (one home), weights, cohort info, environment metadata.

Layout of ``RUN_DIR`` (written by :func:`modaltune.training.engine.train_method` and
:mod:`modaltune.runs.evaluate`)::

    config.yaml          resolved config (+ ``cohort``: the cohort directory)
    split.csv            case_id,split of the patients this run used
    fitted_state.json    omics scaler and survival bin edges (training patients only)
    fitted_choices.json  what the method chose from the training patients (e.g. the teacher's genes), if any
    cohort_info.json     the CohortInfo the method was built with (to rebuild it without the cohort)
    history.csv          one row per epoch: train loss, lr, validation scores, best epoch so far
    best.ckpt            weights of the selected epoch (trainable params + buffers)
    checkpoints/         last.ckpt (full training state, for --resume of a stopped run; deleted when the run
                         finishes unless train.keep_training_state) + epoch=NNN.ckpt (weights,
                         with train.keep_epoch_weights, or until a pooled epoch choice)
    pooled_selection.json  the epoch chosen for all sites of a pooled stage (train.select_scope, runs.pooled)
    logs/                CSVLogger (and TensorBoard with train.tensorboard)
    train.log            what training said: start, one line per epoch (loss, validation score, seconds), end
    run.json             seed, versions, device, start/end times, best epoch, parent runs
    metrics.json         test metrics per site + overall (evaluation)
    predictions.csv      test predictions (evaluation)
    embeddings.npz       train + test embeddings (probe evaluation)
    metrics_ood.json, predictions_ood.csv   out-of-distribution probing
    figures/             Kaplan-Meier curves


Checkpoints hold the *trainable* parameters and all persistent buffers of the method, not its frozen
parameters (e.g. a frozen 86M-parameter slide encoder), which are rebuilt from the config: from the
pretrained checkpoint the config names, or from the same seeded random initialisation. A
fingerprint of the frozen parameters is stored with the weights and checked on loading, so a
mismatch (another pretrained file, another seed) is reported instead of silently mixing weights.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputError, warn_input
from ..methods.base import CohortInfo

__all__ = ["CONFIG", "SPLIT", "STATE", "INFO", "CHOICES", "HISTORY", "BEST", "RUN", "METRICS", "PREDICTIONS", "EMBEDDINGS",
           "CHECKPOINTS", "FIGURES", "LAST", "LOG", "METRICS_OOD", "PREDICTIONS_OOD", "FROZEN_PREFIX", "kept_keys",
           "weights_state", "frozen_fingerprint", "save_weights", "load_weights", "method_state", "read_checkpoint", "read_info", "write_info",
           "environment", "now", "run_finished", "warn_changed_config"]

CONFIG, SPLIT, STATE, INFO = "config.yaml", "split.csv", "fitted_state.json", "cohort_info.json"
CHOICES = "fitted_choices.json"
HISTORY, BEST, RUN = "history.csv", "best.ckpt", "run.json"
METRICS, PREDICTIONS, EMBEDDINGS = "metrics.json", "predictions.csv", "embeddings.npz"
CHECKPOINTS, FIGURES, LAST = "checkpoints", "figures", "last.ckpt"
LOG = "train.log"
METRICS_OOD, PREDICTIONS_OOD = "metrics_ood.json", "predictions_ood.csv"
#: State-dict prefix of frozen runs a method holds (a teacher): never saved with the method's weights.
FROZEN_PREFIX = "frozen_runs."


def now() -> str:
    """The local time as ISO 8601 text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_finished(run_dir: str | Path) -> bool:
    """True when a run has selected weights and recorded its end (``run.json`` has ``finished``)."""
    run = Path(run_dir) / RUN
    if not (Path(run_dir) / BEST).exists() or not run.exists():
        return False
    return "finished" in json.loads(run.read_text())


#: ``train`` keys that change what a run keeps or logs, never what it learns or scores (also under
#: ``stages.<name>.``): a run kept or resumed with another value of them is not a run of other settings.
RESULT_NEUTRAL_KEYS = ("train.keep_epoch_weights", "train.keep_training_state", "train.log_every_n_steps",
                       "train.progress_bar", "train.tensorboard")


def _result_neutral(diff: str) -> bool:
    key = diff.split(": ", 1)[0]
    return any(key == k or key.endswith("." + k) for k in RESULT_NEUTRAL_KEYS)


def warn_changed_config(run_dir: str | Path, cfg: dict, what: str, ignore: Sequence[str] = ()) -> list[str]:
    """Warn when ``run_dir`` was trained with settings other than ``cfg``; returns the differences.

    ``what`` says what happens to the run (e.g. "a finished run is kept as it is"). A benchmark or
    chain that keeps finished runs would otherwise mix results of different settings in one table
    without a word. Keys under a prefix of ``ignore`` (e.g. ``stages.finetune.`` for a pre-training
    run, which later stages' settings cannot have changed) and the :data:`RESULT_NEUTRAL_KEYS` (what
    a run keeps on disk or logs, e.g. a benchmark resumed with ``train.keep_epoch_weights=true`` to
    replay epochs) are not differences.
    """
    from ..config import config_differences, load_yaml

    path = Path(run_dir) / CONFIG
    if not path.exists():
        return []
    diffs = [d for d in config_differences(load_yaml(path), cfg)
             if not d.startswith(tuple(ignore)) and not _result_neutral(d)]
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        warn_input(f"{what}, but it was trained with other settings ({shown}); its results are those of its own "
                   f"config.yaml", file=path,
                   fix="delete the run directory (or write into a new --out) to train it with the current settings")
    return diffs


# ----------------------------------------------------------------------------------------------
# weights


def kept_keys(module: nn.Module, prefix: str = "") -> set[str]:
    """State-dict keys saved in checkpoints: trainable parameters + persistent buffers."""
    keys = {prefix + n for n, p in module.named_parameters() if p.requires_grad}
    params = {prefix + n for n, _ in module.named_parameters()}
    keys |= {k for k in module.state_dict(prefix=prefix) if k not in params}
    return {k for k in keys if not k[len(prefix):].startswith(FROZEN_PREFIX)}


def weights_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The saved part of ``module``'s state dict (see :func:`kept_keys`), on CPU."""
    keep = kept_keys(module)
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if k in keep}


def frozen_fingerprint(module: nn.Module) -> list[float]:
    """[count, sum, sum of squares] of the frozen parameters (float64), frozen runs excluded."""
    n, s, s2 = 0, 0.0, 0.0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad and not name.startswith(FROZEN_PREFIX):
                x = p.detach().double()
                n += x.numel()
                s += float(x.sum())
                s2 += float((x * x).sum())
    return [float(n), s, s2]


def fingerprints_match(a, b) -> bool:
    """True when two fingerprints agree (or either is unknown)."""
    if a is None or b is None:
        return True
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))


def save_weights(module: nn.Module, path: str | Path, **meta: Any) -> None:
    """Weights-only checkpoint ``{"state_dict", "frozen_fingerprint", **meta}`` (loadable with weights_only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"state_dict": weights_state(module), "frozen_fingerprint": frozen_fingerprint(module), **meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path, fix: str | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain values only.

    Nothing in the file is unpickled as an arbitrary Python object, so a crafted checkpoint (one
    whose pickle would call a function when loaded) cannot run code; it is refused.

    Raises:
        CheckpointError: the file holds Python objects (refused), or is corrupt / truncated / not a
            checkpoint; the message names the file and the fix.
    """
    import pickle
    import re

    path = Path(path)
    fix = fix or "retrain the run (modaltune train) to write the checkpoint again"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"refused to load the checkpoint: it holds a Python object ({found.group(1)}), not "
                                  "only tensors and plain values, and loading it could run code (was the file "
                                  "replaced or tampered with?)", file=path,
                                  fix="use only checkpoints written by modaltune from a source you trust; " + fix
                                  ) from None
        raise CheckpointError("cannot read the checkpoint: it is corrupt or not a checkpoint", file=path,
                              fix=fix) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty file"
        raise CheckpointError(f"cannot read the checkpoint: it is corrupt or truncated ({type(exc).__name__}: "
                              f"{first[:120]})", file=path, fix=fix) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a modaltune checkpoint (a {type(obj).__name__}, not a dict of weights)",
                              file=path, fix=fix)
    return obj


def method_state(sd: dict) -> dict:
    """The method's entries of a checkpoint's state dict.

    A Lightning checkpoint of the training module (``checkpoints/epoch=NNN.ckpt``, ``last.ckpt``)
    holds the method's keys under ``method.``; they are returned without that prefix, anything else
    it holds is dropped. A checkpoint of :func:`save_weights` is returned as it is.
    """
    lead = "method."
    if not any(k.startswith(lead) for k in sd):
        return sd
    return {k[len(lead):]: v for k, v in sd.items() if k.startswith(lead)}


def load_weights(module: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_weights` (or a Lightning one, such as a kept
    ``checkpoints/epoch=NNN.ckpt``: :func:`method_state`) into ``module``.

    Missing keys must be frozen parameters; anything else missing or unexpected is an error.
    Returns the checkpoint's metadata (everything but the state dict).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("checkpoint not found", file=path, fix="train the run first (modaltune train)")
    ckpt = read_checkpoint(path)
    sd = method_state(ckpt.get("state_dict", ckpt))
    res = module.load_state_dict(sd, strict=False)
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    frozen |= {k for k in module.state_dict() if k.startswith(FROZEN_PREFIX)}
    bad_missing = [k for k in res.missing_keys if k not in frozen]
    if bad_missing or res.unexpected_keys:
        raise InputError(f"checkpoint does not fit the method: missing {bad_missing[:5]}, unexpected "
                         f"{list(res.unexpected_keys)[:5]}", file=path,
                         fix="evaluate with the config.yaml and cohort_info.json written with the run")
    if not fingerprints_match(ckpt.get("frozen_fingerprint"), frozen_fingerprint(module)):
        warn_input("the frozen parameters rebuilt from the config differ from those used in training "
                   "(another pretrained checkpoint or seed?)", file=path,
                   fix="keep model.checkpoint and seed as in the run's config.yaml")
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


# ----------------------------------------------------------------------------------------------
# cohort info


def write_info(info: CohortInfo, path: str | Path) -> None:
    """Write ``cohort_info.json``."""
    Path(path).write_text(json.dumps(info.to_dict(), indent=2))


def read_info(path: str | Path) -> CohortInfo:
    """Read ``cohort_info.json``."""
    return CohortInfo.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------------------------
# environment


def environment() -> dict:
    """Package, torch and device versions for run.json."""
    import lightning

    try:
        from .. import __version__ as version
    except ImportError:  # pragma: no cover
        version = "unknown"
    cuda = torch.cuda.is_available()
    return {"modaltune_version": version, "torch_version": torch.__version__,
            "lightning_version": lightning.__version__, "python_version": platform.python_version(),
            "platform": platform.platform(), "cuda_available": cuda,
            "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "cuda_version": torch.version.cuda}
