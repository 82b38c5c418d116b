"""The one owner of job state: every status, stage, progress and error write is here.

A job's life: `job_create` (queued) -> `job_enqueue` records its task, then sends it ->
a worker's task runs the body under `job_running`, which claims the job atomically (one
conditional update: of two copies of a message, one runs) and keeps it stamped alive ->
`job_succeed` / `job_fail` / cancelled. A worker that dies leaves a running job nobody
runs; `job_recover_orphans` (every worker, at start and every MYTHRAGEN_JOB_RESEND_SECONDS)
finds it and re-sends its recorded task, so it resumes; the broker's own redelivery is not
needed (the filesystem transport has none, Redis's comes hours later).
"""

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
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import processes
from jobs.models import ACTIVE_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

# Where a job records the task that carries it (see `job_enqueue`).
SEND_KEY = "_task"

# The job whose body (`job_running`) the current code runs in: services deep below a task
# (model getters) report a load against it without being handed its id.
_current_job: ContextVar[int | None] = ContextVar("mythragen_current_job", default=None)

# What recovery and claims read of a job.
_OWNER_FIELDS = (
    "pk",
    "kind",
    "status",
    "worker",
    "alive_at",
    "heartbeat_at",
    "started_at",
    "created_at",
    "params",
    "recoveries",
    "cancel_requested",
)


class JobCancelled(Exception):
    """Raised inside a running job when a user asked to cancel it."""


class JobNotClaimed(JobCancelled):
    """A task's message for a job it must not run: the job is finished or cancelled, runs
    in a live worker already (this is a second copy), or waits for another task (a stale
    copy of an earlier message). Raised before the body starts; nothing was written."""


class JobLost(JobCancelled):
    """This worker's claim on a running job was taken over (it was judged gone, e.g. cut off
    from the database for longer than MYTHRAGEN_JOB_ORPHAN_SECONDS): stop, write nothing."""


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


# --------------------------------------------------------------------------- owners


def _last_alive(row: dict):
    return row["alive_at"] or row["heartbeat_at"] or row["started_at"] or row["created_at"]


def job_worker_gone(row: dict, now=None) -> bool:
    """Whether the process running a job has ended. Same machine: asked directly (the pid
    is gone, a zombie, or reused), so a restarted worker or the demo's web process knows at
    once. Another machine: its alive stamp is older than MYTHRAGEN_JOB_ORPHAN_SECONDS."""
    gone = processes.process_gone(row["worker"] or "")
    if gone is not None:
        return gone
    now = now or timezone.now()
    last = _last_alive(row)
    return last < now - timezone.timedelta(seconds=settings.JOBS_ORPHAN_SECONDS)


def _owned(row: dict) -> Q:
    """The job exactly as read: a write conditioned on it fails if anything moved since."""
    spec = (row["params"] or {}).get(SEND_KEY)
    sent = (
        Q(**{f"params__{SEND_KEY}__task_id": spec.get("task_id")})
        if spec
        else Q(**{f"params__{SEND_KEY}__isnull": True})
    )
    return Q(pk=row["pk"], status=row["status"], worker=row["worker"]) & sent


def job_claim(job_id: int, *, task_id: str = "", task_name: str = "") -> Job:
    """Take a job for this process; it becomes running. Raises `JobNotClaimed` when the
    message must not run it (see there) and returns the job otherwise.

    One conditional update on the job as read: of two workers handed copies of one message
    at once, exactly one gets it. A queued job is taken; a running one only when its
    worker is gone (a redelivered message after a crash): that counts as a recovery. With
    `task_name`, the job must be waiting for that task (its recorded send), so a stale copy
    of an earlier phase's message does nothing.
    """
    for _ in range(3):
        row = Job.objects.filter(pk=job_id).values(*_OWNER_FIELDS).first()
        if row is None:
            raise JobNotClaimed(f"job {job_id} does not exist")
        status = row["status"]
        if status == JobStatus.CANCELLED:
            raise JobNotClaimed(f"job {job_id} was cancelled before it started")
        if status not in ACTIVE_STATUSES:
            raise JobNotClaimed(f"job {job_id} already {status}: nothing to do")
        spec = (row["params"] or {}).get(SEND_KEY)
        if task_name and spec and spec.get("task") != task_name:
            raise JobNotClaimed(
                f"job {job_id} waits for {spec.get('task')}, not {task_name}: "
                "a stale copy of an earlier message"
            )
        takeover = status == JobStatus.RUNNING
        if takeover:
            if not job_worker_gone(row):
                raise JobNotClaimed(
                    f"job {job_id} is running in {processes.describe(row['worker'])}: "
                    "a second copy of its message is dropped"
                )
            if _recover_ended(row):
                raise JobNotClaimed(f"job {job_id} ended: its worker was lost")
        now = timezone.now()
        updated = Job.objects.filter(_owned(row)).update(
            status=JobStatus.RUNNING,
            worker=processes.identity(),
            alive_at=now,
            started_at=now,
            heartbeat_at=now,
            wait_until=None,
            progress_since=None,  # an attempt's first report starts a new ETA run
            error="",
            attempts=F("attempts") + 1,
            recoveries=F("recoveries") + int(takeover),
            **({"celery_task_id": task_id} if task_id else {}),
        )
        if updated:
            return Job.objects.get(pk=job_id)
    raise JobNotClaimed(f"job {job_id} was taken by another worker at the same moment")


def _recover_ended(row: dict) -> bool:
    """End a job whose worker is gone instead of resuming it, when it must end: cancel was
    asked, or it lost its worker too often. True if it is over (by us or meanwhile)."""
    now = timezone.now()
    who = processes.describe(row["worker"])
    if row["cancel_requested"]:
        Job.objects.filter(_owned(row)).update(
            status=JobStatus.CANCELLED, finished_at=now, eta_seconds=None, stage="cancelled"
        )
        return True
    limit = settings.JOBS_MAX_RECOVERIES
    if row["recoveries"] >= limit:
        Job.objects.filter(_owned(row)).update(
            status=JobStatus.FAILED,
            finished_at=now,
            eta_seconds=None,
            error=(
                f"Gave up after {limit} restarts: its worker was lost each time (last: {who}; "
                "crashed, killed or out of memory). Retry once the workers are healthy."
            ),
        )
        return True
    return False


def job_recover_orphans(kinds: list[str] | None = None) -> int:
    """Resume every running job whose worker is gone (`job_worker_gone`); return how many.

    Each goes back to queued with its recorded task re-sent under a new task id, and
    resumes where its task resumes (training from its last checkpoint, labelling and
    embedding from the last committed batch). It ends instead when cancel was asked
    (cancelled), when it has no recorded task (failed, with the reason) or after
    MYTHRAGEN_JOB_MAX_RECOVERIES losses. Every write is conditioned on the job as read,
    so two workers recovering at once resume it once.
    """
    rows = Job.objects.filter(status=JobStatus.RUNNING)
    if kinds:
        rows = rows.filter(kind__in=kinds)
    now, handled = timezone.now(), 0
    for row in rows.values(*_OWNER_FIELDS):
        if not job_worker_gone(row, now):
            continue
        if _recover_ended(row):
            handled += 1
            continue
        who = processes.describe(row["worker"])
        params = row["params"] or {}
        spec = params.get(SEND_KEY)
        if not spec:
            handled += Job.objects.filter(_owned(row)).update(
                status=JobStatus.FAILED,
                finished_at=now,
                eta_seconds=None,
                error=(
                    f"Its worker ({who}) was lost (crashed, killed or out of memory) and the "
                    "job records no task to resume it with; retry it."
                ),
            )
            continue
        resend = {**spec, "task_id": str(uuid.uuid4())}
        moved = Job.objects.filter(_owned(row)).update(
            status=JobStatus.QUEUED,
            worker="",
            stage=f"resuming: its worker ({who}) was lost; sent to the task queue again"[:200],
            eta_seconds=None,
            celery_task_id="",
            params={**params, SEND_KEY: resend},
            heartbeat_at=now,
            wait_until=None,
            recoveries=F("recoveries") + 1,
        )
        if moved:
            handled += 1
            logger.warning(
                "Job #%s (%s): its worker (%s) is gone; resuming it (%s)",
                row["pk"],
                row["kind"],
                who,
                spec["task"],
            )
            transaction.on_commit(lambda pk=row["pk"], spec=resend: _send(pk, spec))
    return handled


def jobs_maintain(grace_seconds: float) -> dict[str, int]:
    """What every worker runs at start and every MYTHRAGEN_JOB_RESEND_SECONDS: resume jobs
    whose worker is gone, fail the ones that stopped reporting (hung; thresholds per kind in
    `JOBS_STALE_BY_KIND`, else `JOBS_STALE_SECONDS`), send what is due."""
    recovered = job_recover_orphans()
    by_kind = settings.JOBS_STALE_BY_KIND
    stale = job_fail_stale(settings.JOBS_STALE_SECONDS, exclude=list(by_kind))
    for kind, setting in by_kind.items():
        stale += job_fail_stale(getattr(settings, setting), kinds=[kind])
    sent = job_resend_unsent(grace_seconds=grace_seconds)
    return {"recovered": recovered, "stale": stale, "sent": sent}


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


def job_fail_stale(
    older_than_seconds: float, kinds: list[str] | None = None, exclude: list[str] | None = None
) -> int:
    """Mark running jobs whose worker stopped reporting as failed (a hung worker).

    Jobs whose worker is gone are resumed instead (`job_recover_orphans`, run first). The
    rest are judged only by the time since the job's last report, whatever it was doing: a
    step, a stage, its start, or a `job_heartbeat` beat while it loads a model (a running
    job with no report at all counts from its start). Queued jobs are never stale here: one
    waiting for a busy queue has nothing to report (see `job_requeue`).
    """
    job_recover_orphans(kinds)
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    stale = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .alias(last_report=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(last_report__lt=cutoff)
    )
    if kinds:
        stale = stale.filter(kind__in=kinds)
    if exclude:
        stale = stale.exclude(kind__in=exclude)
    return stale.update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        error=(
            f"The worker stopped reporting for {older_than_seconds:.0f} s while it still ran "
            "(hung, or cut off from the database); retry the job."
        ),
    )


class _AliveStamp:
    """Stamps a running job's `alive_at` every MYTHRAGEN_JOB_ALIVE_SECONDS from a daemon
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
    """Queued or running jobs of `kind`. Running ones whose worker is gone are resumed (or
    ended) first, and ones silent for `JOBS_STALE_SECONDS` are marked failed, so neither a
    killed nor a hung worker blocks the next request."""
    job_fail_stale(settings.JOBS_STALE_SECONDS, kinds=[kind])
    return Job.objects.filter(kind=kind, status__in=ACTIVE_STATUSES)
