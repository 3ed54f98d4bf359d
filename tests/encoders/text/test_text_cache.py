"""Tests of the on-disk text-embedding caches (pooled vectors and token states)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modaltune.encoders.text import (
    TextEncoder,
    cached_text_embeddings,
    cached_token_embeddings,
    embedding_cache_name,
    text_encoder_key,
)
from modaltune.errors import ConfigError, InputWarning


class CountingEncoder(TextEncoder):
    name = "counting"
    dim = 4
    key = "counting"

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=64):
        self.calls.append(list(texts))
        return np.stack([np.full(4, float(len(t)), dtype=np.float32) for t in texts])


def test_cache_only_encodes_new_prompts(tmp_path):
    enc = CountingEncoder()
    out = cached_text_embeddings(tmp_path, "counting", ["a", "bb", "a"], enc)
    assert set(out) == {"a", "bb"} and enc.calls == [["a", "bb"]]
    assert (tmp_path / "counting.npz").exists()
    # a fresh encoder object: only the new prompt is encoded, cached ones are read from disk
    enc2 = CountingEncoder()
    out2 = cached_text_embeddings(tmp_path, "counting", ["bb", "ccc", "a"], enc2)
    assert enc2.calls == [["ccc"]]
    np.testing.assert_array_equal(out2["ccc"], np.full(4, 3.0, dtype=np.float32))
    np.testing.assert_array_equal(out2["a"], out["a"])
    # everything cached: the factory is never called
    def factory():
        raise AssertionError("encoder built although every prompt is cached")
    out3 = cached_text_embeddings(tmp_path, "counting", ["a", "bb", "ccc"], factory)
    assert list(out3) == ["a", "bb", "ccc"]


def test_cache_keys_differ_per_model_path(tmp_path):
    assert text_encoder_key("minilm") == "minilm"
    a = text_encoder_key("hf", tmp_path / "m1")
    b = text_encoder_key("hf", tmp_path / "m2")
    assert a != b and "/" not in a


class PoolingEncoder(TextEncoder):
    """Fake encoder whose output depends on its pooling, so files mixed up would show."""

    name = "fake"
    dim = 3

    def __init__(self, pooling="mean", normalize=True, max_length=None, key="fake"):
        self._set_options(pooling, normalize, max_length)
        self.key = key
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=64):
        self.calls.append(list(texts))
        shift = 0.0 if self.pooling == "mean" else 100.0
        return np.stack([np.full(3, len(t) + shift, dtype=np.float32) for t in texts])

    def encode_tokens(self, texts, batch_size=16):
        self.calls.append(list(texts))
        return [np.arange(len(t) * 3, dtype=np.float32).reshape(len(t), 3) for t in texts]


def test_prompt_and_report_settings_never_share_a_file(tmp_path):
    text = "Invasive ductal carcinoma."
    mean = cached_text_embeddings(tmp_path, "fake", [text], PoolingEncoder())
    cls = cached_text_embeddings(tmp_path, "fake", [text], PoolingEncoder("cls", normalize=False))
    raw = cached_text_embeddings(tmp_path, "fake", [text], PoolingEncoder(normalize=False, max_length=64))
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["fake-cls-raw.npz", "fake-mean-raw-L64.npz", "fake.npz"]
    assert mean[text][0] == len(text) and cls[text][0] == len(text) + 100 and raw[text][0] == len(text)
    assert embedding_cache_name("k", "cls", True, None, default_pooling="cls") == "k"     # CONCH's default
    with pytest.raises(ConfigError, match="contradict"):
        cached_text_embeddings(tmp_path, "fake", [text], PoolingEncoder(), pooling="cls")
    # a factory is checked once built, against the settings that chose the file
    with pytest.raises(ConfigError, match="contradict"):
        cached_text_embeddings(tmp_path, "fake", ["new"], lambda: PoolingEncoder("cls"), pooling="mean")


def test_cache_files_load_without_pickle_and_carry_their_settings(tmp_path):
    cached_text_embeddings(tmp_path, "fake", ["a", "bb"], PoolingEncoder("cls", normalize=False))
    cached_token_embeddings(tmp_path, PoolingEncoder(), ["a", "bbb"])
    for name, kind in (("fake-cls-raw.npz", "pooled"), ("fake-tokens.npz", "tokens")):
        with np.load(tmp_path / name, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        settings = json.loads(str(arrays["settings"]))
        assert settings["kind"] == kind and settings["key"] == "fake"
    assert settings["max_length"] is None and list(arrays["offsets"]) == [0, 1, 4]
    assert arrays["tokens"].shape == (4, 3) and list(arrays["texts"]) == ["a", "bbb"]


def test_settings_written_in_a_file_are_checked(tmp_path):
    cached_text_embeddings(tmp_path, "fake", ["a"], PoolingEncoder())
    with np.load(tmp_path / "fake.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["settings"] = np.array(json.dumps({"kind": "pooled", "pooling": "cls"}))
    np.savez(tmp_path / "fake.npz", **arrays)
    enc = PoolingEncoder()
    with pytest.warns(InputWarning, match="other settings"):
        cached_text_embeddings(tmp_path, "fake", ["a"], enc)
    assert enc.calls == [["a"]]


def test_token_cache_is_ragged_and_only_encodes_new_texts(tmp_path):
    enc = PoolingEncoder()
    first = cached_token_embeddings(tmp_path, enc, ["ab", "c", "ab"])
    assert enc.calls == [["ab", "c"]] and first["ab"].shape == (2, 3) and first["c"].shape == (1, 3)
    enc2 = PoolingEncoder()
    second = cached_token_embeddings(tmp_path, enc2, ["c", "dddd", "ab"])
    assert enc2.calls == [["dddd"]] and list(second) == ["c", "dddd", "ab"]
    np.testing.assert_array_equal(second["ab"], first["ab"])
    np.testing.assert_array_equal(second["dddd"], np.arange(12, dtype=np.float32).reshape(4, 3))
    with pytest.raises(ConfigError, match="needs key="):
        cached_token_embeddings(tmp_path, lambda: PoolingEncoder(), ["x"])
    assert cached_token_embeddings(tmp_path, lambda: 1 / 0, ["c", "ab"], key="fake")["c"].shape == (1, 3)


@pytest.fixture(scope="module")
def minilm_cls():
    from modaltune.encoders.text import build_text_encoder, default_minilm_path

    return build_text_encoder("hf", path=default_minilm_path(), device="cpu", pooling="cls", normalize=False)


class Boom(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("the model ran although every text is cached")


def test_real_encoder_is_not_run_again(tmp_path, minilm_cls, monkeypatch):
    reports = ["Clear cell renal cell carcinoma.", "Serous carcinoma of the ovary, high grade."]
    vec = cached_text_embeddings(tmp_path, minilm_cls.key, reports, minilm_cls)
    toks = cached_token_embeddings(tmp_path, minilm_cls, reports)
    assert {p.name.replace(minilm_cls.key, "K") for p in tmp_path.glob("*.npz")} == {"K-cls-raw.npz", "K-tokens.npz"}
    monkeypatch.setattr(minilm_cls, "backbone", Boom())
    again = cached_text_embeddings(tmp_path, minilm_cls.key, reports, minilm_cls)
    toks_again = cached_token_embeddings(tmp_path, minilm_cls, reports)
    for r in reports:
        np.testing.assert_array_equal(again[r], vec[r])
        np.testing.assert_array_equal(toks_again[r], toks[r])
        np.testing.assert_allclose(toks[r][0], vec[r], atol=1e-6)      # the CLS vector is token row 0
    with pytest.raises(AssertionError, match="model ran"):
        cached_text_embeddings(tmp_path, minilm_cls.key, ["a new report"], minilm_cls)


def test_by_name_builds_lazily_with_the_options(tmp_path, monkeypatch):
    from modaltune.encoders.text import default_minilm_path

    path = default_minilm_path()
    out = cached_text_embeddings(tmp_path, "hf", ["Clear cell renal cell carcinoma."], path=path, device="cpu",
                                 pooling="cls", normalize=False, max_length=32)
    key = text_encoder_key("hf", path)
    assert (tmp_path / f"{key}-cls-raw-L32.npz").exists()
    import modaltune.encoders.text.cache as cache_module

    monkeypatch.setattr(cache_module, "build_registered", lambda *a, **k: 1 / 0)
    again = cached_text_embeddings(tmp_path, "hf", ["Clear cell renal cell carcinoma."], path=path,
                                   pooling="cls", normalize=False, max_length=32)
    np.testing.assert_array_equal(again["Clear cell renal cell carcinoma."], out["Clear cell renal cell carcinoma."])
