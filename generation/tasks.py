"""Celery tasks for generation: thin; each runs one phase of a generation job.

prepare (default queue) -> train (queue "training") -> render (queue "rendering"); the
routes are CELERY_TASK_ROUTES in settings. Every task takes (job id, generation id), checks
that its phase is still to be done (a redelivered or superseded task does nothing), and
runs one service under `jobs.services.job_running`, which owns the job's state.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from generation import services
from jobs.services import JobCancelled, job_running, job_succeed

logger = logging.getLogger(__name__)


def _run_phase(task, job_id: int, generation_id: int, phase: str, body) -> dict:
    # The broker marks a message it hands out again because its worker died or left.
    first = not (task.request.delivery_info or {}).get("redelivered")
    if not services.generation_phase_begin(generation_id, job_id, phase, first_delivery=first):
        return {"skipped": True, "phase": phase}
    try:
        with job_running(job_id, task_id=task.request.id or "") as report:
            return body(report)
    except JobCancelled:
        return {"cancelled": True, "phase": phase}


@shared_task(
    bind=True, name="generation.prepare", time_limit=900, soft_time_limit=840, acks_late=True
)
def generation_prepare_task(self, job_id: int, generation_id: int) -> dict:
    """Retrieve the two sets, key their LoRAs, hand over to training or rendering."""
    return _run_phase(
        self,
        job_id,
        generation_id,
        "retrieve",
        lambda report: {"next": str(services.generation_prepare(generation_id, report))},
    )


@shared_task(
    bind=True,
    name="generation.train",
    time_limit=settings.LORA_TIME_LIMIT,
    soft_time_limit=max(60, settings.LORA_TIME_LIMIT - 60),
    acks_late=True,
)
def generation_train_task(self, job_id: int, generation_id: int) -> dict:
    """Train the generation's missing LoRAs (resuming from checkpoints), then hand over."""
    return _run_phase(
        self,
        job_id,
        generation_id,
        "train",
        lambda report: {"trained": services.generation_train(generation_id, report)},
    )


def _render(job_id: int, generation_id: int, report) -> dict:
    summary = services.generation_render(generation_id, report)
    job_succeed(job_id, summary)
    return summary


@shared_task(
    bind=True, name="generation.render", time_limit=3600, soft_time_limit=3540, acks_late=True
)
def generation_render_task(self, job_id: int, generation_id: int) -> dict:
    """Render the image (and the prompt-only baseline) with the mixed LoRAs."""
    return _run_phase(
        self, job_id, generation_id, "render", lambda report: _render(job_id, generation_id, report)
    )


@worker_ready.connect
def _sweep_stale_generations(**_kwargs) -> None:
    """A worker that starts after a crash marks the jobs nobody is running any more."""
    try:
        count = services.generation_sweep_stale()
    except Exception:  # noqa: BLE001 - a sweep must never stop a worker from starting
        logger.exception("could not sweep stale generation jobs")
        return
    if count:
        logger.warning("marked %d stale generation job(s) failed", count)
