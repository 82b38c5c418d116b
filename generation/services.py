"""Writes for generation: requests, retrieval sets, the LoRA cache, training, rendering.

The only layer that translates between the ORM and `generation.ml` (which never sees
Django). A request becomes a `Generation` with a `jobs.Job`; three Celery tasks carry it:

    prepare (queue celery)   retrieve the two sets, key their LoRAs, look them up in the cache
    train   (queue training) train the LoRAs that are missing (resumes from checkpoints)
    render  (queue rendering) mix the LoRAs, render, write the PNG with provenance

Each task hands the job to the next with `jobs.services.job_requeue` + `job_enqueue`; every
job state write goes through `jobs.services`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from catalog.filters import ArtworkFilter
from catalog.models import Artwork
from catalog.selectors import artwork_image_load
from generation.ml.provenance import prompt_for_parameters
from generation.models import Generation, LoraCacheEntry, LoraKind, LoraStatus
from jobs import services as jobs
from jobs.models import ACTIVE_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

GENERATION_JOB = "generation"
# Bump when a change to training or rendering code changes what a LoRA or image would be:
# it is part of every LoRA key and of every image's provenance.
GENERATION_CODE_VERSION = "gen-1"
# A task redelivered this many times for one phase (its worker died each time) gives up.
MAX_PHASE_ATTEMPTS = 3
# Without a job (a command) waiting for another's training polls this often.
LORA_WAIT_POLL_SECONDS = 2.0
HEARTBEAT_SECONDS = 5.0

# Request limits: the form, the API and the command all validate against these.
MAX_PROMPT = 500
SEED_MAX = 2**32 - 1
STEPS_MAX = 150
GUIDANCE_MAX = 30.0
SIZE_MIN, SIZE_MAX = 64, 1024
K_MAX = 50
WEIGHT_MIN, WEIGHT_MAX = -2.0, 2.0
# Catalog filters that choose a sub-collection to retrieve from (see catalog.filters).
FILTER_NAMES = (
    "artist",
    "style",
    "genre",
    "has_genre",
    "label_source",
    "split",
    "year_min",
    "year_max",
)
SET_SLOTS = {LoraKind.ARTIST_STYLE: ("artist", "style"), LoraKind.GENRE_STYLE: ("genre", "style")}

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
    from generation.ml.render import SAMPLERS

    return list(SAMPLERS)


def code_version() -> str:
    """The code version recorded in LoRA keys and provenance."""
    from generation.ml.lora_train import METADATA_FORMAT

    try:
        package = metadata.version("mythragen")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        package = "dev"
    return f"mythragen-{package}/{GENERATION_CODE_VERSION}/{METADATA_FORMAT}"


# --------------------------------------------------------------------------- requests


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


# --------------------------------------------------------------------------- retrieval sets


def _label_phrase(slot: str, name: str) -> str:
    """A phrase the prompt parser resolves back to this label (styles/genres use spaces)."""
    return name.replace("_", " ")


def retrieval_sets_build(prompt: str, k: int, filters: dict | None = None) -> dict:
    """The paper's Fig. 5 retrieval sets: top-k artworks for artist+style and for genre+style.

    The prompt is parsed once; each set's query is its resolved attribute names followed by
    the prompt's remaining content, searched within the sub-collection (artworks with
    images only: LoRAs train on images). A set whose attributes the prompt does not name
    falls back to the whole prompt.
    """
    from retrieval import selectors as retrieval

    scope = {**(filters or {}), "has_image": "true"}
    try:
        base = retrieval.artwork_search(prompt, k=k, filters=scope)
    except retrieval.SearchInputError as exc:
        raise GenerationRequestError(str(exc)) from exc
    parsed = base.parsed
    matched = {m.slot: m for m in (parsed.matches if parsed else [])}
    content = parsed.content if parsed else prompt
    sets = {}
    for kind, slots in SET_SLOTS.items():
        present = [matched[s] for s in slots if s in matched]
        missing = [s for s in slots if s not in matched]
        if present:
            query = ", ".join([*(_label_phrase(m.slot, m.name) for m in present), content]).strip(
                ", "
            )
            result = retrieval.artwork_search(query, k=k, filters=scope)
        else:
            query, result = prompt, base
        if not result.hits:
            raise GenerationRequestError(
                {"filters": ["no artwork with an image to retrieve in this sub-collection"]}
            )
        sets[str(kind)] = {
            "query": query,
            "attributes": {m.slot: m.name for m in present},
            # Said on the page: a set whose attributes the prompt does not name is not what
            # its name promises ("artist + style" with no artist is a style set).
            "missing": missing,
            "artworks": [[h.artwork.pk, round(float(h.score), 6)] for h in result.hits],
        }
    return {
        "parsed": {
            "content": content,
            "matches": {slot: m.name for slot, m in matched.items()},
            "evidence": {m.slot: m.evidence for m in matched.values()},
            "messages": parsed.messages if parsed else [],
        },
        "index_version": base.index_version,
        "model_id": base.model_id,
        "is_tiny": base.is_tiny,
        "sets": sets,
    }


def baseline_prompt_for(generation: Generation) -> str:
    """The prompt-only baseline: the content "in the style of" the resolved attributes."""
    parsed = generation.retrieval.get("parsed") or {}
    matches = parsed.get("matches") or {}
    names = [
        _label_phrase(slot, matches[slot])
        for slot in ("artist", "style", "genre")
        if slot in matches
    ]
    content = parsed.get("content") or ""
    if not names or not content:
        return generation.prompt
    return f"{content}, in the style of {', '.join(names)}"


# --------------------------------------------------------------------------- the LoRA cache


def lora_dir() -> Path:
    return Path(settings.LORA_DIR)


def training_config_current():
    """Training settings from the environment (the paper's defaults)."""
    from generation.ml.lora_train import LoraTrainingConfig

    return LoraTrainingConfig(
        rank=settings.LORA_RANK,
        alpha=settings.LORA_ALPHA,
        max_train_steps=settings.LORA_STEPS,
        resolution=settings.LORA_RESOLUTION,
        train_text_encoder=settings.LORA_TRAIN_TEXT_ENCODER,
        optimizer=settings.LORA_OPTIMIZER,
        checkpoint_every=settings.LORA_CHECKPOINT_EVERY,
    )


def _key_settings(training: dict) -> dict:
    """Settings that change the weights (how often checkpoints are written does not)."""
    return {k: v for k, v in training.items() if k != "checkpoint_every"}


def artwork_caption(artwork: Artwork) -> str:
    """The caption an artwork trains with: its caption (or title) and its labels."""
    parts = [
        artwork.caption or artwork.title,
        f"by {artwork.artist.name}",
        artwork.style.display_name,
    ]
    if artwork.genre_id:
        parts.append(artwork.genre.display_name)
    return ", ".join(p for p in parts if p)


def _examples_digest(artworks: list[Artwork]) -> str:
    rows = [(a.pk, a.image.name, artwork_caption(a)) for a in sorted(artworks, key=lambda a: a.pk)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def lora_key(
    artwork_ids, examples_digest: str, training: dict, base_fingerprint: str, version: str
) -> str:
    """The cache key: sorted artwork ids (+ their images and captions), settings, model, code."""
    payload = {
        "artworks": sorted(int(i) for i in artwork_ids),
        "examples": examples_digest,
        "training": _key_settings(training),
        "base_model": base_fingerprint,
        "code": version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _artworks(ids) -> list[Artwork]:
    found = Artwork.objects.select_related("artist", "style", "genre").in_bulk(list(ids))
    missing = [i for i in ids if i not in found]
    if missing:
        raise GenerationRequestError(f"artworks {missing} are no longer in the catalog")
    without = [i for i in ids if not found[i].image]
    if without:
        raise GenerationRequestError(f"artworks {without} have no image to train on")
    return [found[i] for i in ids]


def base_model_fingerprint() -> str:
    from generation.ml._common import model_fingerprint

    return model_fingerprint(settings.SD_MODEL)


def sd_is_tiny() -> bool:
    from mlcore.stand_in import is_tiny

    return is_tiny(settings.SD_MODEL)


def lora_entry_for(kind: str, retrieval_set: dict, training: dict) -> LoraCacheEntry:
    """The cache entry for a retrieval set (created as pending when the key is new)."""
    ids = sorted(int(a) for a, _score in retrieval_set["artworks"])
    artworks = _artworks(ids)
    version = code_version()
    key = lora_key(ids, _examples_digest(artworks), training, base_model_fingerprint(), version)
    attributes = retrieval_set.get("attributes") or {}
    entry, _created = LoraCacheEntry.objects.get_or_create(
        key=key,
        defaults={
            "kind": kind,
            "label": ", ".join(_label_phrase(s, n) for s, n in attributes.items())[:300],
            "artwork_ids": ids,
            "training_settings": training,
            "base_model": str(settings.SD_MODEL),
            "base_model_fingerprint": base_model_fingerprint(),
            "code_version": version,
            "is_tiny": sd_is_tiny(),
        },
    )
    return entry


def lora_path(entry: LoraCacheEntry) -> Path:
    return lora_dir() / "loras" / f"{entry.key}.safetensors"


def lora_is_ready(entry: LoraCacheEntry) -> bool:
    """A cache hit: READY with its file on disk (a file removed by hand counts as evicted)."""
    entry.refresh_from_db()
    if entry.status != LoraStatus.READY:
        return False
    if lora_path(entry).is_file():
        return True
    lora_evict(entry)  # its exports go with it
    return False


class LoraBusy(Exception):
    """Another job is training this LoRA (its claim is alive)."""

    def __init__(self, entry: LoraCacheEntry) -> None:
        self.entry = entry
        super().__init__(
            f"waiting for LoRA {entry.key[:12]} (being trained by job #{entry.training_job_id})"
        )


def _lora_claim(entry: LoraCacheEntry, job_id: int | None) -> bool:
    """Take the right to train `entry`: free, failed, evicted, ours, a stale claim, or the
    claim of a job that is over (cancelled or failed while its worker was gone)."""
    now = timezone.now()
    stale = now - timezone.timedelta(seconds=settings.GEN_STALE_SECONDS)
    free = Q(status__in=[LoraStatus.PENDING, LoraStatus.FAILED, LoraStatus.EVICTED])
    ours_or_stale = Q(status=LoraStatus.TRAINING) & (
        Q(training_job_id=job_id)
        | Q(heartbeat_at__lt=stale)
        | Q(heartbeat_at__isnull=True)
        | Q(training_job__status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
    )
    return bool(
        LoraCacheEntry.objects.filter(pk=entry.pk)
        .filter(free | ours_or_stale)
        .update(status=LoraStatus.TRAINING, training_job_id=job_id, heartbeat_at=now, error="")
    )


def _lora_claimable(entry: LoraCacheEntry) -> bool:
    """Whether nobody holds a live training claim on `entry` now."""
    entry.refresh_from_db()
    return entry.status != LoraStatus.TRAINING or (
        entry.training_job_id is not None
        and not Job.objects.filter(pk=entry.training_job_id, status__in=ACTIVE_STATUSES).exists()
    )


def _lora_claim_beat(entry: LoraCacheEntry) -> None:
    """Keep a training claim alive: one silent for GEN_STALE_SECONDS is taken over."""
    LoraCacheEntry.objects.filter(pk=entry.pk, status=LoraStatus.TRAINING).update(
        heartbeat_at=timezone.now()
    )


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


def _image_name(generation: Generation, verdict: dict | None, suffix: str = "") -> str:
    """A result's file name; a flagged image's carries a random token. Media files are
    served without a permission check, so a guessable name (id + seed, both public) would
    hand the withheld image to anyone who tries it."""
    import secrets

    token = f"-{secrets.token_hex(16)}" if verdict and verdict["flagged"] else ""
    return f"{generation.pk}-{generation.seed}{suffix}{token}.png"


def lora_train(
    entry: LoraCacheEntry,
    *,
    job_id: int | None,
    report: Report | None = None,
    stage: str = "training",
    wait: bool = True,
) -> LoraCacheEntry:
    """Train the LoRA of a cache entry unless it is ready (or being trained by another job).

    Resumes from the newest checkpoint in `LORA_DIR/work/<key>`. Latents and text
    embeddings are cached in `LORA_DIR/features`, shared by every LoRA. Cancellation (the
    reporter raises `JobCancelled`) saves a checkpoint first. Raises `JobCancelled` or the
    training error; a failure marks the entry failed, so the next request retrains it.
    When another job is training it: waits for it, or with `wait=False` raises `LoraBusy`
    at once (a job then waits in the queue, see `generation_train`). However training
    ends, the jobs waiting for this LoRA are sent again at once.
    """
    from generation.ml.errors import TrainingCancelled
    from generation.ml.lora_train import LoraTrainingConfig, TrainingExample, train_lora
    from retrieval.services import ml_device

    report = report or (lambda *a, **k: None)
    while True:
        if lora_is_ready(entry):
            return entry
        if _lora_claim(entry, job_id):
            break
        entry.refresh_from_db()
        if not wait:
            raise LoraBusy(entry)
        report(0, 0, str(LoraBusy(entry)))
        time.sleep(LORA_WAIT_POLL_SECONDS)

    cancelled = False
    last_beat = [time.monotonic()]

    def progress(step: int, total: int) -> None:
        nonlocal cancelled
        loading.stop()  # the first step reports: steps keep the job and the claim alive
        now = time.monotonic()
        if now - last_beat[0] > HEARTBEAT_SECONDS:
            last_beat[0] = now
            _lora_claim_beat(entry)
        try:
            report(step, total, f"{stage}: step {step}/{total}")
        except jobs.JobCancelled:
            cancelled = True

    # Until the first step: loading the model and caching latents report nothing.
    loading = jobs.job_heartbeat(
        job_id,
        f"{stage}: loading model {settings.SD_MODEL}, caching latents",
        on_beat=lambda: _lora_claim_beat(entry),
    )
    try:
        loading.start()
        report(0, 0, f"caching: latents and text embeddings ({stage})")
        artworks = _artworks(entry.artwork_ids)
        examples = [
            TrainingExample(
                artwork_image_load(a.image.name),
                artwork_caption(a),
                f"artwork-{a.pk}-{a.image.name}",
            )
            for a in artworks
        ]
        config = LoraTrainingConfig.from_dict(entry.training_settings)
        config.checkpoint_every = settings.LORA_CHECKPOINT_EVERY
        renderer = renderer_get()
        # Reuse the worker's loaded pipeline (no second copy of the model) when it is fp32.
        pipeline = renderer.load().pipe if renderer.precision == "float32" else None
        result = train_lora(
            settings.SD_MODEL,
            examples,
            lora_path(entry),
            config,
            work_dir=lora_dir() / "work" / entry.key,
            cache_dir=lora_dir() / "features",
            device=ml_device(),
            progress=progress,
            should_stop=lambda: cancelled,
            pipeline=pipeline,
            setting_name="MYTHRAGEN_SD_MODEL",
        )
    except TrainingCancelled as exc:
        LoraCacheEntry.objects.filter(pk=entry.pk).update(
            status=LoraStatus.PENDING, training_job=None, heartbeat_at=None
        )
        _lora_waiters_wake(entry)  # one of them trains it now, from the checkpoint
        raise jobs.JobCancelled(str(exc)) from exc
    except BaseException as exc:
        LoraCacheEntry.objects.filter(pk=entry.pk).update(
            status=LoraStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000], heartbeat_at=None
        )
        _lora_waiters_wake(entry)
        raise
    finally:
        loading.stop()
    info = asdict(result)
    info["output_path"] = str(result.output_path)
    info["checkpoints"] = len(result.checkpoints)
    LoraCacheEntry.objects.filter(pk=entry.pk).update(
        status=LoraStatus.READY,
        file=str(lora_path(entry).relative_to(lora_dir())),
        size_bytes=lora_path(entry).stat().st_size,
        trained_at=timezone.now(),
        heartbeat_at=None,
        train_info=info,
        error="",
    )
    shutil.rmtree(lora_dir() / "work" / entry.key, ignore_errors=True)  # checkpoints done
    _lora_waiters_wake(entry)
    entry.refresh_from_db()
    lora_cache_evict()
    return entry


def _lora_waiters_wake(entry: LoraCacheEntry) -> int:
    """Send at once the generations waiting in the queue for this LoRA's training."""
    try:
        waiting = Generation.objects.filter(
            Q(lora_artist_style=entry) | Q(lora_genre_style=entry),
            phase=Generation.Phase.TRAIN,
            job__status=JobStatus.QUEUED,
            job__wait_until__isnull=False,
        ).values_list("job_id", flat=True)
        return jobs.job_wake(list(waiting))
    except Exception:  # noqa: BLE001 - never mask training's outcome: they wake by time too
        logger.exception("could not wake the jobs waiting for LoRA %s", entry.key[:12])
        return 0


def lora_use(entries: list[LoraCacheEntry]) -> None:
    now = timezone.now()
    LoraCacheEntry.objects.filter(pk__in=[e.pk for e in entries]).update(
        uses=F("uses") + 1, last_used_at=now
    )


def lora_export_paths(entry: LoraCacheEntry) -> list[Path]:
    """The entry's export files on disk (diffusers and kohya downloads)."""
    return sorted((lora_dir() / "exports").glob(f"{entry.key}-*.safetensors"))


def lora_disk_bytes(entry: LoraCacheEntry) -> int:
    """What the entry takes on disk: its file and its exports (counted in the budget)."""
    files = [lora_path(entry), *lora_export_paths(entry)]
    return sum(f.stat().st_size for f in files if f.is_file())


def lora_evict(entry: LoraCacheEntry) -> int:
    """Delete an entry's file, exports and any checkpoints; the row stays, marked evicted."""
    freed = 0
    for path in [lora_path(entry), *lora_export_paths(entry)]:
        if path.is_file():
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    shutil.rmtree(lora_dir() / "work" / entry.key, ignore_errors=True)
    LoraCacheEntry.objects.filter(pk=entry.pk).update(status=LoraStatus.EVICTED, size_bytes=0)
    return freed


@dataclass
class EvictReport:
    budget_bytes: int
    before_bytes: int
    after_bytes: int
    evicted: list[str] = field(default_factory=list)
    kept_in_use: int = 0


def lora_cache_size() -> int:
    return (
        LoraCacheEntry.objects.filter(status=LoraStatus.READY).aggregate(s=Sum("size_bytes"))["s"]
        or 0
    )


def lora_cache_evict(budget_bytes: int | None = None, *, keep=()) -> EvictReport:
    """Evict least-recently-used LoRAs until the cache fits the budget.

    `budget_bytes=None` uses MYTHRAGEN_LORA_CACHE_BUDGET_MB (0 there means no limit).
    LoRAs of queued or running generations are never evicted, nor those in `keep` (ids).
    Sizes count each LoRA's exports too (`lora_disk_bytes`).
    """
    if budget_bytes is None:
        budget_bytes = settings.LORA_CACHE_BUDGET_MB * 1024 * 1024
        if budget_bytes <= 0:
            size = lora_cache_size()
            return EvictReport(0, size, size)
    before = total = lora_cache_size()
    report = EvictReport(budget_bytes, before, before)
    active = Generation.objects.filter(job__status__in=ACTIVE_STATUSES)
    in_use = (
        set(active.values_list("lora_artist_style_id", flat=True))
        | set(active.values_list("lora_genre_style_id", flat=True))
        | set(keep)
    )
    candidates = LoraCacheEntry.objects.filter(status=LoraStatus.READY).order_by(
        F("last_used_at").asc(nulls_first=True), "created_at"
    )
    for entry in candidates:
        if total <= budget_bytes:
            break
        if entry.pk in in_use:
            report.kept_in_use += 1
            continue
        total -= entry.size_bytes
        lora_evict(entry)
        report.evicted.append(entry.key)
    report.after_bytes = lora_cache_size()
    return report


def lora_public_name(entry: LoraCacheEntry) -> str:
    """The LoRA's name outside MythraGen: the stem of its kohya download, its kohya
    `ss_output_name`, and the name in `<lora:NAME:W>` of every PNG it rendered."""
    return f"mythragen-{entry.kind}-{entry.key[:12]}"


def lora_download_name(entry: LoraCacheEntry, fmt: str) -> str:
    """The download's file name: `<public name>.safetensors` for kohya (what A1111 and
    ComfyUI load, so the PNG's tags resolve), `<public name>-diffusers.safetensors`."""
    suffix = "" if fmt == "kohya" else f"-{fmt}"
    return f"{lora_public_name(entry)}{suffix}.safetensors"


def _export_current(out: Path, source: Path, fmt: str, name: str) -> bool:
    if not out.is_file() or out.stat().st_mtime < source.stat().st_mtime:
        return False
    if fmt != "kohya":
        return True
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:  # the header only
        meta = f.metadata() or {}
    return meta.get("ss_output_name") == name and bool(meta.get("sshs_model_hash"))


def lora_export(entry: LoraCacheEntry, fmt: str) -> Path:
    """The LoRA as a file other tools load: "diffusers" or "kohya" (A1111/ComfyUI names).

    Exports are cached beside the LoRA, count toward the cache budget (the entry's
    `size_bytes` is its file plus its exports) and are deleted with it.
    """
    from generation.ml.lora_train import export_lora

    if not lora_is_ready(entry):
        raise GenerationStateError("This LoRA is not in the cache (evicted or not trained).")
    if fmt not in ("diffusers", "kohya"):
        raise GenerationRequestError({"as": ["use diffusers or kohya"]})
    out = lora_dir() / "exports" / f"{entry.key}-{fmt}.safetensors"
    source = lora_path(entry)
    name = lora_public_name(entry)
    if not _export_current(out, source, fmt, name):
        export_lora(source, fmt, out, name=name)
        LoraCacheEntry.objects.filter(pk=entry.pk, status=LoraStatus.READY).update(
            size_bytes=lora_disk_bytes(entry)
        )
        lora_cache_evict(keep={entry.pk})
    return out


def lora_kohya_hash(entry: LoraCacheEntry) -> str:
    """A1111's short hash (12 hex, "AutoV3") of the LoRA's kohya download, as its PNGs'
    "Lora hashes" give it; the full hash is the file's `sshs_model_hash`."""
    from safetensors import safe_open

    from generation.ml.provenance import lora_short_hash

    with safe_open(str(lora_export(entry, "kohya")), framework="pt") as f:
        return lora_short_hash((f.metadata() or {})["sshs_model_hash"])


_MODEL_HASHES: dict[str, str | None] = {}


def base_model_hash() -> str | None:
    """A1111's `Model hash` of the base model (see generation.ml.provenance.model_hash),
    once per process and version of its files; None when its files cannot be found."""
    from generation.ml.provenance import model_hash

    fingerprint = base_model_fingerprint()
    if fingerprint not in _MODEL_HASHES:
        path = Path(str(settings.SD_MODEL))
        if not path.exists():
            try:  # a hub id: its snapshot in the local cache, if there is one
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(str(settings.SD_MODEL), local_files_only=True))
            except Exception:  # noqa: BLE001 - no local copy: no hash, nothing else lost
                path = None
        _MODEL_HASHES[fingerprint] = model_hash(path) if path else None
    return _MODEL_HASHES[fingerprint]


# --------------------------------------------------------------------------- the job's phases


def generation_phase_due(generation_id: int, job_id: int, phase: str) -> bool:
    """Whether a task for `phase` of this job has anything to do: not when the generation
    moved to another job (retried), the job is finished, or the phase is already done.
    Writes nothing (the claim in `jobs.services.job_running` decides who runs it)."""
    generation = Generation.objects.select_related("job").filter(pk=generation_id).first()
    if generation is None or generation.job_id != job_id or generation.phase != phase:
        return False
    return generation.job.status in ACTIVE_STATUSES


def generation_phase_begin(generation_id: int, job_id: int, phase: str) -> bool:
    """Start `phase` of a claimed job: whether to run it now.

    No when it is not due (`generation_phase_due`). A phase started `MAX_PHASE_ATTEMPTS`
    times (its worker died every time) fails the job with that reason.
    """
    if not generation_phase_due(generation_id, job_id, phase):
        return False
    Generation.objects.filter(pk=generation_id).update(phase_attempts=F("phase_attempts") + 1)
    attempts = Generation.objects.values_list("phase_attempts", flat=True).get(pk=generation_id)
    if attempts > MAX_PHASE_ATTEMPTS:
        jobs.job_fail(
            job_id,
            f"Gave up on the {phase} step after {MAX_PHASE_ATTEMPTS} attempts: its worker "
            "stopped (crashed, killed or out of memory) each time. Retry once the workers are "
            "healthy; training resumes from its last checkpoint.",
        )
        return False
    return True


def _hand_over(generation: Generation, phase: str, stage: str) -> None:
    """Queue the job for its next phase. The phase, the job's state and the next task's
    message are written in one transaction and the message is sent after the commit: a
    worker that dies in between leaves a queued job whose message `job_resend_unsent`
    sends, never a job waiting for a message nobody will send."""
    from generation.tasks import generation_render_task, generation_train_task

    task = generation_train_task if phase == Generation.Phase.TRAIN else generation_render_task
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(phase=phase, phase_attempts=0)
        jobs.job_requeue(generation.job_id, stage)
        jobs.job_enqueue(generation.job, task, generation.pk)


def _entries(generation: Generation) -> list[tuple[LoraCacheEntry, float]]:
    """(entry, weight) for the two sets; the same LoRA twice is one LoRA with the summed
    weight (LoRA deltas add linearly, so this renders the same)."""
    merged: dict[int, list] = {}
    for entry, weight in (
        (generation.lora_artist_style, generation.weight_artist_style),
        (generation.lora_genre_style, generation.weight_genre_style),
    ):
        if entry is None:
            continue
        if entry.pk in merged:
            merged[entry.pk][1] += weight
        else:
            merged[entry.pk] = [entry, weight]
    return [(e, max(-2.0, min(2.0, w))) for e, w in merged.values()]


def generation_prepare(generation_id: int, report: Report) -> str:
    """Phase 1: retrieve the sets (unless pinned), key their LoRAs, hand over the job."""
    generation = Generation.objects.select_related("job").get(pk=generation_id)
    report(0, 2, "retrieving")
    retrieval = dict(generation.retrieval or {})
    if not retrieval.get("sets"):
        retrieval = retrieval_sets_build(generation.prompt, generation.k, generation.filters)
    retrieval.setdefault("training", training_config_current().to_dict())
    generation.retrieval = retrieval
    generation.save(update_fields=["retrieval"])
    report(1, 2, "caching: looking up the LoRA cache")
    entries = {
        kind: lora_entry_for(kind, retrieval["sets"][kind], retrieval["training"])
        for kind in (LoraKind.ARTIST_STYLE, LoraKind.GENRE_STYLE)
    }
    generation.lora_artist_style = entries[LoraKind.ARTIST_STYLE]
    generation.lora_genre_style = entries[LoraKind.GENRE_STYLE]
    generation.baseline_prompt = baseline_prompt_for(generation)[:800]
    generation.save(update_fields=["lora_artist_style", "lora_genre_style", "baseline_prompt"])
    missing = [e for e, w in _entries(generation) if w != 0 and not lora_is_ready(e)]
    report(2, 2, "caching: looking up the LoRA cache")
    if missing:
        _hand_over(generation, Generation.Phase.TRAIN, f"queued for training ({len(missing)} LoRA)")
        return Generation.Phase.TRAIN
    _hand_over(generation, Generation.Phase.RENDER, "queued for rendering (LoRA cache hit)")
    return Generation.Phase.RENDER


def generation_train(generation_id: int, report: Report) -> dict:
    """Phase 2: train the missing LoRAs of the generation, then hand over to rendering.

    A LoRA that another job is training is not waited for here: the job goes back to the
    queue (`jobs.services.job_defer`), freeing this worker, and is sent again when that
    training ends (`_lora_waiters_wake`) or after GEN_LORA_WAIT_SECONDS at the latest.
    """
    generation = Generation.objects.select_related(
        "job", "lora_artist_style", "lora_genre_style"
    ).get(pk=generation_id)
    todo = [e for e, w in _entries(generation) if w != 0 and not lora_is_ready(e)]
    for n, entry in enumerate(todo, start=1):
        try:
            lora_train(
                entry,
                job_id=generation.job_id,
                report=report,
                stage=f"training {n}/{len(todo)} ({entry.get_kind_display()})",
                wait=False,
            )
        except LoraBusy as busy:
            # Waiting is no failed attempt: the phase starts afresh when it is sent again.
            Generation.objects.filter(pk=generation_id).update(phase_attempts=0)
            jobs.job_defer(generation.job_id, str(busy), settings.GEN_LORA_WAIT_SECONDS)
            if lora_is_ready(entry) or _lora_claimable(entry):
                _lora_waiters_wake(entry)  # it ended while we deferred: go again now
            return {"waiting_for": entry.key}
    _hand_over(generation, Generation.Phase.RENDER, "queued for rendering")
    return {"trained": [e.key for e in todo]}


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


def provenance_build(
    generation: Generation, loras: list[tuple[LoraCacheEntry, float]], **extra
) -> dict:
    """Everything needed to re-run an image exactly (stored in the DB and the PNG).

    Public: it is shown with the image and written into its PNG, so server paths read as
    their last component (`config.public.scrub`). LoRAs carry the name and hash of their
    kohya download (`lora_public_name`, `lora_kohya_hash`), the model its A1111 hash, so
    A1111 and ComfyUI resolve what the PNG's "parameters" name.
    """
    from config.public import scrub

    retrieval = generation.retrieval or {}
    return scrub(
        {
            "mythragen": 1,
            "generation_id": generation.pk,
            "prompt": generation.prompt,
            "negative_prompt": generation.negative_prompt,
            "seed": generation.seed,
            "sampler": generation.sampler,
            "steps": generation.steps,
            "guidance": generation.guidance,
            "width": generation.width,
            "height": generation.height,
            "k": generation.k,
            "weights": {
                "artist_style": generation.weight_artist_style,
                "genre_style": generation.weight_genre_style,
            },
            "filters": generation.filters,
            "base_model": str(settings.SD_MODEL),
            "base_model_fingerprint": base_model_fingerprint(),
            "base_model_hash": base_model_hash(),
            "loras": [
                {
                    "name": entry.adapter_name,
                    "file": lora_public_name(entry),
                    "hash": lora_kohya_hash(entry),
                    "key": entry.key,
                    "kind": entry.kind,
                    "label": entry.label,
                    "weight": weight,
                }
                for entry, weight in loras
            ],
            "retrieved": {
                kind: [{"artwork_id": a, "score": s} for a, s in data["artworks"]]
                for kind, data in (retrieval.get("sets") or {}).items()
            },
            "retrieval": retrieval,
            "code_version": code_version(),
            "created_at": timezone.now().isoformat(),
            **extra,
        }
    )


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
    mixed = [(e, w) for e, w in _entries(generation) if w != 0]
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
        loras=[(e.adapter_name, lora_path(e), w) for e, w in mixed],
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
    _save_png(generation.image, _image_name(generation, verdict), result.image, provenance)
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
            _image_name(generation, base_verdict, "-baseline"),
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


__all__ = [
    "GenerationParams",
    "GenerationRequestError",
    "GenerationLimitError",
    "GenerationStateError",
    "generation_request",
    "generation_cancel",
    "generation_retry",
    "generation_rerun",
    "lora_cache_evict",
    "lora_export",
]
