"""The job's phases: prepare (retrieve, key the LoRAs) and train, the hand-over between
tasks, and the bookkeeping that makes every phase idempotent (`Generation.phase`).
Rendering, the last phase, is `rendering.generation_render`."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import F

from generation.models import Generation, LoraKind
from generation.services import lora_cache
from generation.services.lora_cache import (
    generation_loras,
    lora_entries_for,
    lora_is_ready,
    training_config_current,
)
from generation.services.requests import Report
from generation.services.retrieval_sets import baseline_prompt, retrieval_sets_build
from generation.services.training import LoraBusy, lora_train, lora_waiters_wake
from jobs import services as jobs
from jobs.models import ACTIVE_STATUSES

# A task redelivered this many times for one phase (its worker died each time) gives up.
MAX_PHASE_ATTEMPTS = 3


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


def hand_over(generation: Generation, phase: str, stage: str) -> None:
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
    entries = lora_entries_for(retrieval)
    generation.lora_artist_style = entries[LoraKind.ARTIST_STYLE]
    generation.lora_genre_style = entries[LoraKind.GENRE_STYLE]
    generation.baseline_prompt = baseline_prompt(generation.prompt, retrieval)[:800]
    generation.save(update_fields=["lora_artist_style", "lora_genre_style", "baseline_prompt"])
    missing = [e for e, w in generation_loras(generation) if w != 0 and not lora_is_ready(e)]
    report(2, 2, "caching: looking up the LoRA cache")
    if missing:
        hand_over(generation, Generation.Phase.TRAIN, f"queued for training ({len(missing)} LoRA)")
        return Generation.Phase.TRAIN
    hand_over(generation, Generation.Phase.RENDER, "queued for rendering (LoRA cache hit)")
    return Generation.Phase.RENDER


def generation_train(generation_id: int, report: Report) -> dict:
    """Phase 2: train the missing LoRAs of the generation, then hand over to rendering.

    A LoRA that another job is training is not waited for here: the job goes back to the
    queue (`jobs.services.job_defer`), freeing this worker, and is sent again when that
    training ends (`lora_waiters_wake`) or after GEN_LORA_WAIT_SECONDS at the latest.
    """
    generation = Generation.objects.select_related(
        "job", "lora_artist_style", "lora_genre_style"
    ).get(pk=generation_id)
    todo = [e for e, w in generation_loras(generation) if w != 0 and not lora_is_ready(e)]
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
            if lora_is_ready(entry) or lora_cache.lora_claimable(entry):
                lora_waiters_wake(entry)  # it ended while we deferred: go again now
            return {"waiting_for": entry.key}
    hand_over(generation, Generation.Phase.RENDER, "queued for rendering")
    return {"trained": [e.key for e in todo]}
