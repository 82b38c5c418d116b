"""Writes for generation: the only layer that translates between the ORM and
`generation.ml` (which never sees Django).

A request becomes a `Generation` with a `jobs.Job`; three Celery tasks carry it:

    prepare (queue celery)    retrieve the two sets, key their LoRAs, look them up in the cache
    train   (queue training)  train the LoRAs that are missing (resumes from checkpoints)
    render  (queue rendering) mix the LoRAs, render, write the PNG with provenance

Each task hands the job to the next with `jobs.services.job_requeue` + `job_enqueue`; every
job state write goes through `jobs.services`.

One module per responsibility:

    requests        parameters, validation, limits; request, re-run, retry, cancel; errors
    retrieval_sets  the two retrieval sets (Fig. 5) and the baseline prompt
    lora_cache      keys, entries, training claims, mixing weights, eviction, export
    training        training an entry's LoRA (claim, heartbeat, waking waiting jobs)
    phases          prepare and train phases, hand-over, phase bookkeeping
    rendering       the render phase, renderer and safety checker, PNG files
    provenance      the record written with every image

This package re-exports what the interfaces (views, API, forms, admin, tasks, commands)
call, so they read `services.<name>`; other code imports from the module that owns it.
"""

from generation.services.lora_cache import (
    lora_cache_evict,
    lora_download_name,
    lora_evict,
    lora_export,
    lora_key,
)
from generation.services.phases import (
    generation_phase_begin,
    generation_phase_due,
    generation_prepare,
    generation_train,
)
from generation.services.rendering import SafetyState, generation_render, safety_checker_state
from generation.services.requests import (
    FILTER_NAMES,
    GENERATION_JOB,
    GUIDANCE_MAX,
    K_MAX,
    MAX_PROMPT,
    SEED_MAX,
    SIZE_MAX,
    SIZE_MIN,
    STEPS_MAX,
    WEIGHT_MAX,
    WEIGHT_MIN,
    GenerationLimitError,
    GenerationParams,
    GenerationRequestError,
    GenerationStateError,
    generation_cancel,
    generation_defaults,
    generation_from_provenance,
    generation_params_check,
    generation_request,
    generation_rerun,
    generation_retry,
    samplers,
)

__all__ = [
    "FILTER_NAMES",
    "GENERATION_JOB",
    "GUIDANCE_MAX",
    "K_MAX",
    "MAX_PROMPT",
    "SEED_MAX",
    "SIZE_MAX",
    "SIZE_MIN",
    "STEPS_MAX",
    "WEIGHT_MAX",
    "WEIGHT_MIN",
    "GenerationLimitError",
    "GenerationParams",
    "GenerationRequestError",
    "GenerationStateError",
    "SafetyState",
    "generation_cancel",
    "generation_defaults",
    "generation_from_provenance",
    "generation_params_check",
    "generation_phase_begin",
    "generation_phase_due",
    "generation_prepare",
    "generation_render",
    "generation_request",
    "generation_rerun",
    "generation_retry",
    "generation_train",
    "lora_cache_evict",
    "lora_download_name",
    "lora_evict",
    "lora_export",
    "lora_key",
    "safety_checker_state",
    "samplers",
]
