"""Captioner on the tiny BLIP-2 model: deterministic greedy captions, clear errors."""

from __future__ import annotations

import pytest
from PIL import Image

from labelling.ml.captioner import DEFAULT_CAPTION_MODEL_ID, Captioner, get_captioner
from labelling.ml.errors import LabellingInputError, ModelUnavailable
from labelling.ml.vqa import GenreVQA
from mlcore.errors import ModelInputError


@pytest.fixture(scope="module")
def captioner(tiny_blip2) -> Captioner:
    return Captioner(tiny_blip2).load()


def test_construction_is_lazy_and_load_idempotent(tiny_blip2):
    captioner = Captioner(tiny_blip2)
    assert not captioner.loaded
    assert captioner.load() is captioner
    loaded = captioner._shared
    captioner.load()
    assert captioner._shared is loaded
    assert captioner.is_tiny
    assert not Captioner(DEFAULT_CAPTION_MODEL_ID).is_tiny  # no load, no network


def test_captions_are_deterministic_strings(captioner, images):
    first = captioner.caption(images, max_new_tokens=8)
    assert len(first) == len(images)
    assert all(isinstance(c, str) and c == c.strip() for c in first)
    assert captioner.caption(images, max_new_tokens=8) == first
    # The tiny model's output head favours whole words, so captions are not empty.
    assert all(first)


def test_batched_and_single_captions_agree(captioner, images):
    batched = captioner.caption(images, max_new_tokens=8, batch_size=8)
    uneven = captioner.caption(images, max_new_tokens=8, batch_size=2)
    single = [captioner.caption([image], max_new_tokens=8)[0] for image in images]
    assert batched == uneven == single


def test_max_new_tokens_bounds_the_caption(captioner, images):
    # Every word the tiny model emits is one token: at most 3 tokens -> at most 3 words.
    captions = captioner.caption(images, max_new_tokens=3)
    assert all(1 <= len(c.split()) <= 3 for c in captions)
    longer = captioner.caption(images, max_new_tokens=8)
    assert all(b.startswith(a) for a, b in zip(captions, longer, strict=True))  # greedy prefix


def test_prompt_is_fed_but_not_returned(captioner, images):
    prompt = "Question: What is this? Answer:"
    captions = captioner.caption(images[:2], max_new_tokens=5, prompt=prompt)
    assert all(c and "Question" not in c and "Answer" not in c for c in captions)
    assert captions == captioner.caption(images[:2], max_new_tokens=5, prompt=prompt)


def test_empty_list_gives_no_captions(captioner):
    assert captioner.caption([]) == []


@pytest.mark.parametrize(
    ("images_arg", "kwargs"),
    [
        (["not an image"], {}),
        (Image.new("RGB", (8, 8)), {}),  # a bare image, not a list
        ([Image.new("RGB", (8, 8))], {"batch_size": 0}),
        ([Image.new("RGB", (8, 8))], {"max_new_tokens": 0}),
    ],
)
def test_bad_input_raises(captioner, images_arg, kwargs):
    with pytest.raises(LabellingInputError):
        captioner.caption(images_arg, **kwargs)


def test_bad_precision_raises():
    with pytest.raises(ModelInputError, match="precision"):
        Captioner("whatever", precision="float8")


def test_bogus_model_path_names_the_path_and_setting(tmp_path):
    missing = tmp_path / "no-such-model"
    captioner = Captioner(str(missing), setting="MYTHRAGEN_VQA_MODEL")
    with pytest.raises(ModelUnavailable) as caught:
        captioner.caption([Image.new("RGB", (8, 8))])
    message = str(caught.value)
    assert str(missing) in message
    assert "MYTHRAGEN_VQA_MODEL" in message
    assert caught.value.setting == "MYTHRAGEN_VQA_MODEL"
    assert caught.value.__cause__ is not None
    assert not captioner.loaded


def test_registry_and_model_sharing(tiny_blip2):
    first = get_captioner(tiny_blip2)
    assert get_captioner(tiny_blip2) is first
    assert get_captioner(tiny_blip2, precision="bfloat16") is not first
    # Captioning and VQA on one checkpoint hold a single copy of the weights.
    vqa = GenreVQA(tiny_blip2).load()
    first.load()
    assert first._shared.model is vqa._shared.model
