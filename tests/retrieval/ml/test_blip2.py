"""The tiny BLIP-2 retrieval model: build, reload from disk, and the Blip2Embedder on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.stand_in import MARKER as TINY_MARKER
from mlcore.stand_in import is_tiny
from retrieval.ml.embedders import (
    Blip2Embedder,
    max_token_scores,
    pool_tokens,
)
from retrieval.ml.errors import EmbedderError, ModelUnavailable
from retrieval.ml.tiny import build_tiny_blip2_retrieval

from .helpers import make_images


def test_tiny_build_writes_a_marked_complete_model(tiny_blip2_dir):
    names = {p.name for p in tiny_blip2_dir.iterdir()}
    assert {"config.json", "preprocessor_config.json", "vocab.txt", TINY_MARKER} <= names
    assert any(name.endswith(".safetensors") for name in names)
    marker = json.loads((tiny_blip2_dir / TINY_MARKER).read_text())
    assert marker["tiny"] is True and marker["kind"] == "blip2-retrieval"
    assert is_tiny(tiny_blip2_dir)
    assert not is_tiny(tiny_blip2_dir.parent)
    assert not is_tiny("Salesforce/blip2-itm-vit-g")


def test_tiny_build_is_idempotent(tiny_blip2_dir):
    weights = next(tiny_blip2_dir.glob("*.safetensors"))
    before = weights.stat().st_mtime_ns
    assert build_tiny_blip2_retrieval(tiny_blip2_dir) == tiny_blip2_dir
    assert weights.stat().st_mtime_ns == before


def test_tokenizer_reloaded_from_disk_knows_art_words(tiny_blip2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_blip2_dir)
    for word in ("painting", "portrait", "monet", "cubism", "harbour", "the"):
        token_id = tokenizer.convert_tokens_to_ids(word)
        assert token_id != tokenizer.unk_token_id, word
    ids = tokenizer("A Portrait painting by Monet")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_text_embeddings_shape_norm_determinism(blip2, tiny_blip2_dir):
    texts = ["a portrait of a woman", "a harbour with boats", "cubism still life", ""]
    vectors = blip2.embed_texts(texts)
    assert vectors.shape == (4, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A second instance, loaded afresh from disk, gives the same vectors; order of the
    # inputs does not matter (batches are sorted by length internally).
    again = Blip2Embedder(str(tiny_blip2_dir)).embed_texts(texts[::-1], batch_size=2)[::-1]
    np.testing.assert_allclose(again, vectors, atol=1e-5)
    cosines = vectors @ vectors.T
    assert cosines[0, 1] < 0.999 and cosines[0, 2] < 0.999 and cosines[1, 2] < 0.999


def test_text_vector_is_the_cls_output(blip2):
    import torch

    tokens = blip2._tokenizer(["monet landscape"], return_tensors="pt")
    with torch.no_grad():
        out = blip2._text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).text_embeds
    np.testing.assert_allclose(
        blip2.embed_texts(["monet landscape"])[0], out[0, 0].numpy(), atol=1e-5
    )


def test_image_embeddings_shape_norm_and_pooling(blip2):
    images = make_images(5)
    vectors = blip2.embed_images(images, batch_size=2)
    assert vectors.shape == (5, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(blip2.embed_images(images[:1]), vectors[:1], atol=1e-5)
    off_diagonal = (vectors @ vectors.T)[~np.eye(5, dtype=bool)]
    assert off_diagonal.max() < 0.99  # different pictures, different vectors

    tokens = blip2.embed_image_tokens(images)
    assert tokens.shape == (5, 32, 256)
    np.testing.assert_allclose(np.linalg.norm(tokens, axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(pool_tokens(tokens, "mean"), vectors, atol=1e-5)
    # The 32 query tokens are distinct (the pooling choice is not vacuous).
    assert (tokens[0] @ tokens[0].T)[~np.eye(32, dtype=bool)].min() < 0.99


def test_max_token_scores_reproduce_blip2_itc_logits(blip2, tiny_blip2_dir):
    import torch
    from transformers import Blip2ForImageTextRetrieval

    model = Blip2ForImageTextRetrieval.from_pretrained(tiny_blip2_dir).eval()
    images = make_images(3, seed=4)
    texts = ["a portrait of a lady", "a harbour at night"]
    pixels = blip2._image_processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = blip2._tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        itc = model(
            pixel_values=pixels,
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            use_image_text_matching_head=False,
        ).logits_per_image  # (images, texts)
    ours = max_token_scores(blip2.embed_texts(texts), blip2.embed_image_tokens(images))
    np.testing.assert_allclose(ours.T, itc.numpy(), atol=1e-4)


def test_pooling_options(tiny_blip2_dir):
    images = make_images(2, seed=1)
    first = Blip2Embedder(str(tiny_blip2_dir), image_pooling="first")
    tokens = first.embed_image_tokens(images)
    np.testing.assert_allclose(first.embed_images(images), tokens[:, 0, :], atol=1e-5)
    with pytest.raises(ValueError, match="image_pooling"):
        Blip2Embedder(str(tiny_blip2_dir), image_pooling="median")


def test_bad_inputs_raise_embedder_error(blip2):
    with pytest.raises(EmbedderError, match="PIL"):
        blip2.embed_images([np.zeros((8, 8, 3), dtype=np.uint8)])
    with pytest.raises(EmbedderError, match="single string"):
        blip2.embed_texts("a painting")
    with pytest.raises(EmbedderError, match="expected str"):
        blip2.embed_texts(["ok", 3])
    assert blip2.embed_texts([]).shape == (0, 256)
    assert blip2.embed_images([]).shape == (0, 256)


def test_missing_folder_raises_model_unavailable_naming_the_setting(tmp_path):
    missing = tmp_path / "no-such-model"
    embedder = Blip2Embedder(str(missing), setting="MYTHRAGEN_RETRIEVAL_MODEL")
    with pytest.raises(ModelUnavailable) as info:
        embedder.embed_texts(["a painting"])
    message = str(info.value)
    assert str(missing) in message and "MYTHRAGEN_RETRIEVAL_MODEL" in message
    assert "build_tiny_models" in message


def test_hub_id_offline_raises_model_unavailable():
    embedder = Blip2Embedder("nobody-here/no-such-blip2", setting="MYTHRAGEN_RETRIEVAL_MODEL")
    with pytest.raises(ModelUnavailable) as info:
        embedder.load()
    message = str(info.value)
    assert "'nobody-here/no-such-blip2'" in message
    assert "Set MYTHRAGEN_RETRIEVAL_MODEL to a local folder" in message
    assert info.value.__cause__ is not None


def test_checkpoint_without_itc_projections_is_refused(tmp_path, tiny_blip2_dir):
    """A BLIP-2 captioning checkpoint must not be served with random projections."""
    import shutil

    import torch
    from transformers import Blip2Config, Blip2Model

    config = Blip2Config.from_pretrained(tiny_blip2_dir)
    torch.manual_seed(0)
    folder = tmp_path / "blip2-captioning"
    Blip2Model(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny_blip2_dir / name, folder / name)
    with pytest.raises(ModelUnavailable, match="not a BLIP-2 image-text retrieval checkpoint"):
        Blip2Embedder(str(folder)).embed_texts(["a painting"])
