"""Tests of the on-disk text-embedding cache."""

from __future__ import annotations

import numpy as np

from modaltune.encoders.text import TextEncoder, cached_text_embeddings, text_encoder_key


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
