"""The one owner of job state: every status, stage, progress and error write is here.

A job's life: `job_create` (queued) -> `job_enqueue` records its task, then sends it ->
a worker's task runs the body under `job_running`, which claims the job atomically (one
conditional update: of two copies of a message, one runs) and keeps it stamped alive ->
`job_succeed` / `job_fail` / cancelled. A worker that dies leaves a running job nobody
runs; `job_recover_orphans` (every worker, at start and every JOBS_RESEND_SECONDS)
finds it and re-sends its recorded task, so it resumes; the broker's own redelivery is not
needed (the filesystem transport has none, Redis's comes hours later).

This module is the interface (other apps import from here) and holds creation, progress
and outcomes, and `job_running`; the rest lives beside it, by responsibility:
`jobs.sending` (a job's recorded task and the broker: enqueue, re-send, requeue, defer,
wake), `jobs.ownership` (the atomic claim, a gone worker, recovery, stale jobs,
`jobs_maintain`), `jobs.heartbeat` (load heartbeats, `job_current`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from jobs import processes
from jobs.heartbeat import (  # noqa: F401 - part of this interface
    HEARTBEAT_FIRST_SECONDS,
    HEARTBEAT_JOIN_SECONDS,
    JobHeartbeat,
    _current_job,
    heartbeat_interval,
    job_current,
    job_heartbeat,
)
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.ownership import (  # noqa: F401 - part of this interface
    _OWNER_FIELDS,
    JobCancelled,
    JobLost,
    JobNotClaimed,
    _owned,
    job_claim,
    job_fail_stale,
    job_recover_orphans,
    job_worker_gone,
    jobs_maintain,
)
from jobs.sending import (  # noqa: F401 - part of this interface
    SEND_KEY,
    job_defer,
    job_enqueue,
    job_enqueue_many,
    job_requeue,
    job_resend_unsent,
    job_wake,
)

logger = logging.getLogger(__name__)


def job_create(kind: str, *, params: dict | None = None, user=None) -> Job:
    """Record a queued job; the caller enqueues its task with `transaction.on_commit`."""
    return Job.objects.create(kind=kind, params=params or {}, user=user)


def job_create_exclusive(kind: str, *, params: dict | None = None, user=None) -> tuple[Job, bool]:
    """The one active job of `kind`: (the existing queued or running one, False), or (a new
    queued one, True). The database allows one active job per exclusive kind (a partial
    unique constraint), so of two requests at the same moment one creates the job and the
    other gets it; the caller enqueues only a job it created."""
    job_fail_stale(settings.JOBS_STALE_SECONDS, kinds=[kind])
    for _ in range(5):
        existing = Job.objects.filter(exclusive=kind, status__in=ACTIVE_STATUSES).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                job = Job.objects.create(kind=kind, params=params or {}, user=user, exclusive=kind)
            return job, True
        except IntegrityError:
            continue  # another request created it a moment ago: share that one
    raise RuntimeError(f"could not create or find the active {kind} job")  # pragma: no cover


def job_start(job_id: int, *, task_id: str = "") -> Job:
    """Mark a job running in this process, unconditionally (tests and tools; tasks claim
    through `job_running`)."""
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        alive_at=now,
        worker=processes.identity(),
        progress_since=None,  # an attempt's first report starts a new ETA run
        error="",
        attempts=F("attempts") + 1,
        **({"celery_task_id": task_id} if task_id else {}),
    )
    return Job.objects.get(pk=job_id)


# --------------------------------------------------------------------------- running


def job_progress(job_id: int, done: int, total: int, stage: str = "") -> bool:
    """Store progress and an ETA; return True if cancellation was requested.

    The ETA extrapolates the rate since the first report of the current run of reports
    (same `total`, `done` not going back): the first report starts a run and gives no
    ETA, so neither the setup before a phase's first step (loading models, caching
    latents) nor an earlier phase counts.
    """
    job = Job.objects.only(
        "cancel_requested", "done", "total", "progress_since", "progress_from"
    ).get(pk=job_id)
    now = timezone.now()
    since, start = job.progress_since, job.progress_from
    if since is None or total != job.total or done < job.done:
        since, start = now, done  # a new run of reports (a new phase)
    eta = None
    if done > start and total > done:
        eta = (now - since).total_seconds() / (done - start) * (total - done)
    Job.objects.filter(pk=job_id).update(
        done=done,
        total=total,
        progress=(done / total if total else 0.0),
        eta_seconds=eta,
        progress_since=since,
        progress_from=start,
        heartbeat_at=now,
        **({"stage": stage[:200]} if stage else {}),
    )
    return job.cancel_requested


def job_stage(job_id: int, stage: str) -> None:
    Job.objects.filter(pk=job_id).update(stage=stage[:200], heartbeat_at=timezone.now())


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
    """Ask a job to stop: a queued one is cancelled at once, and so is a running one whose
    worker is gone (nothing would ever see the request); a live one stops at its next step."""
    now = timezone.now()
    for _ in range(3):
        row = Job.objects.filter(pk=job.pk).values(*_OWNER_FIELDS).first()
        if row is None or row["status"] not in ACTIVE_STATUSES:
            break
        gone = row["status"] == JobStatus.RUNNING and job_worker_gone(row, now)
        if row["status"] == JobStatus.QUEUED or gone:
            if Job.objects.filter(_owned(row)).update(
                status=JobStatus.CANCELLED,
                finished_at=now,
                eta_seconds=None,
                stage="cancelled",
                cancel_requested=True,
            ):
                break
            continue  # it moved meanwhile (claimed, handed over): look again
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        break
    job.refresh_from_db()
    return job


class _AliveStamp:
    """Stamps a running job's `alive_at` every JOBS_ALIVE_SECONDS from a daemon
    thread (own connection), whatever the task does, while this process owns the job.
    Sets `lost` if another worker took the job over; stops once the job is not running."""

    def __init__(self, job_id: int, worker: str) -> None:
        self.job_id, self.worker = job_id, worker
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-alive-{job_id}", daemon=True)

    def start(self) -> _AliveStamp:
        try:
            self._thread.start()
        except Exception as exc:  # noqa: BLE001 - no thread left: recovery judges by pid
            logger.warning("Job #%s: no alive-stamp thread (%s)", self.job_id, exc)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(HEARTBEAT_JOIN_SECONDS)

    def _run(self) -> None:
        try:
            while not self._stop.wait(max(0.05, settings.JOBS_ALIVE_SECONDS)):
                try:
                    if not self._stamp():
                        return
                except Exception as exc:  # noqa: BLE001 - database away: try again later
                    logger.warning("Job #%s: alive stamp failed: %s", self.job_id, exc)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's own connections

    def _stamp(self) -> bool:
        mine = Job.objects.filter(pk=self.job_id, status=JobStatus.RUNNING, worker=self.worker)
        if mine.update(alive_at=timezone.now()):
            return True
        row = Job.objects.filter(pk=self.job_id).values_list("status", "worker").first()
        if row is not None and row[0] == JobStatus.RUNNING and row[1] != self.worker:
            self.lost.set()
        return False


@contextmanager
def job_running(
    job_id: int, *, task_id: str = "", task_name: str = ""
) -> Iterator[Callable[[int, int, str], None]]:
    """Run a job's body: claim it (`job_claim`: raises `JobNotClaimed` before anything
    runs), keep it stamped alive, give it a progress reporter, record the outcome.

    The reporter raises `JobCancelled` when cancellation was requested (`JobLost` if
    another worker took the job over). Exceptions mark the job failed with the error and
    traceback tail, then propagate to the task.
    """
    job_claim(job_id, task_id=task_id, task_name=task_name)
    me = processes.identity()
    alive = _AliveStamp(job_id, me).start()
    last = [0.0]

    def report(done: int, total: int, stage: str = "") -> None:
        if alive.lost.is_set():
            raise JobLost(f"job {job_id} was taken over by another worker")
        now = time.monotonic()
        if done < total and now - last[0] < 0.5:
            return  # at most two writes a second
        last[0] = now
        if job_progress(job_id, done, total, stage):
            raise JobCancelled(f"job {job_id} cancelled")

    mine = Job.objects.filter(pk=job_id, worker=me)
    token = _current_job.set(job_id)
    try:
        yield report
    except JobLost:
        raise
    except JobCancelled:
        mine.update(
            status=JobStatus.CANCELLED,
            finished_at=timezone.now(),
            eta_seconds=None,
            stage="cancelled",
        )
        raise
    except Exception as exc:
        mine.filter(status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-4000:]}"[:10_000],
            finished_at=timezone.now(),
            eta_seconds=None,
        )
        raise
    finally:
        alive.stop()
        _current_job.reset(token)


def job_task_options(name: str) -> dict:
    """`shared_task` options for a task that runs a job: bound, named `name`, its own time
    limit (`TASK_TIME_LIMITS`), acknowledged late (a lost worker's job runs again)."""
    return {
        "bind": True,
        "name": name,
        "time_limit": settings.TASK_TIME_LIMITS[name],
        "acks_late": True,
    }


def job_run(task, job_id: int, work: Callable[[Callable[[int, int, str], None]], dict]) -> dict:
    """A bound Celery task's whole body: run `work(progress)` under `job_running` and record
    the summary it returns as the job's result (which the task returns too)."""
    with job_running(job_id, task_id=task.request.id or "", task_name=task.name) as report:
        summary = work(report)
        job_succeed(job_id, summary)
    return summary


def active_jobs(kind: str):
    """Queued or running jobs of `kind`. Running ones whose worker is gone are resumed (or
    ended) first, and ones silent for `JOBS_STALE_SECONDS` are marked failed, so neither a
    killed nor a hung worker blocks the next request."""
    job_fail_stale(settings.JOBS_STALE_SECONDS, kinds=[kind])
    return Job.objects.filter(kind=kind, status__in=ACTIVE_STATUSES)
