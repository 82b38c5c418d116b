"""Stable Diffusion's safety checker, run on rendered images without touching them.

`StableDiffusionSafetyChecker.forward` blacks out the images it flags and returns only a
flag per image. Here the image is never altered (the caller keeps the original and decides
who may see it) and the scores come back too: `check` runs the checker's CLIP vision tower
and projection, then applies exactly the rule of `forward` to the cosine similarities
(17 concepts and 3 "special care" concepts, each with its threshold; a special-care hit
lowers every later threshold by 0.01; scores rounded to 3 decimals; any concept score
above 0 flags the image). A test checks that the flags agree with `forward`'s
`has_nsfw_concepts`.

The image processor is transformers' PIL backend (`CLIPImageProcessorPil`): torchvision
is not usable beside this torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from mlcore.errors import ModelInputError
from mlcore.role import ModelRole, RoleRegistry

from ._common import quiet_ml_logs

DEFAULT_MODEL = "CompVis/stable-diffusion-safety-checker"


@dataclass(frozen=True)
class SafetyResult:
    """The checker's verdict on one image.

    `concept_scores` / `special_scores`: similarity minus threshold for each concept (as
    `forward` computes them); `bad_concepts` (indices with a score above 0) make the image
    `flagged`; `special_care` lists the special-care concepts that were hit.
    """

    flagged: bool
    bad_concepts: list[int] = field(default_factory=list)
    special_care: list[int] = field(default_factory=list)
    concept_scores: list[float] = field(default_factory=list)
    special_scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _verdict(special_cos, concept_cos, special_thresholds, concept_thresholds) -> SafetyResult:
    """`StableDiffusionSafetyChecker.forward`'s rule for one image (float32 like forward)."""
    adjustment = 0.0
    special_scores, special_care = [], []
    for idx, (cos, threshold) in enumerate(zip(special_cos, special_thresholds, strict=True)):
        score = round(cos - threshold + adjustment, 3)
        special_scores.append(float(score))
        if score > 0:
            special_care.append(idx)
            adjustment = 0.01
    concept_scores, bad = [], []
    for idx, (cos, threshold) in enumerate(zip(concept_cos, concept_thresholds, strict=True)):
        score = round(cos - threshold + adjustment, 3)
        concept_scores.append(float(score))
        if score > 0:
            bad.append(idx)
    return SafetyResult(
        flagged=bool(bad),
        bad_concepts=bad,
        special_care=special_care,
        concept_scores=concept_scores,
        special_scores=special_scores,
    )


class SafetyChecker(ModelRole):
    """`StableDiffusionSafetyChecker` + its CLIP image processor; `check(images)`."""

    what = "safety checker"
    cuda_precision = "float16"

    def _load(self) -> None:
        self.check_local()
        quiet_ml_logs()
        try:
            from diffusers.pipelines.stable_diffusion.safety_checker import (
                StableDiffusionSafetyChecker,
            )
            from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

            model = StableDiffusionSafetyChecker.from_pretrained(self.model_id, dtype=self.dtype)
            model.to(self.device).eval()
            processor = CLIPImageProcessorPil.from_pretrained(self.model_id)
        except Exception as exc:  # noqa: BLE001 - one meaning for callers: checker unusable
            raise self.unavailable(f"{type(exc).__name__}: {exc}", exc) from exc
        self._model = model
        self._model_processor = processor

    def check(self, images: Sequence) -> list[SafetyResult]:
        """One `SafetyResult` per PIL image, in order; the images are left as they are."""
        from PIL import Image

        images = list(images)
        for image in images:
            if not isinstance(image, Image.Image):
                raise ModelInputError(
                    f"the safety checker takes PIL images, not {type(image).__name__}"
                )
        if not images:
            return []
        self.load()
        import torch
        from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

        model = self._model
        with self._lock:
            pixels = self._model_processor(
                images=[image.convert("RGB") for image in images], return_tensors="pt"
            ).pixel_values
            with torch.inference_mode():
                clip_input = pixels.to(device=self.device, dtype=self.dtype)
                pooled = model.vision_model(clip_input)[1]
                embeds = model.visual_projection(pooled)
                special = cosine_distance(embeds, model.special_care_embeds).cpu().float().numpy()
                concepts = cosine_distance(embeds, model.concept_embeds).cpu().float().numpy()
                special_thresholds = [w.item() for w in model.special_care_embeds_weights]
                concept_thresholds = [w.item() for w in model.concept_embeds_weights]
        return [
            _verdict(special[i], concepts[i], special_thresholds, concept_thresholds)
            for i in range(len(images))
        ]


_registry = RoleRegistry()


def get_safety_checker(
    model_id: str = DEFAULT_MODEL,
    *,
    device: str | None = "cpu",
    precision: str = "auto",
    setting: str | None = None,
) -> SafetyChecker:
    """The process-wide checker for (model, device, precision): loaded once per worker."""
    key = (str(model_id), str(device), precision)
    return _registry.get(
        key, lambda: SafetyChecker(model_id, device=device, precision=precision, setting=setting)
    )


def clear_safety_checkers() -> None:
    """Forget every registered checker (tests; a worker reloading settings)."""
    _registry.clear()
