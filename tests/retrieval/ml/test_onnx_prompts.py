"""Prompt encoding through ONNX Runtime: the same vectors as PyTorch, exported once."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml import onnx_text
from retrieval.ml.embedders import MiniLMEmbedder
from retrieval.ml.errors import EmbedderError

PROMPTS = ["belle ile rain effect", "a harbour at dawn by Claude Monet, impressionism", "x"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def onnx_minilm(_offline_single_thread, onnx_dir):
    return MiniLMEmbedder(prompt_runtime="onnxruntime", onnx_dir=onnx_dir).load()


def test_onnx_prompts_equal_pytorchs_and_batches_stay_on_pytorch(onnx_minilm, minilm, onnx_dir):
    encoder = onnx_minilm._prompt_encoder
    assert isinstance(encoder, onnx_text.OnnxPromptEncoder)
    assert [p.name for p in onnx_dir.iterdir()] == [encoder.path.name]
    reference = minilm._model.encode(PROMPTS, normalize_embeddings=True, convert_to_numpy=True)
    got = onnx_minilm.embed_texts(PROMPTS)  # one padded batch of three, through ONNX
    np.testing.assert_allclose(got, reference, atol=1e-5)
    np.testing.assert_allclose(onnx_minilm.embed_texts(PROMPTS[:1]), reference[:1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Beyond 8 texts (catalog embedding) the PyTorch batches run, with the same vectors.
    many = [f"{p} {i}" for i in range(4) for p in PROMPTS]
    np.testing.assert_allclose(
        onnx_minilm.embed_texts(many), minilm.embed_texts(many, batch_size=2), atol=1e-5
    )


def test_the_export_is_reused_and_a_damaged_one_is_redone(onnx_minilm, onnx_dir):
    path = onnx_minilm._prompt_encoder.path
    before = path.stat().st_mtime_ns
    again = MiniLMEmbedder(prompt_runtime="onnxruntime", onnx_dir=onnx_dir).load()
    assert again._prompt_encoder.path == path and path.stat().st_mtime_ns == before
    path.write_bytes(b"not an onnx model")
    redone = MiniLMEmbedder(prompt_runtime="onnxruntime", onnx_dir=onnx_dir).load()
    assert path.stat().st_size > 1_000_000
    np.testing.assert_allclose(
        redone.embed_texts(PROMPTS), onnx_minilm.embed_texts(PROMPTS), atol=1e-6
    )


def test_a_session_that_disagrees_with_pytorch_is_refused(onnx_minilm, onnx_dir, monkeypatch):
    monkeypatch.setattr(onnx_text, "TOLERANCE", -1.0)  # any difference at all is too much
    embedder = MiniLMEmbedder(prompt_runtime="onnxruntime", onnx_dir=onnx_dir)
    with pytest.raises(EmbedderError, match="RETRIEVAL_PROMPT_RUNTIME"):
        embedder.load()


def test_a_runtime_that_cannot_load_the_export_is_a_clear_error(onnx_minilm, onnx_dir, monkeypatch):
    import onnxruntime

    def refuse(*args, **kwargs):
        raise RuntimeError("no such execution provider")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    embedder = MiniLMEmbedder(prompt_runtime="onnxruntime", onnx_dir=onnx_dir)
    with pytest.raises(EmbedderError, match="cannot load.*RETRIEVAL_PROMPT_RUNTIME"):
        embedder.load()


def test_unknown_runtime_and_unsupported_pipelines():
    with pytest.raises(EmbedderError, match="prompt runtime"):
        MiniLMEmbedder(prompt_runtime="tensorrt")

    class Transformer:
        auto_model = object()

    class Pooling:
        pooling_mode = "cls"

    with pytest.raises(onnx_text.Unsupported, match="pooling 'cls'"):
        onnx_text._pipeline([Transformer(), Pooling()])
    with pytest.raises(onnx_text.Unsupported, match="modules"):
        onnx_text._pipeline([Transformer()])
