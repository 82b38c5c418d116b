from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.ml.errors import GenerationInputError, ModelUnavailable
from generation.ml.metrics import (
    clip_evaluate,
    clip_image_features,
    clip_image_similarity,
    clip_scores,
    fid,
    get_clip,
    kid,
)


def test_kid_and_fid_are_near_zero_for_one_set_and_positive_for_shifted_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    a /= np.linalg.norm(a, axis=1, keepdims=True)  # unit vectors, like CLIP features
    same_kid, _ = kid(a, a.copy(), subset_size=100, num_subsets=20)
    assert abs(same_kid) < 5e-3  # unbiased estimator: ~0, may dip below
    assert fid(a, a.copy()) == pytest.approx(0.0, abs=1e-6)
    shifted = a + 0.1
    kid_mean, kid_std = kid(a, shifted, subset_size=100, num_subsets=20)
    assert kid_mean > 0.01 and kid_mean > 5 * abs(same_kid) and kid_std >= 0
    assert fid(a, shifted) == pytest.approx(16 * 0.01, rel=1e-3)  # ||mu shift||^2
    assert fid(a, a * 2) > 0.5  # same mean, different covariance
    with pytest.raises(GenerationInputError):
        fid(a, a[:, :8])


def test_clip_scores_and_image_similarity_on_the_tiny_clip(tiny_clip):
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), (0, 0, 255))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), "uint8"))
    scores = clip_scores(tiny_clip, [red, blue], ["a red painting", "a blue sea"])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 100))
    assert clip_image_similarity(tiny_clip, [red], [red]) == pytest.approx(1.0, abs=1e-5)
    assert clip_image_similarity(tiny_clip, [red], [noise]) < 0.999
    feats = clip_image_features(tiny_clip, [red, blue, noise])
    assert feats.shape == (3, 32)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    clip = get_clip(tiny_clip)
    cos = np.sum(feats[:2] * clip.text_features(["a red painting", "a blue sea"]), axis=1)
    assert np.allclose(scores, np.maximum(100 * cos, 0), atol=1e-3)  # the documented convention
    report = clip_evaluate(tiny_clip, [red, blue], ["a red painting", "a blue sea"], [red])
    assert "tiny-clip" in report["backbone"] and report["n_images"] == 2
    assert report["clip_t"] == pytest.approx(float(scores.mean()), abs=1e-4)
    assert report["clip_i"] == pytest.approx(
        clip_image_similarity(tiny_clip, [red, blue], [red]), abs=1e-6
    )
    with pytest.raises(GenerationInputError):
        clip_scores(tiny_clip, [red], ["a", "b"])


def test_missing_clip_model_names_the_setting(tmp_path):
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_CLIP_MODEL"):
        clip_scores(tmp_path / "nope", [Image.new("RGB", (8, 8))], ["x"])
