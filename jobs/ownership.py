"""Who owns a running job: the atomic claim (`job_claim`), whether its worker is gone
(`job_worker_gone`), and what happens to jobs whose worker is gone or silent
(`job_recover_orphans`, `job_fail_stale`, `jobs_maintain`). Part of the one owner of job
state (`jobs.services`)."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import processes, sending
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.sending import SEND_KEY

logger = logging.getLogger(__name__)

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
    from the database for longer than JOBS_ORPHAN_SECONDS): stop, write nothing."""


def _last_alive(row: dict):
    return row["alive_at"] or row["heartbeat_at"] or row["started_at"] or row["created_at"]


def job_worker_gone(row: dict, now=None) -> bool:
    """Whether the process running a job has ended. Same machine: asked directly (the pid
    is gone, a zombie, or reused), so a restarted worker or the demo's web process knows at
    once. Another machine: its alive stamp is older than JOBS_ORPHAN_SECONDS."""
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
    JOBS_MAX_RECOVERIES losses. Every write is conditioned on the job as read,
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
            transaction.on_commit(lambda pk=row["pk"], spec=resend: sending._send(pk, spec))
    return handled


def jobs_maintain(grace_seconds: float) -> dict[str, int]:
    """What every worker runs at start and every JOBS_RESEND_SECONDS: resume jobs
    whose worker is gone, fail the ones that stopped reporting (hung; thresholds per kind in
    `JOBS_STALE_BY_KIND`, else `JOBS_STALE_SECONDS`), send what is due."""
    recovered = job_recover_orphans()
    by_kind = settings.JOBS_STALE_BY_KIND
    stale = job_fail_stale(settings.JOBS_STALE_SECONDS, exclude=list(by_kind))
    for kind, setting in by_kind.items():
        stale += job_fail_stale(getattr(settings, setting), kinds=[kind])
    sent = sending.job_resend_unsent(grace_seconds=grace_seconds)
    return {"recovered": recovered, "stale": stale, "sent": sent}


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
