"""The safety checker role on its tiny stand-in: the real diffusers/transformers classes,
saved and reloaded from disk; verdicts without touching the images; forward's rule."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.ml.safety import SafetyChecker, SafetyResult, get_safety_checker
from generation.ml.tiny import build_tiny_safety_checker
from mlcore.errors import ModelInputError, ModelUnavailable
from mlcore.stand_in import stand_in_info


@pytest.fixture(scope="module")
def checkers(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("safety")
    return {
        flags: build_tiny_safety_checker(root / f"tiny-safety-{flags}", flags=flags)
        for flags in ("never", "always")
    }


def _images(n: int = 6) -> list[Image.Image]:
    """Varied small pictures (gradients in different colours and directions, blocks)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        y, x = np.mgrid[0:48, 0:64]
        ramp = (x if i % 2 else y) / 64.0
        rgb = np.stack([ramp * c for c in rng.uniform(0, 1, 3)], axis=-1)
        rgb[8:24, 8 + 4 * i : 24 + 4 * i] = rng.uniform(0, 1, 3)
        out.append(Image.fromarray((rgb * 255).astype("uint8")))
    return out


def test_tiny_checker_is_marked_idempotent_and_reloads(checkers):
    path = checkers["always"]
    info = stand_in_info(path)
    assert info["kind"] == "safety-checker" and info["size"] == "tiny"
    assert info["flags"] == "always"
    assert (path / "preprocessor_config.json").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_safety_checker(path, flags="always") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    with pytest.raises(ValueError, match="flags"):
        build_tiny_safety_checker(path, flags="sometimes")

    checker = SafetyChecker(path, setting="MYTHRAGEN_SAFETY_CHECKER_MODEL")
    assert checker.is_tiny and checker.precision == "float32" and not checker.loaded
    checker.load()
    assert checker.loaded and type(checker._model).__name__ == "StableDiffusionSafetyChecker"
    checker.unload()
    assert not checker.loaded and checker._model is None
    assert get_safety_checker(path) is get_safety_checker(path)  # one per process


def test_verdicts_leave_the_images_untouched(checkers):
    images = _images(3)
    before = [np.asarray(im).copy() for im in images]
    flagged = SafetyChecker(checkers["always"]).check(images)
    clean = SafetyChecker(checkers["never"]).check(images)
    assert all(isinstance(r, SafetyResult) for r in flagged + clean)
    assert [r.flagged for r in flagged] == [True] * 3
    assert [r.flagged for r in clean] == [False] * 3
    assert all(r.bad_concepts == list(range(17)) for r in flagged)
    assert all(r.bad_concepts == [] and len(r.concept_scores) == 17 for r in clean)
    assert all(len(r.special_scores) == 3 for r in clean)
    for image, pixels in zip(images, before, strict=True):
        assert (np.asarray(image) == pixels).all()  # never blacked out
    assert set(flagged[0].as_dict()) >= {"flagged", "bad_concepts", "concept_scores"}
    assert SafetyChecker(checkers["never"]).check([]) == []


@pytest.mark.parametrize("special_care", [False, True])
def test_flags_agree_with_diffusers_forward(checkers, special_care):
    """Thresholds between the images' similarities: some flagged, some not, as forward says."""
    import torch

    checker = SafetyChecker(checkers["never"]).load()
    model = checker._model
    images = _images(6)
    pixels = checker._model_processor(images=images, return_tensors="pt").pixel_values
    unit = torch.nn.functional.normalize
    with torch.no_grad():
        embeds = unit(model.visual_projection(model.vision_model(pixels)[1]))
        cos = embeds @ unit(model.concept_embeds).T
        special = embeds @ unit(model.special_care_embeds).T
        # One threshold for every concept: the median image's best similarity.
        model.concept_embeds_weights.fill_(cos.max(dim=1).values.median().item())
        if special_care:  # a special-care hit lowers every later threshold by 0.01
            model.special_care_embeds_weights.fill_(special.max(dim=1).values.median().item())
    ours = checker.check(images)
    _, has_nsfw = model(pixels, np.zeros((len(images), 48, 64, 3)))
    assert [r.flagged for r in ours] == list(has_nsfw)
    assert 0 < sum(has_nsfw) < len(images)  # the test separates both verdicts
    if special_care:
        assert any(r.special_care for r in ours)


def test_bad_input_and_missing_models_are_clear_errors(checkers, tmp_path):
    checker = SafetyChecker(checkers["never"])
    with pytest.raises(ModelInputError, match="PIL images"):
        checker.check([np.zeros((8, 8, 3))])
    missing = SafetyChecker(tmp_path / "nowhere", setting="MYTHRAGEN_SAFETY_CHECKER_MODEL")
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_SAFETY_CHECKER_MODEL") as caught:
        missing.check(_images(1))
    assert "safety checker" in str(caught.value) and "no such folder" in str(caught.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_SAFETY_CHECKER_MODEL"):
        SafetyChecker(empty, setting="MYTHRAGEN_SAFETY_CHECKER_MODEL").load()
