"""Tests of the text encoders (offline MiniLM; the others' error messages)."""

from __future__ import annotations

import numpy as np
import pytest

from modaltune.encoders.text import build_text_encoder, default_minilm_path
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
    hf = build_text_encoder("hf", path=default_minilm_path(), device="cpu")
    assert hf.dim == 384 and hf.key.startswith("hf-")
    texts = ["Cancer location: kidney; Cancer diagnosis: clear cell adenocarcinoma", "short"]
    a, b = hf.encode(texts, batch_size=1), minilm.encode(texts)
    np.testing.assert_allclose((a * b).sum(1), 1.0, atol=1e-4)
