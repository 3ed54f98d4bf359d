"""Tests of the text-encoder options for reports: pooling, normalisation, truncation, token states.

References are computed here directly with transformers on the packaged MiniLM directory, which
is both a sentence-transformers model and a plain Hugging Face BERT.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from modaltune.encoders.text import POOLINGS, build_text_encoder, default_minilm_path
from modaltune.errors import ConfigError

torch.set_num_threads(1)

REPORTS = ["Invasive ductal carcinoma, grade 3, margins negative. Two of fourteen lymph nodes positive.",
           "Clear cell renal cell carcinoma.",
           "Sections show a poorly differentiated adenocarcinoma with extensive necrosis and lymphovascular "
           "invasion; the tumour extends into the pericolic fat."]


@pytest.fixture(scope="module")
def reference():
    """Tokenizer and model loaded straight from transformers (not through modaltune)."""
    from transformers import AutoModel, AutoTokenizer

    path = str(default_minilm_path())
    return AutoTokenizer.from_pretrained(path, local_files_only=True), \
        AutoModel.from_pretrained(path, local_files_only=True).eval()


def last_hidden(reference, text: str, max_length: int) -> np.ndarray:
    tokenizer, model = reference
    tok = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**tok).last_hidden_state[0].numpy()


@pytest.fixture(scope="module")
def hf_cls():
    return build_text_encoder("hf", path=default_minilm_path(), device="cpu", pooling="cls", normalize=False)


@pytest.fixture(scope="module")
def st_cls():
    return build_text_encoder("minilm", device="cpu", pooling="cls", normalize=False)


def test_cls_is_the_first_hidden_state_row(reference, hf_cls, st_cls):
    assert hf_cls.max_length == 512 and st_cls.max_length == 256     # BERT positions; ST's max_seq_length
    for enc in (hf_cls, st_cls):
        got = enc.encode(REPORTS, batch_size=2)                       # padded batches
        assert got.shape == (3, 384) and got.dtype == np.float32
        for text, row in zip(REPORTS, got):
            np.testing.assert_allclose(row, last_hidden(reference, text, enc.max_length)[0], atol=1e-5)
        assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)     # normalize=False is raw


def test_cls_and_mean_differ_and_mean_is_the_masked_mean(reference, hf_cls):
    mean = build_text_encoder("hf", path=default_minilm_path(), device="cpu", normalize=False)
    assert mean.pooling == "mean" and POOLINGS == ("mean", "cls")
    a, b = mean.encode(REPORTS), hf_cls.encode(REPORTS)
    assert np.abs(a - b).max() > 0.1
    np.testing.assert_allclose(a[1], last_hidden(reference, REPORTS[1], 512).mean(0), atol=1e-5)


def test_default_minilm_is_the_sentence_transformers_pipeline():
    """Prompts keep sentence-transformers' mean pooling; the explicit mean gives the same vectors."""
    from sentence_transformers import SentenceTransformer

    enc = build_text_encoder("minilm", device="cpu")
    assert (enc.pooling, enc.normalize, enc._use_pipeline) == ("mean", True, True)
    st = SentenceTransformer(str(default_minilm_path()), device="cpu")
    ref = st.encode(REPORTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_array_equal(enc.encode(REPORTS), ref / np.linalg.norm(ref, axis=1, keepdims=True))
    hf = build_text_encoder("hf", path=default_minilm_path(), device="cpu", max_length=256)
    np.testing.assert_allclose(hf.encode(REPORTS), enc.encode(REPORTS), atol=1e-5)


def test_head_truncation_is_deterministic_and_counted(reference, caplog):
    enc = build_text_encoder("hf", path=default_minilm_path(), device="cpu", pooling="cls", normalize=False,
                             max_length=12)
    long_a = REPORTS[2]
    long_b = REPORTS[2] + " Additional findings beyond the first tokens change nothing."
    with caplog.at_level(logging.WARNING):
        first = enc.encode([long_a, long_b, "short"])
    assert enc.last_truncated == 2 and "2 of 3 texts are longer than 12 tokens" in caplog.text
    np.testing.assert_array_equal(first[0], first[1])                 # same head -> same vector
    np.testing.assert_array_equal(enc.encode([long_a, long_b, "short"]), first)     # same call, same bits
    np.testing.assert_allclose(enc.encode([long_a])[0], first[0], atol=1e-5)      # alone: same up to padding
    assert enc.last_truncated == 1
    np.testing.assert_allclose(first[0], last_hidden(reference, long_a, 12)[0], atol=1e-5)
    enc.encode(["short"])
    assert enc.last_truncated == 0


def test_token_states_have_the_tokenizer_lengths(reference, hf_cls, st_cls):
    tokenizer = reference[0]
    for enc in (hf_cls, st_cls):
        toks = enc.encode_tokens(REPORTS, batch_size=3)
        assert [t.shape for t in toks] == [(len(tokenizer(r)["input_ids"]), 384) for r in REPORTS]
        for text, t in zip(REPORTS, toks):
            np.testing.assert_allclose(t, last_hidden(reference, text, enc.max_length), atol=1e-5)
    short = build_text_encoder("hf", path=default_minilm_path(), device="cpu", max_length=10)
    assert [t.shape[0] for t in short.encode_tokens(REPORTS)] == [10, min(10, len(tokenizer(REPORTS[1])["input_ids"])), 10]
    assert short.encode_tokens([]) == []


def test_option_errors():
    with pytest.raises(ConfigError, match="pooling must be one of"):
        build_text_encoder("hf", path=default_minilm_path(), pooling="max")
    with pytest.raises(ConfigError, match="max_length"):
        build_text_encoder("hf", path=default_minilm_path(), max_length=0)
    with pytest.raises(ConfigError, match="exceeds the model's 512 positions"):
        build_text_encoder("hf", path=default_minilm_path(), device="cpu", max_length=1024)
    with pytest.raises(ConfigError, match=r"pooling must be one of \['cls'\]"):
        build_text_encoder("conch", pooling="mean")         # refused before any file is looked at
