"""Experiment configuration: nested dicts built from defaults, YAML files and dotted overrides.

Resolution order (later wins): the global defaults below, the method's own defaults
(``Method.default_config()``), a YAML file, then ``--set key.sub=value`` overrides.

A YAML file may hold a ``methods:`` section of per-method settings, applied only when that
method is resolved (one file then configures a whole benchmark)::

    train: {epochs: 8}            # every method
    methods:
      modaltune: {model: {encoder_size: small, adapter_heads: 4}}
      abmil: {train: {lr: 5.0e-4}}

``--config NAME`` with no such file picks a config shipped with the package
(``modaltune/configs/NAME.yaml``; see :func:`shipped_configs`). A run's own ``config.yaml``
can be passed back as ``--config`` (its informational ``cohort`` key is ignored).
Unknown keys are rejected with the nearest known key, so a typo never silently
does nothing. The resolved config is written to every run directory.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

#: Settings shared by every method. Method-specific model settings live under ``model``.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "method": "modaltune",
    "seed": 0,
    "data": {
        "sites": None,            # list of sites to use; None = all in-domain sites of the cohort
        "pan_cancer": False,      # pool the sites in one model (probes still fitted per site)
        "split": "holdout",       # holdout (68/12/20) | kfold | file
        "split_file": None,       # CSV of case_id,split (or SurvPath/CLAM style) when split == file
        "split_seed": None,       # seed of the patient split (None = the run's seed)
        "fold": 0,
        "n_folds": 5,
        "bag_cap": 4096,          # max patches per patient during training (subsampled); evaluation sees all
        "eval_bag_cap": None,     # optional cap at evaluation (None = no cap)
        "n_bins": 4,              # survival bins (quantiles of uncensored training patients)
        "num_workers": 0,
        "magnification": "primary",  # primary | secondary | both
        "grid": 50,               # side of fixed-size bags (methods declaring fixed_bags): grid**2 patches
        "eval_batch_size": 1,     # patients per inference batch (batched methods)
        "train_fraction": 1.0,    # keep this fraction of the training patients (data-efficiency studies)
        "train_fraction_stages": "final",  # final: only a chain's last stage (fine-tuning) is cut | all stages
        "site_map": None,         # {external site: site of the parent model's vocabulary}
        "pretrain_only_sites": None,  # sites used by pooled pre-training stages only, never evaluated
        "endpoint": None,         # survival endpoint: None/os | pfs | {default: os, SITE: pfs} (Cohort.with_endpoints)
    },
    "train": {
        "epochs": 10,
        "lr": 1.0e-4,
        "weight_decay": 5.0e-4,
        "warmup_epochs": 2,
        "accumulate": 1,
        "batch_size": 1,              # patients per step (methods comparing patients need more)
        "drop_last": None,            # drop an incomplete last batch: None = when smaller than the method's minimum
        "loss_weights": None,         # {loss term: weight}; unnamed terms weigh 1
        "gradient_policy": "sum",     # sum | pcgrad (between backward and the optimiser step)
        "schedule": "cosine",         # cosine | constant (after the linear warm-up)
        "param_groups": None,         # [{match: glob over parameter names, lr, weight_decay}]
        "init_from": None,            # run directory whose selected weights, state and vocabularies start this run
        "max_steps_per_epoch": None,  # cap on patients per epoch (None = all); for smoke tests only
        "precision": "auto",          # auto = bf16-mixed on GPU, 32 on CPU
        "accelerator": "auto",
        "devices": "auto",
        "strategy": "auto",           # ddp for multi-GPU (devices: N); unused-parameter detection is on
        "select_metric": "auto",      # auto | val_balanced_accuracy | val_auc | val_c_index | val_mean | val_loss | last
        #                               or per task: {subtype: val_auc, survival: val_c_index} (training.scoring)
        "select_initial": False,      # with init_from: the starting weights compete as epoch -1 on validation
        "select_scope": "run",        # run | pooled: one epoch for all sites of a per-site stage (runs.pooled)
        "keep_epoch_weights": "auto",  # every epoch's weights under checkpoints/: auto = until a pooled choice
        "keep_training_state": False,  # keep checkpoints/last.ckpt once the run finished (it serves --resume)
        "log_every_n_steps": 10,
        "progress_bar": "auto",       # auto = only when attached to a terminal | true | false
        "threads": "auto",            # CPU intra-op threads: auto (see training.threads) | N
        "tensorboard": False,
    },
    "text": {
        "encoder": "minilm",      # minilm (packaged, offline) | sentence-transformers | hf | conch
        "path": None,             # local model directory / checkpoint for non-default encoders
        "batch_size": 64,
        "omit": [],               # prompt items left out (e.g. [stage, t, n, m]; see data.prompts.PROMPT_ITEMS)
    },
    "report": {                   # reports as a modality (methods declaring report inputs)
        "encoder": "minilm",      # any registered text encoder; BioBERT via hf + path for MICE's setting
        "path": None,
        "pooling": "cls",         # cls | mean
        "normalize": None,        # None = the encoder's default
        "batch_size": 32,
    },
    "eval": {
        "logreg_max_iter": 200,
        "logreg_solver": "liblinear",
        "logreg_c": 1.0,              # inverse L2 strength of the subtype probe (paper: sklearn's 1.0)
        "logreg_class_weight": None,  # None (paper) | balanced (for heavily imbalanced subtypes)
        "cph_penalizer": "auto",      # Cox probe ridge penalty: auto = chosen on validation | a number (paper 0.1)
        "cph_penalizer_grid": [0.1, 0.3, 1.0, 3.0, 10.0],   # candidates of auto
        "ood_sites": None,        # held-out sites for OOD evaluation (None = cohort's ood flag)
    },
    "model": {},
    "stages": None,               # {stage name: settings of that stage} for multi-stage methods
}


def deep_merge(base: dict, update: dict, *, strict: bool = True, path: str = "") -> dict:
    """Merge ``update`` into a copy of ``base``; with ``strict`` unknown keys raise ConfigError."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        where = f"{path}{key}"
        if key not in out:
            if strict:
                close = difflib.get_close_matches(str(key), [str(k) for k in out], n=1)
                hint = f"; did you mean '{path}{close[0]}'?" if close else f"; known: {', '.join(map(str, out))}"
                raise ConfigError(f"unknown config key '{where}'{hint}")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, strict=strict, path=where + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


_SCI_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (numbers, booleans, null, lists).

    Unquoted scientific notation without a dot (``1e-3``), which YAML 1.1 reads as a string, is a number.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _SCI_NUMBER.fullmatch(text.strip()):
        return float(value)
    return value


def overrides_to_dict(overrides: Iterable[str]) -> dict:
    """Turn ``["train.lr=1e-3", "model.depth=2"]`` into a nested dict."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override")
        node[parts[-1]] = parse_value(value)
    return out


SHIPPED_DIR = Path(__file__).parent / "configs"
#: Keys a config file may hold besides the settings (informational or per-method).
_META_KEYS = ("cohort", "methods", "description", "extends")


def shipped_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (``cpu_small``, ``paper``, ...)."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def config_path(file: str | Path) -> Path:
    """``file`` if it exists, else the shipped config of that name; ConfigError otherwise."""
    path = Path(file)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.stem if path.suffix in (".yaml", ".yml") and path.parent == Path(".") else str(file)
    if name in shipped:
        return shipped[name]
    raise ConfigError(f"config file not found: {file} (shipped configs: {', '.join(shipped) or 'none'})")


def read_config_file(file: str | Path, _seen: tuple = ()) -> dict:
    """Load a config file (or shipped name), following ``extends: NAME_OR_PATH`` chains.

    Settings of the extending file beat those of the file it extends, per-method sections included
    (a file that extends ``cpu_small`` and sets ``train.epochs`` trains every method that long).
    """
    path = config_path(file)
    if path.resolve() in _seen:
        raise ConfigError(f"config file {path} extends itself (cycle: {' -> '.join(map(str, _seen))})")
    data = load_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    ref = Path(str(parent))
    if not ref.is_absolute() and (path.parent / ref).exists():
        ref = path.parent / ref
    base = read_config_file(ref, _seen + (path.resolve(),))
    # the extending file wins over everything it extends, the parent's per-method sections included:
    # its top-level settings are laid over each of the parent's sections, then its own sections
    child_methods = data.pop("methods", None) or {}
    child_top = {k: v for k, v in data.items() if k not in _META_KEYS}
    methods = {name: deep_merge(section or {}, child_top, strict=False)
               for name, section in (base.pop("methods", None) or {}).items()}
    methods = deep_merge(methods, child_methods, strict=False)
    merged = deep_merge(base, data, strict=False)
    if methods:
        merged["methods"] = methods
    return merged


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping (ConfigError when missing, invalid or not a mapping)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    return data


def resolve_config(method: str | None = None, *, file: str | Path | None = None,
                   overrides: Iterable[str] = (), extra: dict | None = None) -> dict:
    """Build the full config for ``method`` from defaults, an optional YAML file and overrides."""
    from .registry import METHODS, load_builtin

    load_builtin()

    user: dict = {}
    per_method: dict = {}
    if file is not None:
        data = read_config_file(file)
        per_method = data.get("methods") or {}
        if not isinstance(per_method, dict):
            raise ConfigError(f"config file {file}: 'methods' must map method names to settings")
        user = deep_merge(user, {k: v for k, v in data.items() if k not in _META_KEYS}, strict=False)
    if extra:
        user = deep_merge(user, extra, strict=False)
    over = overrides_to_dict(overrides)
    name = method or over.get("method") or user.get("method") or GLOBAL_DEFAULTS["method"]
    cls = METHODS.get(name)
    unknown = [m for m in per_method if m not in METHODS]
    if unknown:
        raise ConfigError(f"config file {file}: unknown method(s) {unknown} under 'methods'; known: "
                          f"{', '.join(METHODS.names())}")
    section = per_method.get(name) or {}
    user = deep_merge(user, {k: v for k, v in section.items() if k != "method"}, strict=False)
    if extra:   # explicit arguments (benchmark cells) win over the file's per-method section
        user = deep_merge(user, extra, strict=False)
    user = deep_merge(user, over, strict=False)
    base = copy.deepcopy(GLOBAL_DEFAULTS)
    base["method"] = name
    method_defaults = cls.default_config() if hasattr(cls, "default_config") else {}
    base = deep_merge(base, method_defaults, strict=False)
    user = {k: v for k, v in user.items() if k != "method"}
    stages = deep_merge(base.pop("stages", None) or {}, user.pop("stages", None) or {}, strict=False)
    out = deep_merge(base, user, strict=True)
    out["stages"] = stages or None
    known = {st.name: st.method for st in cls.stages(out)}
    for stage, section in stages.items():
        if stage not in known:
            raise ConfigError(f"unknown stage '{stage}' under 'stages' for method '{name}'; its stages are "
                              f"{list(known)}")
        if known[stage] == name:   # other methods' stages are checked when the chain is planned
            deep_merge(out, section or {}, strict=True, path=f"stages.{stage}.")
    return out


def dump_config(cfg: dict, path: str | Path) -> None:
    """Write a resolved config as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))


def config_differences(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs, as ``key: old -> new``.

    A key present on one side only is shown with ``(absent)`` on the other; two spellings of the same
    existing path are equal; the run's own record key ``cohort`` is ignored at the top level.
    """
    out = []
    for key in sorted(set(old) | set(new), key=str):
        if not prefix and key == "cohort":
            continue
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b and not _same_path(a, b):
            out.append(f"{prefix}{key}: {_show(a)} -> {_show(b)}")
    return out


def _same_path(a: Any, b: Any) -> bool:
    """Two spellings of one existing file or directory (relative / absolute, through a link)."""
    if not (isinstance(a, str) and isinstance(b, str) and a and b):
        return False
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)
