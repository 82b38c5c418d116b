"""The one owner of job state: every status, stage, progress and error write is here."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

# Where a job records the task that carries it (see `job_enqueue`).
SEND_KEY = "_task"

# The job whose body (`job_running`) the current code runs in: services deep below a task
# (model getters) report a load against it without being handed its id.
_current_job: ContextVar[int | None] = ContextVar("mythragen_current_job", default=None)


class JobCancelled(Exception):
    """Raised inside a running job when a user asked to cancel it."""


def job_create(kind: str, *, params: dict | None = None, user=None) -> Job:
    """Record a queued job; the caller enqueues its task with `transaction.on_commit`."""
    return Job.objects.create(kind=kind, params=params or {}, user=user)


def job_enqueue(job: Job, task, *args, **kwargs) -> None:
    """Send `task` with the job id once the surrounding transaction commits.

    The send is first written on the job, in the caller's transaction: the task's name,
    arguments and a task id chosen now, with `celery_task_id` empty until the broker took
    the message. So a job is never queued with nothing on its way to a worker: if the
    broker is unreachable (the send retries briefly, then gives up) or this process dies
    between the commit and the send, the job stays queued, says so in its stage, and
    `job_resend_unsent` (run by every worker) sends it when the broker is back. A message
    sent twice (a crash right after the send) carries the same task id.
    """
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
        params=job.params, celery_task_id="", heartbeat_at=job.heartbeat_at
    )
    transaction.on_commit(lambda: _send(job.pk, spec, task, job=job))


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


def job_resend_unsent(grace_seconds: float = 10.0) -> int:
    """Send the queued jobs whose message never reached the broker; return how many went.

    Unsent: queued, `celery_task_id` still empty, recorded over `grace_seconds` ago (a
    send in progress is left alone). Each job is claimed by moving its stamp first, so
    two workers running this at once do not both send it.
    """
    cutoff = timezone.now() - timezone.timedelta(seconds=grace_seconds)
    candidates = Job.objects.filter(
        status=JobStatus.QUEUED, celery_task_id="", heartbeat_at__lt=cutoff
    ).values_list("pk", "params", "heartbeat_at")
    sent = 0
    for job_id, params, stamp in candidates:
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


def job_start(job_id: int, *, task_id: str = "") -> Job:
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        progress_since=None,  # an attempt's first report starts a new ETA run
        error="",
        attempts=F("attempts") + 1,
        **({"celery_task_id": task_id} if task_id else {}),
    )
    return Job.objects.get(pk=job_id)


def job_claim(job_id: int) -> bool:
    """Take a queued job for this worker (it becomes running); False if it is not queued,
    e.g. because another worker is running it already. One conditional update, so of two
    workers handed copies of one message at once, exactly one gets True."""
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, heartbeat_at=timezone.now(), progress_since=None
        )
    )


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
    """Mark running jobs whose worker stopped reporting as failed (a crashed worker).

    Judged only by the time since the job's last report, whatever it was doing: a step, a
    stage, its start, or a `job_heartbeat` beat while it loads a model (a running job with
    no report at all counts from its start). Queued jobs are never stale here: one waiting
    for a busy queue has nothing to report (see `job_requeue`).
    """
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    stale = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .alias(last_report=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(last_report__lt=cutoff)
    )
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
    if job.status not in ACTIVE_STATUSES:
        # A message delivered again after its job finished (the broker redelivered it, or
        # it was re-sent): the job is over and must not run, or change state, again.
        raise JobCancelled(f"job {job_id} already {job.status}: nothing to do")
    job_start(job_id, task_id=task_id)
    last = [0.0]

    def report(done: int, total: int, stage: str = "") -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.5:
            return  # at most two writes a second
        last[0] = now
        if job_progress(job_id, done, total, stage):
            raise JobCancelled(f"job {job_id} cancelled")

    token = _current_job.set(job_id)
    try:
        yield report
    except JobCancelled:
        job_mark_cancelled(job_id)
        raise
    except Exception as exc:
        job_fail(job_id, f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-4000:]}")
        raise
    finally:
        _current_job.reset(token)


def job_current() -> int | None:
    """The id of the job whose body (`job_running`) this code runs in; None outside one
    (a command, a web request)."""
    return _current_job.get()


# --------------------------------------------------------------------------- load heartbeat

# How soon a heartbeat first shows its stage: a model already loaded returns sooner and
# leaves no trace (no write, no flash of "loading model" on the job's page).
HEARTBEAT_FIRST_SECONDS = 1.0
# How long leaving a heartbeat block waits for its thread (normally it ends at once).
HEARTBEAT_JOIN_SECONDS = 1.0


def heartbeat_interval() -> float:
    """Seconds between load heartbeats: a third of the smallest stale threshold (jobs,
    generations), at most 60 s, so two lost beats (a busy database) still leave the job
    well inside its threshold, while a 900 s threshold costs one read and one write a
    minute per loading job."""
    smallest = min(settings.JOBS_STALE_SECONDS, settings.GEN_STALE_SECONDS)
    return max(0.05, min(60.0, smallest / 3))


class JobHeartbeat:
    """Reports that a job is alive while its worker does something that reports nothing
    (a model downloaded or loaded): see `job_heartbeat`. Also usable without `with`:
    `start()` and `stop()` (idempotent; `stop()` may be called from inside the block, e.g.
    by the first progress report)."""

    def __init__(
        self,
        job_id: int | None,
        stage: str,
        every: float,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.stage = stage[:200]
        self.every = every
        self.on_beat = on_beat
        self.beats = 0  # job beats written (for tests and logs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobHeartbeat:
        if self._thread is not None or (self.job_id is None and self.on_beat is None):
            return self  # running already, or nothing to keep alive (no job: a command)
        self._thread = threading.Thread(
            target=self._run, name=f"job-heartbeat-{self.job_id}", daemon=True
        )
        try:
            self._thread.start()
        except Exception as exc:  # noqa: BLE001 - e.g. no thread left: run without beats
            logger.warning("Job #%s: no heartbeat thread (%s)", self.job_id, exc)
        return self

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(HEARTBEAT_JOIN_SECONDS)  # at most one query in flight

    def __enter__(self) -> JobHeartbeat:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _run(self) -> None:
        beat_job = self.job_id is not None
        wait, first = min(self.every, HEARTBEAT_FIRST_SECONDS), True
        try:
            while not self._stop.wait(wait):
                if beat_job:
                    beat_job = self._safely(self._beat_job)
                if self.on_beat is not None and not first:
                    self._safely(self.on_beat)
                if not beat_job and self.on_beat is None:
                    return
                wait, first = self.every, False
        finally:
            connections.close_all()  # this thread's own connections

    def _safely(self, beat: Callable[[], bool | None]) -> bool:
        """Run one beat; a failure (the database away) is logged, never raised: the next
        beat tries again on a fresh connection."""
        try:
            return beat() is not False
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "Job #%s: heartbeat failed: %s: %s", self.job_id, type(exc).__name__, exc
            )
            connections.close_all()
            return True

    def _beat_job(self) -> bool:
        """Stamp the job alive at our stage; False once it is not running (finished, or
        handed on to its next queue). Read first, then a conditional write: a report the
        block made since the read is never overwritten by this beat, and a job this
        thread cannot see (an uncommitted one) gets no write, so no lock is waited for."""
        row = Job.objects.filter(pk=self.job_id).values_list("status", "heartbeat_at").first()
        if row is None or row[0] != JobStatus.RUNNING or self._stop.is_set():
            return row is not None and row[0] == JobStatus.RUNNING
        self.beats += Job.objects.filter(
            pk=self.job_id, status=JobStatus.RUNNING, heartbeat_at=row[1]
        ).update(stage=self.stage, heartbeat_at=timezone.now())
        return True


def job_heartbeat(
    job_id: int | None,
    stage: str,
    *,
    every: float | None = None,
    on_beat: Callable[[], None] | None = None,
) -> JobHeartbeat:
    """`with job_heartbeat(job_id, "loading model X"):` keeps a running job from being
    taken for a stale one while the block reports nothing (a model download or load).

    A daemon thread, on its own database connection (closed when it ends), stamps the job's
    `heartbeat_at` every `every` seconds (default `heartbeat_interval()`) and shows `stage`
    from the first beat (after at most `HEARTBEAT_FIRST_SECONDS`). It never touches the
    progress counters, `progress_since` or the ETA: the ETA counts from the first progress
    report, so the load does not count in it. It stops as soon as the block exits (or
    `stop()` is called), writes nothing once the job is not running, and never raises into
    the caller. `on_beat` is called on every later beat too (e.g. to keep a LoRA training
    claim alive), also with `job_id=None`; with neither, nothing runs.
    """
    return JobHeartbeat(job_id, stage, heartbeat_interval() if every is None else every, on_beat)


def active_jobs(kind: str):
    """Queued or running jobs of `kind`, for one-at-a-time requests (index rebuild,
    labelling runs). A running one whose worker stopped reporting `JOBS_STALE_SECONDS` ago
    is marked failed first, so a killed worker does not block the next request until its
    task is redelivered (hours later on Redis, never on the filesystem broker)."""
    job_fail_stale(settings.JOBS_STALE_SECONDS, kinds=[kind])
    return Job.objects.filter(kind=kind, status__in=ACTIVE_STATUSES)
