"""Tests of the text encoders (offline MiniLM) and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from modaltune.encoders.text import (TextEncoder, build_text_encoder, cached_text_embeddings,
                                     text_encoder_key)
from modaltune.errors import ConfigError, InputError
from modaltune.registry import TEXT_ENCODERS


def test_registry_names():
    for name in ("minilm", "sentence-transformers", "hf", "conch"):
        assert name in TEXT_ENCODERS
    with pytest.raises(ConfigError):
        build_text_encoder("no-such-encoder")


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("minilm", device="cpu")


def test_minilm_offline_384d_and_semantics(minilm, monkeypatch):
    assert minilm.dim == 384
    assert minilm.key == "minilm"
    texts = ["Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma",
             "Cancer location: breast; Cancer diagnosis: infiltrating ductal carcinoma of the breast",
             "The weather in the mountains was cold and windy all week."]
    emb = minilm.encode(texts, batch_size=2)
    assert emb.dtype == np.float32 and emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2


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


@pytest.mark.parametrize("name", ["sentence-transformers", "hf", "conch"])
def test_missing_local_path_errors(tmp_path, name):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(InputError) as err:
        build_text_encoder(name, path=missing)
    assert str(missing) in str(err.value) and "fix:" in str(err.value)
    with pytest.raises(InputError) as err:
        build_text_encoder(name, path=None)
    assert "text.path" in str(err.value)


def test_conch_without_package_explains_install(tmp_path):
    try:
        import conch  # noqa: F401
        pytest.skip("CONCH is installed")
    except ImportError:
        pass
    ckpt = tmp_path / "pytorch_model.bin"
    ckpt.write_bytes(b"not really weights")
    with pytest.raises(InputError) as err:
        build_text_encoder("conch", path=ckpt)
    assert "modaltune[conch]" in str(err.value)


def test_hf_mean_pooling_matches_minilm(minilm):
    """The packaged MiniLM directory is also a plain HF model; masked mean pooling reproduces it."""
    from modaltune.encoders.text import default_minilm_path

    hf = build_text_encoder("hf", path=default_minilm_path(), device="cpu")
    assert hf.dim == 384 and hf.key.startswith("hf-")
    texts = ["Cancer location: kidney; Cancer diagnosis: clear cell adenocarcinoma", "short"]
    a, b = hf.encode(texts, batch_size=1), minilm.encode(texts)
    np.testing.assert_allclose((a * b).sum(1), 1.0, atol=1e-4)
