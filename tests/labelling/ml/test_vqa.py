"""GenreVQA on the tiny BLIP-2 model: probabilities, invariances, a slow reference."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from catalog.demo import GENRES as WIKIART_GENRES  # the real WikiArt genre list
from labelling.ml.errors import LabellingInputError, ModelUnavailable
from labelling.ml.vqa import DEFAULT_QUESTION, GenreVQA, genre_answer_text, get_vqa, softmax


@pytest.fixture(scope="module")
def vqa(tiny_blip2) -> GenreVQA:
    return GenreVQA(tiny_blip2).load()


def test_probabilities_shape_range_and_rows_sum_to_one(vqa, images):
    probs = vqa.score(images, WIKIART_GENRES)
    assert probs.shape == (len(images), len(WIKIART_GENRES))
    assert np.all(probs >= 0) and np.all(probs <= 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(probs))


def test_predict_is_the_argmax(vqa, images):
    probs = vqa.score(images, WIKIART_GENRES)
    predictions = vqa.predict(images, WIKIART_GENRES)
    assert len(predictions) == len(images)
    for (label, confidence, row), expected in zip(predictions, probs, strict=True):
        assert label == WIKIART_GENRES[int(expected.argmax())]  # spelled as given
        assert confidence == pytest.approx(expected.max())
        np.testing.assert_allclose(row, expected)


def test_batched_equals_image_by_image(vqa, images):
    batched = vqa.log_likelihoods(images, WIKIART_GENRES, batch_size=8)
    uneven = vqa.log_likelihoods(images, WIKIART_GENRES, batch_size=2)
    single = np.concatenate([vqa.log_likelihoods([im], WIKIART_GENRES) for im in images])
    np.testing.assert_allclose(uneven, batched, rtol=0, atol=1e-5)
    np.testing.assert_allclose(single, batched, rtol=0, atol=1e-5)


def test_permuting_genres_permutes_columns(vqa, images):
    probs = vqa.score(images, WIKIART_GENRES)
    order = np.random.default_rng(0).permutation(len(WIKIART_GENRES))
    permuted = vqa.score(images, [WIKIART_GENRES[i] for i in order])
    np.testing.assert_allclose(permuted, probs[:, order], rtol=0, atol=1e-6)


def test_subset_of_genres_renormalises_the_same_scores(vqa, images):
    full = vqa.log_likelihoods(images, WIKIART_GENRES)
    subset = vqa.log_likelihoods(images, WIKIART_GENRES[:3])
    np.testing.assert_allclose(subset, full[:, :3], rtol=0, atol=1e-5)


def test_underscores_and_spaces_are_the_same_answer(vqa, images):
    a = vqa.log_likelihoods(images[:2], ["still_life", "sketch_and_study"])
    b = vqa.log_likelihoods(images[:2], ["still life", "sketch  and study"])
    np.testing.assert_array_equal(a, b)
    assert genre_answer_text("religious_painting") == "religious painting"


def test_scores_depend_on_the_image(vqa, images):
    scores = vqa.log_likelihoods(images, WIKIART_GENRES)
    assert np.ptp(scores, axis=0).max() > 1e-3


def _reference_log_likelihood(tiny_blip2, image, genre: str) -> tuple[float, int]:
    """Slow path: the processor's full (image, question + answer) input through forward()."""
    import torch
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2).eval()
    processor = Blip2Processor.from_pretrained(tiny_blip2)
    answer = processor.tokenizer(" " + genre, add_special_tokens=False).input_ids
    inputs = processor(images=[image], text=DEFAULT_QUESTION + " " + genre, return_tensors="pt")
    ids = inputs.input_ids[0]
    assert ids[-len(answer) :].tolist() == answer  # the answer closes the sequence
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    total = sum(logp[len(ids) - len(answer) + j - 1, t].item() for j, t in enumerate(answer))
    return total, len(answer)


@pytest.mark.parametrize("genre", ["sketch_and_study", "portrait"])
def test_matches_a_slow_reference_forward(vqa, tiny_blip2, images, genre):
    text = genre_answer_text(genre)
    expected, n_tokens = _reference_log_likelihood(tiny_blip2, images[1], text)
    assert n_tokens == len(text.split())  # one token per word in the tiny vocab
    summed = vqa.log_likelihoods([images[1]], [genre, "landscape"], length_normalise=False)
    mean = vqa.log_likelihoods([images[1]], [genre, "landscape"], length_normalise=True)
    assert summed[0, 0] == pytest.approx(expected, abs=1e-4)
    assert mean[0, 0] == pytest.approx(expected / n_tokens, abs=1e-4)


def test_length_normalisation_divides_by_answer_tokens(vqa, images):
    genres = ["portrait", "sketch_and_study", "religious_painting"]
    summed = vqa.log_likelihoods(images, genres, length_normalise=False)
    mean = vqa.log_likelihoods(images, genres, length_normalise=True)
    np.testing.assert_allclose(mean * np.array([1, 3, 2]), summed, rtol=1e-12)
    assert not np.allclose(vqa.score(images, genres), vqa.score(images, genres, 8, False))


def test_no_images_gives_an_empty_matrix(vqa):
    assert vqa.score([], WIKIART_GENRES).shape == (0, len(WIKIART_GENRES))
    assert vqa.predict([], WIKIART_GENRES) == []


@pytest.mark.parametrize(
    ("images_arg", "genres", "kwargs"),
    [
        ("ok", [], {}),
        ("ok", ["still_life", "still life"], {}),
        ("ok", ["portrait", "Portrait"], {}),
        ("ok", ["portrait", " _ "], {}),
        ("ok", ["portrait", 3], {}),
        ("ok", "portrait", {}),
        ("ok", ["portrait"], {"batch_size": 0}),
        ([np.zeros((8, 8, 3))], ["portrait"], {}),
        (Image.new("RGB", (8, 8)), ["portrait"], {}),
    ],
)
def test_bad_input_raises(vqa, images_arg, genres, kwargs):
    images = [Image.new("RGB", (8, 8))] if images_arg == "ok" else images_arg
    with pytest.raises(LabellingInputError):
        vqa.score(images, genres, **kwargs)


def test_empty_question_is_refused():
    with pytest.raises(LabellingInputError):
        GenreVQA("whatever", question="  ")


def test_bogus_model_path_names_the_path_and_setting(tmp_path):
    missing = tmp_path / "no-such-model"
    vqa = GenreVQA(str(missing), setting="MYTHRAGEN_VQA_MODEL")
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_VQA_MODEL") as caught:
        vqa.score([Image.new("RGB", (8, 8))], ["portrait"])
    assert str(missing) in str(caught.value)
    assert "captioning/VQA model" in str(caught.value)
    assert not vqa.loaded


def test_registry_returns_one_instance_per_configuration(tiny_blip2):
    assert get_vqa(tiny_blip2) is get_vqa(tiny_blip2)
    assert get_vqa(tiny_blip2) is not get_vqa(tiny_blip2, question="Q: genre? A:")
    assert get_vqa(tiny_blip2).is_tiny


def test_softmax_is_stable_for_very_negative_scores():
    probs = softmax(np.array([[-1e4, -1e4 - 1.0], [0.0, 0.0]]))
    np.testing.assert_allclose(probs, [[1 / (1 + np.e**-1), 1 / (1 + np.e)], [0.5, 0.5]])
