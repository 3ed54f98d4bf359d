"""Tests of ``modaltune.config``: merge order, strict keys, overrides, ``methods:``, ``extends:``,
shipped configs, config differences (every shipped config x method: ``test_shipped_configs.py``)."""

from __future__ import annotations

import pytest
import yaml

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.config import (
    GLOBAL_DEFAULTS,
    SHIPPED_DIR,
    config_path,
    deep_merge,
    dump_config,
    overrides_to_dict,
    parse_value,
    read_config_file,
    resolve_config,
    shipped_configs,
)
from modaltune.errors import ConfigError
from modaltune.registry import METHODS


def _write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


# ----------------------------------------------------------------------------------------------
# merge order


def test_global_defaults_then_method_defaults():
    cfg = resolve_config("abmil")
    abmil = METHODS.get("abmil").default_config()
    assert cfg["method"] == "abmil"
    # method defaults win over the global defaults ...
    assert GLOBAL_DEFAULTS["train"]["epochs"] != abmil["train"]["epochs"]
    assert cfg["train"]["epochs"] == abmil["train"]["epochs"]
    assert cfg["model"] == abmil["model"]
    # ... and the global defaults fill in what the method leaves alone
    assert cfg["data"] == GLOBAL_DEFAULTS["data"]
    assert cfg["eval"] == GLOBAL_DEFAULTS["eval"]
    assert cfg["train"]["precision"] == GLOBAL_DEFAULTS["train"]["precision"]
    # resolving never mutates the defaults
    assert GLOBAL_DEFAULTS["method"] == "modaltune" and GLOBAL_DEFAULTS["model"] == {}


def test_default_method_is_modaltune():
    assert resolve_config()["method"] == "modaltune"
    assert resolve_config(overrides=["method=snn"])["method"] == "snn"


def test_full_merge_order(tmp_path):
    f = _write(tmp_path / "c.yaml", {
        "train": {"epochs": 3, "lr": 0.5, "warmup_epochs": 0},
        "data": {"bag_cap": 100, "n_bins": 6},
        "methods": {"abmil": {"train": {"lr": 0.25}, "data": {"bag_cap": 200, "fold": 1}, "model": {"dim": 32}},
                    "snn": {"train": {"lr": 0.125}}},
    })
    extra = {"data": {"bag_cap": 300, "fold": 2}, "train": {"weight_decay": 0.1}}
    cfg = resolve_config("abmil", file=f, extra=extra, overrides=["data.bag_cap=400"])
    assert cfg["train"]["epochs"] == 3            # file > method default (20) > global (10)
    assert cfg["train"]["warmup_epochs"] == 0
    assert cfg["train"]["lr"] == 0.25              # methods: section > file
    assert cfg["model"]["dim"] == 32               # methods: section > method default
    assert cfg["model"]["attn_dim"] == METHODS.get("abmil").default_config()["model"]["attn_dim"]
    assert cfg["data"]["fold"] == 2                # extra > methods: section
    assert cfg["train"]["weight_decay"] == 0.1     # extra > method default
    assert cfg["data"]["bag_cap"] == 400           # --set > extra > section > file
    assert cfg["data"]["n_bins"] == 6
    assert resolve_config("abmil", file=f, extra=extra)["data"]["bag_cap"] == 300
    assert resolve_config("abmil", file=f)["data"]["bag_cap"] == 200


def test_methods_section_applies_only_to_its_method(tmp_path):
    f = _write(tmp_path / "c.yaml", {
        "train": {"lr": 0.5},
        "methods": {"abmil": {"train": {"lr": 0.25}, "model": {"attn_dim": 7}}},
    })
    assert resolve_config("abmil", file=f)["train"]["lr"] == 0.25
    snn = resolve_config("snn", file=f)
    assert snn["train"]["lr"] == 0.5
    assert "attn_dim" not in snn["model"]          # abmil's model keys never reach snn
    transmil = resolve_config("transmil", file=f)
    assert transmil["train"]["lr"] == 0.5


def test_unknown_method_under_methods_raises(tmp_path):
    f = _write(tmp_path / "c.yaml", {"methods": {"abmill": {"train": {"lr": 0.1}}}})
    with pytest.raises(ConfigError, match="abmill") as exc:
        resolve_config("abmil", file=f)
    assert "modaltune" in str(exc.value) and "snn" in str(exc.value)   # lists the known methods


def test_methods_must_be_a_mapping(tmp_path):
    f = _write(tmp_path / "c.yaml", "methods: [abmil, snn]\n")
    with pytest.raises(ConfigError, match="methods"):
        resolve_config("abmil", file=f)


def test_unknown_method_name_raises():
    with pytest.raises(ConfigError, match="unknown method 'abmilx'"):
        resolve_config("abmilx")


# ----------------------------------------------------------------------------------------------
# strict keys


@pytest.mark.parametrize("where, key, hint", [
    ("override", "train.epoch=3", "train.epochs"),
    ("override", "data.bagcap=3", "data.bag_cap"),
    ("override", "trian.epochs=3", "train"),
    ("file", {"train": {"epoch": 3}}, "train.epochs"),
    ("file", {"model": {"dimm": 8}}, "model.dim"),
    ("extra", {"eval": {"ood_site": ["BLCA"]}}, "eval.ood_sites"),
])
def test_unknown_key_raises_with_did_you_mean(tmp_path, where, key, hint):
    kwargs = {}
    if where == "override":
        kwargs["overrides"] = [key]
    elif where == "file":
        kwargs["file"] = _write(tmp_path / "c.yaml", key)
    else:
        kwargs["extra"] = key
    with pytest.raises(ConfigError, match="did you mean") as exc:
        resolve_config("abmil", **kwargs)
    assert f"'{hint}'" in str(exc.value)


def test_unknown_key_without_close_match_lists_known_keys():
    with pytest.raises(ConfigError, match="unknown config key 'zzzzzz'") as exc:
        resolve_config("abmil", overrides=["zzzzzz=1"])
    assert "known:" in str(exc.value) and "train" in str(exc.value)


def test_deep_merge_strict_and_lenient():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    out = deep_merge(base, {"a": {"c": {"d": 5}}})
    assert out == {"a": {"b": 1, "c": {"d": 5}}, "e": 3}
    assert base["a"]["c"]["d"] == 2                # base untouched
    with pytest.raises(ConfigError, match="a.c.x"):
        deep_merge(base, {"a": {"c": {"x": 1}}})
    assert deep_merge(base, {"a": {"z": 1}}, strict=False)["a"]["z"] == 1


def test_method_specific_model_keys_are_validated():
    # a key that only another method knows is still unknown for this one
    assert "hidden" in METHODS.get("snn").default_config()["model"]
    with pytest.raises(ConfigError, match="model.hidden"):
        resolve_config("abmil", overrides=["model.hidden=[8]"])
    assert resolve_config("snn", overrides=["model.hidden=[8, 4]"])["model"]["hidden"] == [8, 4]


# ----------------------------------------------------------------------------------------------
# --set overrides


def test_overrides_to_dict_parses_yaml_values():
    d = overrides_to_dict(["train.lr=0.5", "train.epochs=3", "train.progress_bar=false", "data.sites=[BRCA, RCC]",
                           "data.split_seed=null", "text.encoder=minilm", "seed=7", "model.x.y.z=1.5",
                           "data.split_file=a=b.csv"])
    assert d == {"train": {"lr": 0.5, "epochs": 3, "progress_bar": False},
                 "data": {"sites": ["BRCA", "RCC"], "split_seed": None, "split_file": "a=b.csv"},
                 "text": {"encoder": "minilm"}, "seed": 7, "model": {"x": {"y": {"z": 1.5}}}}
    assert isinstance(d["train"]["epochs"], int) and isinstance(d["train"]["lr"], float)


@pytest.mark.parametrize("text, value", [
    ("1e-3", 1e-3), ("5.0e-4", 5e-4), ("2E+2", 200.0), ("-1e2", -100.0), ("42", 42), ("true", True), ("no", False),
    ("~", None), ("[1, 2.5]", [1, 2.5]), ("{a: 1}", {"a": 1}), ("abc", "abc"), ("'1e-3'", "1e-3"), ("e5", "e5"),
])
def test_parse_value(text, value):
    out = parse_value(text)
    assert out == value and type(out) is type(value)


def test_scientific_notation_override_is_a_number():
    cfg = resolve_config("abmil", overrides=["train.lr=1e-3", "train.weight_decay=5e-4"])
    assert cfg["train"]["lr"] == pytest.approx(1e-3) and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["weight_decay"] == pytest.approx(5e-4)


@pytest.mark.parametrize("bad", ["novalue", "train.epochs"])
def test_override_without_value_is_rejected(bad):
    with pytest.raises(ConfigError, match="key.sub=value"):
        overrides_to_dict([bad])


def test_conflicting_overrides_are_rejected():
    with pytest.raises(ConfigError, match="conflicts"):
        overrides_to_dict(["train=1", "train.lr=2"])


def test_override_sets_seed_and_later_override_wins():
    cfg = resolve_config("snn", overrides=["seed=3", "train.epochs=4", "train.epochs=5"])
    assert cfg["seed"] == 3 and cfg["train"]["epochs"] == 5


# ----------------------------------------------------------------------------------------------
# extends, shipped configs, a run's config.yaml


def test_shipped_configs():
    shipped = shipped_configs()
    assert {"cpu_small", "paper", "paper_pan_cancer"} <= set(shipped)
    for name, path in shipped.items():
        assert path.exists() and path.parent == SHIPPED_DIR and path.name == f"{name}.yaml"
    assert config_path("cpu_small") == SHIPPED_DIR / "cpu_small.yaml"
    assert config_path("cpu_small.yaml") == SHIPPED_DIR / "cpu_small.yaml"


def test_config_path_prefers_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cpu_small.yaml").write_text("train: {epochs: 1}\n")
    assert config_path("cpu_small.yaml").resolve() == (tmp_path / "cpu_small.yaml").resolve()
    assert resolve_config("abmil", file="cpu_small.yaml")["train"]["epochs"] == 1
    # the bare name still finds the shipped one when no such file exists here
    assert config_path("cpu_small") == SHIPPED_DIR / "cpu_small.yaml"


def test_a_directory_of_the_same_name_does_not_hide_a_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper").mkdir()                              # e.g. the user's manuscript folder
    assert config_path("paper") == SHIPPED_DIR / "paper.yaml"
    assert resolve_config("modaltune", file="paper")["model"]["encoder_size"] == "gigapath"


def test_missing_config_names_the_shipped_ones():
    with pytest.raises(ConfigError, match="not found") as exc:
        config_path("no_such_config")
    assert "cpu_small" in str(exc.value) and "paper" in str(exc.value)


def test_invalid_yaml_and_non_mapping_raise(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config("abmil", file=_write(tmp_path / "bad.yaml", "train: {epochs: [\n"))
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config("abmil", file=_write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_cpu_small_and_paper_settings():
    small = resolve_config("modaltune", file="cpu_small")
    assert small["model"]["encoder_size"] == "small" and small["model"]["encoder"]["dim"] == 96
    assert small["data"]["bag_cap"] == 1024 and small["train"]["epochs"] == 8
    assert "description" not in small and "methods" not in small and "extends" not in small
    paper = resolve_config("modaltune", file="paper")
    assert paper["model"]["encoder_size"] == "gigapath" and paper["model"]["checkpoint"] is None
    assert paper["train"]["epochs"] == 30 and paper["train"]["warmup_epochs"] == 10
    assert paper["data"]["bag_cap"] == 25000 and paper["data"]["pan_cancer"] is False
    assert resolve_config("gigapath_kp", file="paper")["model"]["wsi"]["slide_size"] == "gigapath"


def test_paper_config_turns_the_issue_15_changes_off():
    """ModalTune's survival head and modal-token LayerNorm are defaults; the paper config restores the paper."""
    for cfg in (resolve_config("modaltune"), resolve_config("modaltune", file="cpu_small")):
        assert cfg["model"]["survival_head"] is True and cfg["model"]["modal_norm"] is True
        assert cfg["train"]["loss_weights"] == {"head_nll": 0.1}
    for name in ("paper", "paper_pan_cancer"):
        paper = resolve_config("modaltune", file=name)
        assert paper["model"]["survival_head"] is False and paper["model"]["modal_norm"] is False
        assert paper["eval"]["cph_penalizer"] == 0.1
        assert paper["train"]["select_metric"] == "val_balanced_accuracy"
    over = resolve_config("modaltune", overrides=["model.survival_head=false", "model.modal_norm=false"])
    assert over["model"]["survival_head"] is False and over["model"]["modal_norm"] is False


def test_paper_pan_cancer_extends_paper():
    pan = resolve_config("modaltune", file="paper_pan_cancer")
    paper = resolve_config("modaltune", file="paper")
    assert pan["data"]["pan_cancer"] is True
    pan["data"]["pan_cancer"] = False
    assert pan == paper
    raw = read_config_file("paper_pan_cancer")
    assert "extends" not in raw and "modaltune" in raw["methods"]


def test_extends_a_shipped_config_by_name(tmp_path):
    f = _write(tmp_path / "mine.yaml", {
        "extends": "cpu_small",
        "train": {"epochs": 2},
        "methods": {"abmil": {"model": {"dim": 32}}},
    })
    abmil = resolve_config("abmil", file=f)
    assert abmil["train"]["epochs"] == 2                 # the child's top level
    assert abmil["data"]["bag_cap"] == 1024              # inherited from cpu_small
    assert abmil["model"]["dim"] == 32                   # the child's methods: section ...
    assert abmil["model"]["attn_dim"] == 64              # ... merged with cpu_small's for abmil
    mt = resolve_config("modaltune", file=f)
    assert mt["model"]["encoder_size"] == "small"        # cpu_small's methods: section survives
    assert mt["train"]["epochs"] == 2                    # the extending file beats the parent's sections too
    assert mt["train"]["lr"] == 3.0e-4                   # ... but what it does not set is inherited
    same = _write(tmp_path / "same.yaml", {"train": {"epochs": 2}, "methods": {"modaltune": {"train": {"epochs": 7}}}})
    assert resolve_config("modaltune", file=same)["train"]["epochs"] == 7   # within one file the section wins


def test_extends_a_relative_path_from_the_file_not_the_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "base" / "base.yaml", {"train": {"epochs": 5, "lr": 0.5}, "data": {"n_bins": 3}})
    _write(tmp_path / "base" / "exp" / "mid.yaml", {"extends": "../base.yaml", "train": {"lr": 0.25}})
    f = _write(tmp_path / "base" / "exp" / "child.yaml", {"extends": "mid.yaml", "data": {"n_bins": 2}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = resolve_config("snn", file=f)
    assert cfg["train"]["epochs"] == 5 and cfg["train"]["lr"] == 0.25 and cfg["data"]["n_bins"] == 2


def test_extends_cycle_raises(tmp_path):
    _write(tmp_path / "a.yaml", {"extends": "b.yaml", "train": {"epochs": 1}})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml", "train": {"epochs": 2}})
    with pytest.raises(ConfigError, match="cycle"):
        resolve_config("abmil", file=tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", {"extends": "self.yaml"})
    with pytest.raises(ConfigError, match="extends itself"):
        read_config_file(tmp_path / "self.yaml")


def test_extends_missing_parent_raises(tmp_path):
    f = _write(tmp_path / "c.yaml", {"extends": "nowhere_to_be_found"})
    with pytest.raises(ConfigError, match="nowhere_to_be_found"):
        resolve_config("abmil", file=f)


@pytest.mark.parametrize("method", ["abmil", "modaltune"])
def test_a_runs_config_yaml_can_be_passed_back(tmp_path, method):
    cfg = resolve_config(method, file="cpu_small", overrides=["train.epochs=2", "seed=4"],
                         extra={"data": {"sites": ["BRCA"]}})
    path = tmp_path / "run" / "config.yaml"
    # what the engine writes into a run directory: the config plus the informational cohort path
    dump_config({**cfg, "cohort": str(tmp_path / "cohort")}, path)
    assert yaml.safe_load(path.read_text())["cohort"] == str(tmp_path / "cohort")
    again = resolve_config(method, file=path)
    assert again == cfg
    assert resolve_config(None, file=path) == cfg         # the method comes from the file


def test_config_differences_lists_changed_added_and_removed_keys_but_not_the_cohort_record():
    from modaltune.config import config_differences

    old = {"cohort": "/a", "seed": 0, "train": {"lr": 0.001, "epochs": 5}, "model": {"x": [1, 2]}}
    new = {"seed": 0, "train": {"lr": 0.01, "epochs": 5, "batch_size": 2}, "model": {"x": [1, 2]}}
    assert config_differences(old, new) == ["train.batch_size: (absent) -> 2", "train.lr: 0.001 -> 0.01"]
    assert config_differences(new, new) == []
    assert config_differences({"data": {"sites": None}}, {"data": None}) == ["data: {'sites': None} -> None"]


def test_config_differences_takes_two_spellings_of_one_path_as_equal(tmp_path, monkeypatch):
    from modaltune.config import config_differences

    (tmp_path / "runs" / "pre").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    old = {"train": {"init_from": "runs/pre"}}
    assert config_differences(old, {"train": {"init_from": str(tmp_path / "runs" / "pre")}}) == []
    assert config_differences(old, {"train": {"init_from": str(tmp_path / "other")}}) != []
    assert config_differences({"m": "missing_a"}, {"m": "missing_b"}) == ["m: 'missing_a' -> 'missing_b'"]
