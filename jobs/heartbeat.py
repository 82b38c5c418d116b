"""Load heartbeats: a running job that reports nothing for a while (a model downloaded or
loaded) is stamped alive meanwhile (`job_heartbeat`), and code deep in a task finds the job
it runs in (`job_current`). Part of the one owner of job state (`jobs.services`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar

from django.conf import settings
from django.db import connections
from django.utils import timezone

from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

# The job whose body (`job_running`) the current code runs in: services deep below a task
# (model getters) report a load against it without being handed its id.
_current_job: ContextVar[int | None] = ContextVar("mythragen_current_job", default=None)


def job_current() -> int | None:
    """The id of the job whose body (`job_running`) this code runs in; None outside one
    (a command, a web request)."""
    return _current_job.get()


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
