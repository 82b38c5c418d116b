"""Rendering (phase 3 of a generation job): the worker's renderer and safety checker, the
one safety rule, and the PNG files of a result (the image and the prompt-only baseline)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.utils import timezone

from generation.models import Generation
from generation.services.lora_cache import (
    generation_loras,
    lora_adapters,
    lora_is_ready,
    lora_use,
)
from generation.services.provenance import provenance_build
from generation.services.requests import GenerationRequestError, Report, generation_files_discard
from jobs import services as jobs


def renderer_get():
    """The worker's renderer: one pipeline per process, kept loaded between jobs."""
    from generation.ml.render import get_renderer
    from retrieval.services import ml_device

    return get_renderer(
        settings.SD_MODEL,
        device=ml_device(),
        precision=settings.SD_PRECISION,
        setting="MYTHRAGEN_SD_MODEL",
    )


@dataclass(frozen=True)
class SafetyState:
    """Whether rendered images go through Stable Diffusion's safety checker (why not, if off)."""

    on: bool
    model: str
    reason: str = ""

    @property
    def recorded(self) -> str:
        """What provenance and `Generation.safety_checker` record: the model id or "off: why"."""
        return self.model if self.on else f"off: {self.reason}"

    @classmethod
    def from_recorded(cls, recorded: str) -> SafetyState:
        if recorded.startswith("off: "):
            return cls(False, "", recorded.removeprefix("off: "))
        return cls(True, recorded)

    @property
    def note(self) -> str:
        """What pages and the API say."""
        if self.on:
            return f"safety checker on ({self.model})"
        return f"safety checker off: {self.reason}"


def safety_checker_state() -> SafetyState:
    """The one rule: the checker runs on every image unless MYTHRAGEN_SAFETY_CHECKER=off or
    the base model is the tiny stand-in (its noise images are nothing to judge). A real or
    real-size base model always runs it; if the checker cannot load, the render fails."""
    from mlcore.stand_in import is_tiny

    model = str(settings.SAFETY_CHECKER_MODEL)
    if settings.SAFETY_CHECKER == "off":
        return SafetyState(False, model, "MYTHRAGEN_SAFETY_CHECKER=off")
    if is_tiny(settings.SD_MODEL):
        return SafetyState(False, model, "tiny stand-in model")
    return SafetyState(True, model)


def safety_checker_get():
    """The worker's safety checker (one per process), loaded; ModelUnavailable if it can't be."""
    from generation.ml.safety import get_safety_checker
    from retrieval.services import ml_device

    return get_safety_checker(
        settings.SAFETY_CHECKER_MODEL,
        device=ml_device(),
        precision=settings.SD_PRECISION,
        setting="MYTHRAGEN_SAFETY_CHECKER_MODEL",
    ).load()


def image_name(generation: Generation, verdict: dict | None, suffix: str = "") -> str:
    """A result's file name, starting with the generation's id (what
    `selectors.generation_image_for` looks up). A flagged image's also carries a random
    token: the media view checks permission, but a web server or storage that serves the
    folder itself would hand a guessable name (id + seed, both public) to anyone."""
    import secrets

    token = f"-{secrets.token_hex(16)}" if verdict and verdict["flagged"] else ""
    return f"{generation.pk}-{generation.seed}{suffix}{token}.png"


def _save_png(field_file, name: str, image, provenance: dict) -> None:
    from generation.ml.provenance import write_png

    # A file left by an attempt that died before recording it: replace, never orphan it.
    target = field_file.field.generate_filename(field_file.instance, name)
    if field_file.storage.exists(target):
        field_file.storage.delete(target)
    with tempfile.TemporaryDirectory(prefix="mythragen-png-") as tmp:
        path = write_png(image, Path(tmp) / "image.png", provenance)
        with open(path, "rb") as fh:
            field_file.save(name, File(fh), save=False)


def generation_render(generation_id: int, report: Report) -> dict:
    """Phase 3: mix the LoRAs with their weights, render (and the baseline), store PNGs.

    A render that fails or is cancelled leaves no file behind (`generation_files_discard`).
    """
    try:
        return _generation_render(generation_id, report)
    except BaseException:
        generation = Generation.objects.filter(pk=generation_id).first()
        if generation is not None:
            generation_files_discard(generation)
        raise


def _generation_render(generation_id: int, report: Report) -> dict:
    generation = Generation.objects.select_related(
        "job", "lora_artist_style", "lora_genre_style"
    ).get(pk=generation_id)
    mixed = [(e, w) for e, w in generation_loras(generation) if w != 0]
    for entry, _w in mixed:
        if not lora_is_ready(entry):
            raise GenerationRequestError(
                f"LoRA {entry.key[:12]} left the cache before rendering; retry the generation."
            )
    renderer = renderer_get()
    with jobs.job_heartbeat(generation.job_id, f"loading model {settings.SD_MODEL}"):
        renderer.load()
    safety = safety_checker_state()
    # Loaded before rendering: a missing checker fails the job at once, never skipped.
    checker = None
    if safety.on:
        with jobs.job_heartbeat(generation.job_id, f"loading model {safety.model}"):
            checker = safety_checker_get()

    def check(image) -> tuple[dict | None, dict]:
        """The image's verdict (None when off) and its provenance fields."""
        verdict = checker.check([image])[0].as_dict() if checker else None
        return verdict, {
            "safety_checker": safety.recorded,
            "flagged": verdict["flagged"] if verdict else None,
        }

    n_images = 2 if generation.with_baseline else 1
    total = generation.steps * n_images
    common = {
        "negative_prompt": generation.negative_prompt,
        "seed": generation.seed,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "width": generation.width,
        "height": generation.height,
        "sampler": generation.sampler,
    }
    report(0, total, f"rendering 1/{n_images}")
    result = renderer.render(
        generation.prompt,
        loras=lora_adapters(mixed),
        progress=lambda i, n: report(i, total, f"rendering 1/{n_images}: step {i}/{n}"),
        **common,
    )
    extra = {
        "device": renderer.device,
        "dtype": renderer.precision,
        "is_tiny": renderer.is_stand_in,
        "stand_in": (renderer.stand_in or {}).get("size"),
    }
    verdict, checked = check(result.image)
    provenance = provenance_build(generation, mixed, **extra, **checked)
    _save_png(generation.image, image_name(generation, verdict), result.image, provenance)
    generation.safety_checker = safety.recorded[:600]
    generation.image_flagged = bool(verdict and verdict["flagged"])
    generation.baseline_flagged = False
    generation.safety = {"checker": safety.recorded, "image": verdict}
    generation.provenance = provenance
    generation.render_seconds = result.seconds
    if generation.with_baseline:
        baseline = renderer.render(
            generation.baseline_prompt or generation.prompt,
            loras=[],
            progress=lambda i, n: report(
                generation.steps + i, total, f"rendering 2/2 (baseline): step {i}/{n}"
            ),
            **common,
        )
        base_verdict, base_checked = check(baseline.image)
        base_prov = {
            **provenance_build(generation, [], **extra, **base_checked),
            "prompt": generation.baseline_prompt or generation.prompt,
            "baseline_of": generation.pk,
        }
        generation.baseline_flagged = bool(base_verdict and base_verdict["flagged"])
        generation.safety["baseline"] = base_verdict
        _save_png(
            generation.baseline_image,
            image_name(generation, base_verdict, "-baseline"),
            baseline.image,
            base_prov,
        )
    lora_use([e for e, _w in mixed])
    generation.base_model = str(settings.SD_MODEL)[:500]
    generation.is_tiny = renderer.is_stand_in  # any random-weight stand-in, tiny or real-size
    generation.phase = Generation.Phase.DONE
    generation.finished_at = timezone.now()
    generation.save()
    return {
        "generation": generation.pk,
        # (the job's result is shown with the generation: no name of a withheld image)
        "image": None if generation.image_flagged else generation.image.name,
        "baseline_image": None
        if generation.baseline_flagged
        else (generation.baseline_image.name or None),
        "safety_checker": safety.recorded,
        "flagged": {"image": generation.image_flagged, "baseline": generation.baseline_flagged},
        "seconds": round(result.seconds, 3),
        "adapter_load_seconds": round(result.adapter_load_seconds, 3),
        "loras": [e.key for e, _w in mixed],
    }
