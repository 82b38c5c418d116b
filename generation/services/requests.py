"""Requests: what a user may ask for, its validation, and the life of a request
(submit, re-run, retry, cancel) up to the job that carries it (`phases`).

Also the errors every generation service raises (`GenerationRequestError` and kin) and the
clean-up of image files no finished generation owns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from catalog.filters import SUBCOLLECTION_FILTERS, ArtworkFilter
from catalog.models import Artwork
from generation.ml.provenance import prompt_for_parameters
from generation.models import Generation
from jobs import services as jobs
from jobs.models import ACTIVE_STATUSES, Job, JobStatus

GENERATION_JOB = "generation"

# Request limits: the form, the API and the command all validate against these.
MAX_PROMPT = 500
SEED_MAX = 2**32 - 1
STEPS_MAX = 150
GUIDANCE_MAX = 30.0
SIZE_MIN, SIZE_MAX = 64, 1024
K_MAX = 50
WEIGHT_MIN, WEIGHT_MAX = -2.0, 2.0
# Catalog filters that choose a sub-collection to retrieve from: the catalog's own
# (catalog.filters), less has_image (LoRAs train on images: retrieval adds it).
FILTER_NAMES = tuple(n for n in SUBCOLLECTION_FILTERS if n != "has_image")

Report = Callable[..., None]


class GenerationRequestError(ValueError):
    """A request that cannot be accepted as asked; `errors` maps fields to messages."""

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        if isinstance(errors, str):
            errors = {"detail": [errors]}
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


class GenerationLimitError(GenerationRequestError):
    """The user already has the maximum number of queued or running generations."""


class GenerationStateError(GenerationRequestError):
    """The generation is not in a state that allows this (e.g. retrying a running one)."""


def samplers() -> list[str]:
    """The sampler names a request may ask for (`generation.ml.render.SAMPLERS`)."""
    from generation.ml.render import SAMPLERS

    return list(SAMPLERS)


@dataclass
class GenerationParams:
    """What a user asks for; `generation_params_check` is the one validator."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float = 7.5
    width: int | None = None
    height: int | None = None
    sampler: str = "ddim"
    k: int | None = None
    weight_artist_style: float = 0.6
    weight_genre_style: float = 0.4
    filters: dict = field(default_factory=dict)
    with_baseline: bool = True
    # A prompt naming an artist the catalog lacks is refused unless this is set: the
    # artist + style LoRA would be trained with no artist (`prompt_unknown_artists`).
    allow_unknown_names: bool = False


def generation_defaults() -> dict:
    """What an omitted request field becomes: the one source of the form's initial values,
    the API's and the `generate` command's defaults (size, steps and k from the settings,
    which `make run` writes to `.env` for the demo's tiny model)."""
    defaults = {
        f.name: f.default
        for f in fields(GenerationParams)
        if f.default is not MISSING and f.default is not None and f.name != "prompt"
    }
    defaults.update(
        steps=settings.GEN_STEPS,
        width=settings.GEN_SIZE,
        height=settings.GEN_SIZE,
        k=settings.GEN_K,
    )
    return defaults


def prompt_unknown_artists(prompt: str) -> list[str]:
    """What the prompt parser says about artists the prompt names and the catalog lacks
    (or names ambiguously), one message each."""
    from retrieval.selectors import prompt_parser

    return [u.message for u in prompt_parser().parse(prompt).unknown if u.slot == "artist"]


def _check_int(errors, name, value, lo, hi) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        errors.setdefault(name, []).append("must be an integer")
    elif not lo <= value <= hi:
        errors.setdefault(name, []).append(f"must be between {lo} and {hi}")


def sub_collection(filters: Mapping | None):
    """Artworks with an image in the sub-collection `filters` selects (catalog filters)."""
    data = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    unknown = sorted(set(data) - set(FILTER_NAMES))
    if unknown:
        raise GenerationRequestError(
            {"filters": [f"unknown filter(s) {', '.join(unknown)}; use {', '.join(FILTER_NAMES)}"]}
        )
    artwork_filter = ArtworkFilter(data, queryset=Artwork.objects.exclude(image=""))
    if not artwork_filter.is_valid():
        raise GenerationRequestError(
            {f"filters.{k}": [str(m) for m in v] for k, v in artwork_filter.errors.items()}
        )
    return artwork_filter.qs


def generation_params_check(params: GenerationParams) -> GenerationParams:
    """Fill defaults and validate every field; raise GenerationRequestError listing all errors."""
    errors: dict[str, list[str]] = {}
    # Stored as the PNG's A1111 text gives it back (markers defused, same CLIP tokens).
    params.prompt = prompt_for_parameters((params.prompt or "").strip())
    params.negative_prompt = prompt_for_parameters((params.negative_prompt or "").strip())
    if params.seed is None:
        params.seed = int.from_bytes(os.urandom(4), "big")
    params.steps = settings.GEN_STEPS if params.steps is None else params.steps
    params.width = settings.GEN_SIZE if params.width is None else params.width
    params.height = settings.GEN_SIZE if params.height is None else params.height
    params.k = settings.GEN_K if params.k is None else params.k
    params.filters = {k: v for k, v in (params.filters or {}).items() if v not in (None, "")}
    if not params.prompt:
        errors["prompt"] = ["the prompt is empty"]
    elif len(params.prompt) > MAX_PROMPT:
        errors["prompt"] = [f"at most {MAX_PROMPT} characters"]
    if len(params.negative_prompt) > MAX_PROMPT:
        errors["negative_prompt"] = [f"at most {MAX_PROMPT} characters"]
    _check_int(errors, "seed", params.seed, 0, SEED_MAX)
    _check_int(errors, "steps", params.steps, 1, STEPS_MAX)
    _check_int(errors, "k", params.k, 1, K_MAX)
    for name in ("width", "height"):
        value = getattr(params, name)
        _check_int(errors, name, value, SIZE_MIN, SIZE_MAX)
        if name not in errors and value % 8:
            errors[name] = ["must be a multiple of 8"]
    if not isinstance(params.guidance, int | float) or not 0 <= params.guidance <= GUIDANCE_MAX:
        errors["guidance"] = [f"must be between 0 and {GUIDANCE_MAX:g}"]
    for name in ("weight_artist_style", "weight_genre_style"):
        value = getattr(params, name)
        if not isinstance(value, int | float) or not WEIGHT_MIN <= value <= WEIGHT_MAX:
            errors[name] = [f"must be between {WEIGHT_MIN:g} and {WEIGHT_MAX:g}"]
    if params.sampler not in samplers():
        errors["sampler"] = [f"unknown sampler; use one of {', '.join(samplers())}"]
    try:
        if not sub_collection(params.filters).exists():
            errors["filters"] = ["no artwork with an image in this sub-collection"]
    except GenerationRequestError as exc:
        errors.update(exc.errors)
    if "prompt" not in errors and not params.allow_unknown_names:
        unknown = prompt_unknown_artists(params.prompt)
        if unknown:
            errors["prompt"] = [
                *unknown,
                "Name an artist of the catalog (or none), or generate anyway: the artist + "
                "style LoRA is then trained without that artist.",
            ]
    if errors:
        raise GenerationRequestError(errors)
    params.guidance = float(params.guidance)
    params.weight_artist_style = float(params.weight_artist_style)
    params.weight_genre_style = float(params.weight_genre_style)
    return params


def generation_sweep_stale() -> int:
    """Resume generation jobs whose worker is gone; mark the ones that stopped reporting
    (a hung worker) as failed."""
    return jobs.job_fail_stale(settings.GEN_STALE_SECONDS, kinds=[GENERATION_JOB])


def _check_queue_limit(user) -> None:
    if user is None:
        return  # the command line (an operator) is not limited
    # Lock the user's row so two simultaneous requests cannot both pass the check.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    active = Generation.objects.filter(user=user, job__status__in=ACTIVE_STATUSES).count()
    if active >= settings.GEN_MAX_QUEUED:
        raise GenerationLimitError(
            {
                "detail": [
                    f"You already have {active} generation(s) queued or running (the limit is "
                    f"{settings.GEN_MAX_QUEUED}); wait for one to finish or cancel one."
                ]
            }
        )


def _job_for(generation: Generation, user) -> Job:
    from generation.tasks import generation_prepare_task

    job = jobs.job_create(GENERATION_JOB, params={"generation_id": generation.pk}, user=user)
    jobs.job_enqueue(job, generation_prepare_task, generation.pk)
    return job


def generation_request(
    user,
    params: GenerationParams,
    *,
    pinned: dict | None = None,
    rerun_of: Generation | None = None,
) -> Generation:
    """Validate, check the user's queue limit, record the request and queue its job.

    `pinned`: retrieval sets (and training settings) to reuse instead of retrieving, as a
    re-run does, so it trains and renders exactly what the original did.
    """
    params = generation_params_check(params)
    generation_sweep_stale()
    generation_files_sweep()
    with transaction.atomic():
        _check_queue_limit(user)
        generation = Generation.objects.create(
            user=user,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            seed=params.seed,
            steps=params.steps,
            guidance=params.guidance,
            width=params.width,
            height=params.height,
            sampler=params.sampler,
            k=params.k,
            weight_artist_style=params.weight_artist_style,
            weight_genre_style=params.weight_genre_style,
            filters=params.filters,
            with_baseline=params.with_baseline,
            retrieval=pinned or {},
            rerun_of=rerun_of,
        )
        generation.job = _job_for(generation, user)
        generation.save(update_fields=["job"])
    return generation


def generation_params_of(generation: Generation) -> GenerationParams:
    """The request a generation was made from (a re-run asks for it again)."""
    return GenerationParams(
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        seed=generation.seed,
        steps=generation.steps,
        guidance=generation.guidance,
        width=generation.width,
        height=generation.height,
        sampler=generation.sampler,
        k=generation.k,
        weight_artist_style=generation.weight_artist_style,
        weight_genre_style=generation.weight_genre_style,
        filters=dict(generation.filters),
        with_baseline=generation.with_baseline,
        allow_unknown_names=True,  # its retrieval sets are pinned: no name is read again
    )


def generation_rerun(generation: Generation, user) -> Generation:
    """A new request with the same parameters, seed, retrieval sets and training settings."""
    if not generation.retrieval.get("sets"):
        raise GenerationStateError("This generation never got as far as retrieval: retry it.")
    return generation_request(
        user,
        generation_params_of(generation),
        pinned=generation.retrieval,
        rerun_of=generation,
    )


def generation_from_provenance(provenance: dict, user=None) -> Generation:
    """Re-run the generation a PNG's provenance describes (see `python manage.py generate`)."""
    try:
        params = GenerationParams(
            prompt=provenance["prompt"],
            negative_prompt=provenance.get("negative_prompt", ""),
            seed=int(provenance["seed"]),
            steps=int(provenance["steps"]),
            guidance=float(provenance["guidance"]),
            width=int(provenance["width"]),
            height=int(provenance["height"]),
            sampler=provenance["sampler"],
            k=int(provenance["k"]),
            weight_artist_style=float(provenance["weights"]["artist_style"]),
            weight_genre_style=float(provenance["weights"]["genre_style"]),
            filters=provenance.get("filters") or {},
            with_baseline=False,
            allow_unknown_names=True,  # the retrieval sets are pinned
        )
        pinned = provenance["retrieval"]
    except (KeyError, TypeError, ValueError) as exc:
        raise GenerationRequestError(f"not a MythraGen provenance record ({exc})") from exc
    return generation_request(user, params, pinned=pinned)


def generation_cancel(generation: Generation) -> Generation:
    """Cancel a queued generation at once, a running one at its next step (training saves a
    checkpoint first, so a retry loses nothing). A cancelled generation keeps no image."""
    if generation.job_id:
        jobs.job_cancel_request(generation.job)
    generation.refresh_from_db()
    if generation.status == JobStatus.CANCELLED:
        generation_files_discard(generation)
    return generation


def generation_files_discard(generation: Generation) -> int:
    """Delete the image files of a generation that did not finish (failed, cancelled, or a
    render that stopped half-way) and forget them; how many files were deleted."""
    deleted = 0
    for image in (generation.image, generation.baseline_image):
        if image.name and image.storage.exists(image.name):
            image.storage.delete(image.name)
            deleted += 1
    if generation.image.name or generation.baseline_image.name:
        Generation.objects.filter(pk=generation.pk).update(image="", baseline_image="")
        generation.image.name = generation.baseline_image.name = ""
    return deleted


def generation_files_sweep() -> int:
    """Delete the files of every failed or cancelled generation that still has some (its
    worker died after writing them, before the job could say so); how many."""
    leftover = (
        Generation.objects.filter(job__status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .exclude(image="", baseline_image="")
        .select_related("job")
    )
    return sum(generation_files_discard(g) for g in leftover)


def generation_retry(generation: Generation, user=None) -> Generation:
    """Run a failed or cancelled generation again under a new job (old job kept in history).

    Retrieval sets already found are reused, LoRAs already trained are cache hits and a
    half-trained LoRA resumes from its newest checkpoint.
    """
    job = generation.job
    if job is not None and job.status in ACTIVE_STATUSES:
        raise GenerationStateError("This generation is still queued or running.")
    if job is not None and job.status == JobStatus.SUCCEEDED:
        raise GenerationStateError("This generation succeeded; use re-run for a new one.")
    generation_files_discard(generation)  # a half-finished render's files, if any
    with transaction.atomic():
        _check_queue_limit(generation.user)
        generation.phase = Generation.Phase.RETRIEVE
        generation.phase_attempts = 0
        generation.job = _job_for(generation, user or generation.user)
        generation.save(update_fields=["phase", "phase_attempts", "job"])
    return generation
