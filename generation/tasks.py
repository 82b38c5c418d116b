"""Celery tasks for generation: thin; each runs one phase of a generation job.

prepare (default queue) -> train (queue "training") -> render (queue "rendering"); the
routes are CELERY_TASK_ROUTES in settings. Every task takes (job id, generation id), checks
that its phase is still to be done, and runs one service under `jobs.services.job_running`,
which owns the job's state and claims the job atomically: a copy of a message (re-sent,
redelivered, or a stale one of an earlier phase) does nothing.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from generation import services
from jobs.services import JobCancelled, JobNotClaimed, job_running, job_succeed

logger = logging.getLogger(__name__)
LIMITS = settings.TASK_TIME_LIMITS


def _run_phase(task, job_id: int, generation_id: int, phase: str, body) -> dict:
    if not services.generation_phase_due(generation_id, job_id, phase):
        return {"skipped": True, "phase": phase}
    try:
        with job_running(job_id, task_id=task.request.id or "", task_name=task.name) as report:
            if not services.generation_phase_begin(generation_id, job_id, phase):
                return {"skipped": True, "phase": phase}
            return body(report)
    except JobNotClaimed as exc:
        logger.info("Job #%s: %s not run: %s", job_id, phase, exc)
        return {"skipped": True, "phase": phase, "reason": str(exc)}
    except JobCancelled:
        return {"cancelled": True, "phase": phase}


@shared_task(
    bind=True,
    name="generation.prepare",
    time_limit=LIMITS["generation.prepare"],
    soft_time_limit=LIMITS["generation.prepare"] - 60,
    acks_late=True,
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
    time_limit=LIMITS["generation.train"],
    soft_time_limit=max(60, LIMITS["generation.train"] - 60),
    acks_late=True,
)
def generation_train_task(self, job_id: int, generation_id: int) -> dict:
    """Train the generation's missing LoRAs (resuming from checkpoints), then hand over; a
    LoRA another job is training puts this job back in the queue to wait (not a worker)."""
    return _run_phase(
        self,
        job_id,
        generation_id,
        "train",
        lambda report: services.generation_train(generation_id, report),
    )


def _render(job_id: int, generation_id: int, report) -> dict:
    summary = services.generation_render(generation_id, report)
    job_succeed(job_id, summary)
    return summary


@shared_task(
    bind=True,
    name="generation.render",
    time_limit=LIMITS["generation.render"],
    soft_time_limit=max(60, LIMITS["generation.render"] - 60),
    acks_late=True,
)
def generation_render_task(self, job_id: int, generation_id: int) -> dict:
    """Render the image (and the prompt-only baseline) with the mixed LoRAs."""
    return _run_phase(
        self, job_id, generation_id, "render", lambda report: _render(job_id, generation_id, report)
    )
