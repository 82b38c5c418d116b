"""The tiny BLIP-2 model: built from configs, saved, reloaded from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelling.ml.errors import LabellingInputError
from labelling.ml.tiny import (
    WIKIART_GENRE_TEXTS,
    build_tiny_blip2_vqa,
)
from mlcore.stand_in import MARKER as TINY_MARKER
from mlcore.stand_in import is_tiny


def test_marker_makes_is_tiny_true(tiny_blip2, tmp_path):
    marker = json.loads((Path(tiny_blip2) / TINY_MARKER).read_text())
    assert marker["tiny"] is True
    assert marker["kind"] == "blip2-vqa"
    assert "meaningless" in marker["note"]
    assert is_tiny(tiny_blip2)
    assert is_tiny(Path(tiny_blip2))
    assert not is_tiny(tmp_path)
    assert not is_tiny("Salesforce/blip2-opt-2.7b")


def test_reloads_from_disk_with_real_classes(tiny_blip2):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2)
    processor = Blip2Processor.from_pretrained(tiny_blip2)
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil"
    assert processor.num_query_tokens == model.config.num_query_tokens
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == model.config.image_token_index
    assert model.config.text_config.vocab_size == len(processor.tokenizer)


def test_reloaded_tokenizer_knows_the_genre_words(tiny_blip2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_blip2)
    unk = tokenizer.unk_token_id
    landscape = tokenizer(" landscape", add_special_tokens=False).input_ids
    assert landscape == [tokenizer.convert_tokens_to_ids("Ġlandscape")]
    assert landscape[0] != unk
    # Every genre word, and the question's words, are whole tokens (one id per word).
    words = {w for g in WIKIART_GENRE_TEXTS for w in g.split()} | {"genre", "painting", "what"}
    for word in words:
        ids = tokenizer(" " + word, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != unk, word
    # OPT style: a BOS (</s>) starts every text.
    ids = tokenizer("Question: What is the genre of this painting? Answer:").input_ids
    assert ids[0] == tokenizer.bos_token_id == tokenizer.convert_tokens_to_ids("</s>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == (
        "Question: What is the genre of this painting? Answer:"
    )


def test_build_is_idempotent(tiny_blip2):
    weights = Path(tiny_blip2) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_blip2_vqa(Path(tiny_blip2)) == Path(tiny_blip2)
    assert weights.stat().st_mtime_ns == before


def test_build_is_deterministic_and_leaves_global_rng_alone(tiny_blip2, tmp_path):
    import torch

    state = torch.random.get_rng_state()
    other = build_tiny_blip2_vqa(tmp_path / "again")
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (other / name).read_bytes() == (Path(tiny_blip2) / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_build_refuses_to_overwrite_a_foreign_folder(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(LabellingInputError, match="refusing"):
        build_tiny_blip2_vqa(target)
    assert (target / "notes.txt").read_text() == "keep me"
