"""What goes to the broker: a job's recorded task, sent once its transaction commits, sent
again when it never arrived (`job_resend_unsent`), handed on to a next queue
(`job_requeue`) or put back to wait (`job_defer` / `job_wake`). Part of the one owner of
job state (`jobs.services`); nothing else writes these fields."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs import processes
from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

# Where a job records the task that carries it (see `job_enqueue`).
SEND_KEY = "_task"


def job_enqueue(job: Job, task, *args, **kwargs) -> None:
    """Send `task` with the job id once the surrounding transaction commits.

    The send is first written on the job, in the caller's transaction: the task's name,
    arguments and a task id chosen now, with `celery_task_id` empty until the broker took
    the message. So a job is never queued with nothing on its way to a worker: if the
    broker is unreachable (the send retries briefly, then gives up) or this process dies
    between the commit and the send, the job stays queued, says so in its stage, and
    `job_resend_unsent` (run by every worker) sends it when the broker is back. A message
    sent twice (a crash right after the send) carries the same task id; the claim in
    `job_running` runs it once. The recorded task is also what recovery re-sends when the
    job's worker dies, and what a claim checks a message against.
    """
    spec = _record(job, task, *args, **kwargs)
    transaction.on_commit(lambda: _send(job.pk, spec, task, job=job))


def job_enqueue_many(jobs: list[Job], task) -> None:
    """`job_enqueue` for many jobs of one task (no further arguments), sent in order once
    the surrounding transaction commits. After a send that fails the rest are not tried
    (each failure first waits out the broker's retries): they stay queued with nothing
    sent, which is what `job_resend_unsent` looks for, as after any failed send."""
    sends = [(job, _record(job, task)) for job in jobs]

    def send_all() -> None:
        for job, spec in sends:
            if not _send(job.pk, spec, task, job=job):
                break

    transaction.on_commit(send_all)


def _record(job: Job, task, *args, **kwargs) -> dict:
    """Write the send on the job (see `job_enqueue`) and return it."""
    spec = {
        "task": task.name,
        "args": [job.pk, *args],
        "kwargs": kwargs,
        "task_id": str(uuid.uuid4()),
    }
    params = Job.objects.values_list("params", flat=True).get(pk=job.pk) or {}
    job.params, job.celery_task_id = {**params, SEND_KEY: spec}, ""
    job.heartbeat_at = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        params=job.params, celery_task_id="", heartbeat_at=job.heartbeat_at, wait_until=None
    )
    return spec


def _send(job_id: int, spec: dict, task=None, *, job: Job | None = None) -> bool:
    """Hand a recorded send to the broker; on failure leave the job queued and say why
    (also on `job`, the caller's copy, so an answer built from it tells the user)."""
    if task is None:
        from celery_app import app

        task = app.tasks[spec["task"]]
    try:
        result = task.apply_async(args=spec["args"], kwargs=spec["kwargs"], task_id=spec["task_id"])
    except Exception as exc:  # noqa: BLE001 - broker or result backend unreachable, ...
        logger.warning(
            "Could not send job #%s (%s) to the task queue; it stays queued and is re-sent "
            "when the broker is back: %s: %s",
            job_id,
            spec["task"],
            type(exc).__name__,
            exc,
        )
        stage = (
            f"waiting for the task queue (broker unreachable: {type(exc).__name__}); "
            "it is sent as soon as the broker is back"
        )[:200]
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, celery_task_id="").update(
            stage=stage
        )
        if job is not None and job.status == JobStatus.QUEUED:
            job.stage = stage
        return False
    Job.objects.filter(pk=job_id, celery_task_id="").update(celery_task_id=result.id or "")
    return True


def job_resend_unsent(grace_seconds: float = 10.0, job_ids: list[int] | None = None) -> int:
    """Send the queued jobs whose message never reached the broker, or whose wait is over;
    return how many went.

    Unsent: queued, `celery_task_id` still empty, recorded over `grace_seconds` ago (a
    send in progress is left alone) and not waiting (`wait_until` unset or past). Each job
    is claimed by moving its stamp first, so two workers running this at once do not both
    send it.
    """
    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=grace_seconds)
    candidates = Job.objects.filter(
        status=JobStatus.QUEUED, celery_task_id="", heartbeat_at__lt=cutoff
    ).filter(Q(wait_until__isnull=True) | Q(wait_until__lte=now))
    if job_ids is not None:
        candidates = candidates.filter(pk__in=job_ids)
    sent = 0
    for job_id, params, stamp in candidates.values_list("pk", "params", "heartbeat_at"):
        spec = (params or {}).get(SEND_KEY)
        if not spec:
            continue  # recorded before sends were recorded: nothing to resend
        claimed = Job.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, celery_task_id="", heartbeat_at=stamp
        ).update(heartbeat_at=timezone.now())
        if claimed and _send(job_id, spec):
            logger.info("Re-sent job #%s (%s) to the task queue", job_id, spec["task"])
            sent += 1
    return sent


def job_requeue(job_id: int, stage: str) -> None:
    """Hand a running job on to its next task (another queue): it waits as queued, at `stage`.

    Used by jobs that run as a chain of tasks (generation: prepare -> train -> render), so a
    job waiting for a busy queue is neither reported running nor taken for a stale one.
    """
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        stage=stage[:200],
        eta_seconds=None,
        worker="",
        heartbeat_at=timezone.now(),
    )


def job_defer(job_id: int, stage: str, seconds: float) -> bool:
    """Put a running job back in the queue to wait, freeing its worker: its recorded task
    is sent again (new task id) after `seconds`, or at once by `job_wake`. For a job that
    waits for another job's result (a LoRA being trained): it never sleeps in a worker.
    False if the job is no longer this process's to defer."""
    row = Job.objects.filter(pk=job_id).values("params").first()
    spec = ((row or {}).get("params") or {}).get(SEND_KEY)
    if not spec:
        raise ValueError(f"job {job_id} records no task to send again")
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=processes.identity()).update(
            status=JobStatus.QUEUED,
            stage=stage[:200],
            eta_seconds=None,
            worker="",
            celery_task_id="",
            params={**row["params"], SEND_KEY: {**spec, "task_id": str(uuid.uuid4())}},
            heartbeat_at=now,
            wait_until=now + timezone.timedelta(seconds=seconds),
        )
    )


def job_wake(job_ids: list[int]) -> int:
    """Send deferred jobs now (what they waited for is done); return how many went."""
    if not job_ids:
        return 0
    now = timezone.now()
    Job.objects.filter(
        pk__in=job_ids, status=JobStatus.QUEUED, celery_task_id="", wait_until__gt=now
    ).update(wait_until=now)
    return job_resend_unsent(grace_seconds=0, job_ids=job_ids)
