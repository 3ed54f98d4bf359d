"""Tests of ``modaltune.registry``: registration, duplicates, lookups, and the registered methods."""

from __future__ import annotations

import pytest

import modaltune.methods  # noqa: F401  (registers the methods)
from modaltune.config import resolve_config
from modaltune.errors import ConfigError
from modaltune.methods.base import Method
from modaltune.registry import METHODS, SLIDE_ENCODERS, TEXT_ENCODERS, Registry

FAMILIES = {"WSI", "Genomics", "Multi-modal", "ModalTune", "MICE", "Disentangled", "Missing modality"}
#: modalities each family must declare
FAMILY_MODALITIES = {"WSI": ("bag",), "Genomics": ("omics",), "Multi-modal": ("bag", "omics"),
                     "Missing modality": ("bag", "omics"),
                     "ModalTune": ("bag", "omics")}


def test_register_returns_the_object_and_names_it():
    reg = Registry("widget")

    @reg.register("b")
    class B:
        pass

    def factory():
        return 1

    assert reg.register("a")(factory) is factory
    assert reg.get("b") is B and reg.get("a") is factory
    assert B.registry_name == "b" and factory.registry_name == "a"
    assert "a" in reg and "b" in reg and "c" not in reg
    assert reg.names() == ["a", "b"]                       # sorted, not insertion order
    assert reg.items() == [("a", factory), ("b", B)]


def test_register_objects_without_attributes():
    reg = Registry("constant")
    reg.register("three")(3)                               # setattr fails quietly on an int
    assert reg.get("three") == 3 and reg.names() == ["three"]


def test_duplicate_name_raises_and_keeps_the_first():
    reg = Registry("widget")
    reg.register("x")(int)
    with pytest.raises(KeyError, match="widget 'x' is already registered"):
        reg.register("x")(float)
    assert reg.get("x") is int


def test_unknown_name_raises_config_error_listing_known_names():
    reg = Registry("widget")
    for name in ("gamma", "alpha", "beta"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(ConfigError, match="unknown widget 'delta'; known: alpha, beta, gamma"):
        reg.get("delta")
    with pytest.raises(ConfigError, match=r"\(none\)"):
        Registry("empty").get("anything")


def test_registries_are_independent():
    a, b = Registry("a"), Registry("b")
    a.register("same")(int)
    b.register("same")(float)
    assert a.get("same") is int and b.get("same") is float


def test_unknown_method_lists_registered_methods():
    with pytest.raises(ConfigError) as exc:
        METHODS.get("nope")
    msg = str(exc.value)
    assert "unknown method 'nope'" in msg
    for name in ("abmil", "modaltune", "snn", "mcat"):
        assert name in msg


def test_expected_methods_are_registered():
    expected = {"abmil", "transmil", "gigapath_tuned", "mlp", "snn", "smlp", "gene_mixer", "mcat", "survpath",
                "abmil_cat", "abmil_kp", "transmil_cat", "transmil_kp", "gigapath_cat", "gigapath_kp", "modaltune"}
    assert expected <= set(METHODS.names())
    assert METHODS.names() == sorted(METHODS.names())
    assert [n for n, _ in METHODS.items()] == METHODS.names()


def test_method_registry_rejects_re_registration():
    abmil = METHODS.get("abmil")

    class Impostor(Method):
        pass

    try:
        with pytest.raises(KeyError):
            METHODS.register("abmil")(Impostor)
        assert METHODS.get("abmil") is abmil and abmil.registry_name == "abmil"
    finally:  # never leave the global registry changed, even when the check is broken
        METHODS._items["abmil"] = abmil
        abmil.registry_name = "abmil"


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("_")])
def test_method_class_attributes(name):
    cls = METHODS.get(name)
    assert isinstance(cls, type) and issubclass(cls, Method)
    assert cls.registry_name == name
    assert cls.family in FAMILIES, (name, cls.family)
    assert cls.display_name, name                                  # tables name every built-in method
    cfg = resolve_config(name)
    decl = cls.declare(cfg)
    assert decl.evaluation in ("probe", "predict"), name
    inputs = tuple(i for i in ("bag", "omics") if i in decl.inputs)
    if cls.family in FAMILY_MODALITIES:      # the ModalTune paper's families read fixed modalities
        assert inputs == FAMILY_MODALITIES[cls.family], name
    else:                                    # MICE / disentangled methods read some of WSI, omics, reports
        assert decl.inputs & {"bag", "bag_secondary", "omics", "report_embedding"}, name
    # only ModalTune learns from text targets (and is probed); every baseline from labels
    assert ("text_targets" in decl.inputs) == (cls.family == "ModalTune") == (decl.evaluation == "probe"), name
    assert set(decl.tasks) <= {"subtype", "survival"} and decl.tasks
    assert isinstance(cfg.get("model"), dict)


def test_encoder_registries():
    import modaltune.encoders.slide  # noqa: F401
    import modaltune.encoders.text  # noqa: F401

    assert "longnet" in SLIDE_ENCODERS
    assert {"minilm", "sentence-transformers", "hf", "conch"} <= set(TEXT_ENCODERS.names())
    with pytest.raises(ConfigError, match="unknown text encoder 'bert'"):
        TEXT_ENCODERS.get("bert")
