"""The one owner of job state: every status, stage, progress and error write is here."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a running job when a user asked to cancel it."""


def job_create(kind: str, *, params: dict | None = None, user=None) -> Job:
    """Record a queued job; the caller enqueues its task with `transaction.on_commit`."""
    return Job.objects.create(kind=kind, params=params or {}, user=user)


def job_enqueue(job: Job, task, *args, **kwargs) -> None:
    """Send `task` with the job id once the surrounding transaction commits."""

    def send() -> None:
        result = task.apply_async(args=[job.pk, *args], kwargs=kwargs)
        Job.objects.filter(pk=job.pk, celery_task_id="").update(celery_task_id=result.id or "")

    transaction.on_commit(send)


def job_start(job_id: int, *, task_id: str = "") -> Job:
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        error="",
        attempts=F("attempts") + 1,
        **({"celery_task_id": task_id} if task_id else {}),
    )
    return Job.objects.get(pk=job_id)


def job_progress(job_id: int, done: int, total: int, stage: str = "") -> bool:
    """Store progress and an ETA; return True if cancellation was requested."""
    job = Job.objects.only("started_at", "cancel_requested").get(pk=job_id)
    now = timezone.now()
    eta = None
    if job.started_at and done > 0 and total > done:
        elapsed = (now - job.started_at).total_seconds()
        eta = elapsed / done * (total - done)
    Job.objects.filter(pk=job_id).update(
        done=done,
        total=total,
        progress=(done / total if total else 0.0),
        eta_seconds=eta,
        heartbeat_at=now,
        **({"stage": stage[:200]} if stage else {}),
    )
    return job.cancel_requested


def job_stage(job_id: int, stage: str) -> None:
    Job.objects.filter(pk=job_id).update(stage=stage[:200], heartbeat_at=timezone.now())


def job_requeue(job_id: int, stage: str) -> None:
    """Hand a running job on to its next task (another queue): it waits as queued, at `stage`.

    Used by jobs that run as a chain of tasks (generation: prepare -> train -> render), so a
    job waiting for a busy queue is neither reported running nor taken for a stale one.
    """
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        stage=stage[:200],
        eta_seconds=None,
        heartbeat_at=timezone.now(),
    )


def job_succeed(job_id: int, result: dict | None = None) -> None:
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.SUCCEEDED,
        result=result or {},
        progress=1.0,
        eta_seconds=0,
        finished_at=timezone.now(),
        stage="done",
    )


def job_fail(job_id: int, error: str) -> None:
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.FAILED,
        error=error[:10_000],
        finished_at=timezone.now(),
        eta_seconds=None,
    )


def job_mark_cancelled(job_id: int) -> None:
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.CANCELLED,
        finished_at=timezone.now(),
        eta_seconds=None,
        stage="cancelled",
    )


def job_cancel_request(job: Job) -> Job:
    """Ask a job to stop: a queued one is cancelled at once, a running one at its next step."""
    if job.status == JobStatus.QUEUED:
        job_mark_cancelled(job.pk)
    elif job.status == JobStatus.RUNNING:
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def job_fail_stale(older_than_seconds: float, kinds: list[str] | None = None) -> int:
    """Mark running jobs whose worker stopped reporting as failed (a crashed worker)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    if kinds:
        stale = stale.filter(kind__in=kinds)
    return stale.update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker stopped reporting (it crashed or was killed); retry the job.",
    )


@contextmanager
def job_running(job_id: int, *, task_id: str = "") -> Iterator[Callable[[int, int, str], None]]:
    """Run a job's body: mark it running, give it a progress reporter, record the outcome.

    The reporter raises `JobCancelled` when cancellation was requested. Exceptions mark the
    job failed with the error and traceback tail, then propagate to the task.
    """
    job = Job.objects.get(pk=job_id)
    if job.status == JobStatus.CANCELLED:
        raise JobCancelled(f"job {job_id} was cancelled before it started")
    job_start(job_id, task_id=task_id)
    last = [0.0]

    def report(done: int, total: int, stage: str = "") -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.5:
            return  # at most two writes a second
        last[0] = now
        if job_progress(job_id, done, total, stage):
            raise JobCancelled(f"job {job_id} cancelled")

    try:
        yield report
    except JobCancelled:
        job_mark_cancelled(job_id)
        raise
    except Exception as exc:
        job_fail(job_id, f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-4000:]}")
        raise


def active_jobs(kind: str):
    return Job.objects.filter(kind=kind, status__in=ACTIVE_STATUSES)
