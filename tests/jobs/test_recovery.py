"""Claims, recovery of jobs whose worker is gone, cancel, deferral and one-at-a-time jobs
(issue #15, items 1 and 2). The worker processes are simulated by the identities a job
records; tests/integration/faults/ kills real ones."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobs import processes, sending
from jobs import services as jobs
from jobs.models import Job, JobStatus
from retrieval.tasks import INDEX_REBUILD, index_rebuild_task


def _dead_worker() -> str:
    """The identity of a process of this machine that has ended (started, then reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    stat = processes._stat(proc.pid)  # noqa: SLF001 - its start time, while it lives
    proc.wait()
    host, namespace = socket.gethostname(), processes._pid_namespace()  # noqa: SLF001
    return f"{host}/{namespace}/{proc.pid}/{stat[1]}"


def _enqueued(django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.job_create(INDEX_REBUILD)
        jobs.job_enqueue(job, index_rebuild_task)
    job.refresh_from_db()
    return job


def _running_in(job: Job, worker: str, alive_seconds_ago: float = 0) -> None:
    stamp = timezone.now() - timedelta(seconds=alive_seconds_ago)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, worker=worker, alive_at=stamp, heartbeat_at=stamp
    )


def test_process_identity_tells_a_live_process_from_a_gone_or_reused_one():
    me = processes.identity()
    assert processes.process_gone(me) is False
    assert processes.process_gone(_dead_worker()) is True
    host, namespace, pid, start = me.split("/")
    assert processes.process_gone(f"{host}/{namespace}/{pid}/{int(start) + 1}") is True  # reused
    assert processes.process_gone(f"elsewhere/{namespace}/{pid}/{start}") is None  # can't look
    assert processes.process_gone("") is None
    assert processes.describe(me) == f"pid {pid} on {host}"


@pytest.mark.django_db
def test_a_running_job_whose_worker_is_gone_is_resumed_once(
    sent, django_capture_on_commit_callbacks
):
    job = _enqueued(django_capture_on_commit_callbacks)
    first_id = job.params[jobs.SEND_KEY]["task_id"]
    sent.clear()
    _running_in(job, _dead_worker())
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.job_recover_orphans() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.recoveries == 1 and job.worker == ""
    assert job.stage.startswith("resuming: its worker (pid ") and "was lost" in job.stage
    assert [s["task"] for s in sent] == ["retrieval.index_rebuild"]
    assert sent[0]["args"] == [job.pk] and sent[0]["task_id"] != first_id
    assert job.params[jobs.SEND_KEY]["task_id"] == sent[0]["task_id"]
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.job_recover_orphans() == 0  # queued now: nothing more to do
    assert len(sent) == 1


@pytest.mark.django_db
def test_a_live_worker_keeps_its_job_and_a_remote_one_is_judged_by_its_alive_stamp(
    sent, settings, django_capture_on_commit_callbacks
):
    settings.JOBS_ORPHAN_SECONDS = 30
    live, remote_fresh, remote_silent = (
        _enqueued(django_capture_on_commit_callbacks) for _ in range(3)
    )
    sent.clear()
    _running_in(live, processes.identity(), alive_seconds_ago=3600)  # here, alive: stays
    _running_in(remote_fresh, "other-host/1/42/7", alive_seconds_ago=5)
    _running_in(remote_silent, "other-host/1/43/7", alive_seconds_ago=31)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.job_recover_orphans() == 1
    statuses = {j.pk: j.status for j in Job.objects.all()}
    assert statuses == {
        live.pk: JobStatus.RUNNING,
        remote_fresh.pk: JobStatus.RUNNING,
        remote_silent.pk: JobStatus.QUEUED,
    }
    assert [s["args"] for s in sent] == [[remote_silent.pk]]


@pytest.mark.django_db
def test_recovery_ends_what_must_end(sent, settings, django_capture_on_commit_callbacks):
    """Cancel asked: cancelled. Lost too often: failed, saying so. No recorded task (made
    before sends were recorded): failed, saying what to do. None is sent again."""
    settings.JOBS_MAX_RECOVERIES = 2
    cancelled, worn_out = (_enqueued(django_capture_on_commit_callbacks) for _ in range(2))
    unrecorded = jobs.job_create(INDEX_REBUILD)
    sent.clear()
    for job in (cancelled, worn_out, unrecorded):
        _running_in(job, _dead_worker())
    Job.objects.filter(pk=cancelled.pk).update(cancel_requested=True)
    Job.objects.filter(pk=worn_out.pk).update(recoveries=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.job_recover_orphans() == 3
    assert sent == []
    cancelled, worn_out, unrecorded = (
        Job.objects.get(pk=j.pk) for j in (cancelled, worn_out, unrecorded)
    )
    assert cancelled.status == JobStatus.CANCELLED
    assert worn_out.status == JobStatus.FAILED and "Gave up after 2 restarts" in worn_out.error
    assert unrecorded.status == JobStatus.FAILED and "retry it" in unrecorded.error


@pytest.mark.django_db
def test_cancel_ends_at_once_a_job_whose_worker_is_gone(django_capture_on_commit_callbacks):
    gone, live = (_enqueued(django_capture_on_commit_callbacks) for _ in range(2))
    _running_in(gone, _dead_worker())
    _running_in(live, processes.identity())
    assert jobs.job_cancel_request(Job.objects.get(pk=gone.pk)).status == JobStatus.CANCELLED
    live = jobs.job_cancel_request(Job.objects.get(pk=live.pk))
    assert live.status == JobStatus.RUNNING and live.cancel_requested  # stops at its next step


@pytest.mark.django_db
def test_claims_run_a_job_once_and_drop_stale_or_second_copies(
    django_capture_on_commit_callbacks,
):
    job = _enqueued(django_capture_on_commit_callbacks)
    with pytest.raises(jobs.JobNotClaimed, match="waits for retrieval.index_rebuild"):
        jobs.job_claim(job.pk, task_name="labelling.label_genres")  # a stale copy
    claimed = jobs.job_claim(job.pk, task_id="t1", task_name=index_rebuild_task.name)
    assert claimed.status == JobStatus.RUNNING and claimed.worker == processes.identity()
    assert claimed.celery_task_id == "t1" and claimed.attempts == 1
    with pytest.raises(jobs.JobNotClaimed, match="is running in pid"):
        jobs.job_claim(job.pk, task_id="t2", task_name=index_rebuild_task.name)  # a copy
    # Its worker died; the broker redelivers the message: that copy takes the job over.
    Job.objects.filter(pk=job.pk).update(worker=_dead_worker())
    taken = jobs.job_claim(job.pk, task_id="t1", task_name=index_rebuild_task.name)
    assert taken.worker == processes.identity() and taken.recoveries == 1
    jobs.job_succeed(job.pk)
    with pytest.raises(jobs.JobNotClaimed, match="already succeeded"):
        jobs.job_claim(job.pk, task_name=index_rebuild_task.name)


@pytest.mark.django_db(transaction=True)
def test_of_workers_claiming_one_job_at_the_same_moment_exactly_one_runs_it(
    django_capture_on_commit_callbacks,
):
    job = _enqueued(django_capture_on_commit_callbacks)
    n = 4
    barrier, outcomes = threading.Barrier(n), []

    def claim():
        try:
            barrier.wait(timeout=30)
            jobs.job_claim(job.pk, task_name=index_rebuild_task.name)
            outcomes.append("ran")
        except jobs.JobNotClaimed as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("ran") == 1, outcomes
    assert Job.objects.get(pk=job.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_running_job_is_stamped_alive_and_a_taken_over_one_stops(settings):
    settings.JOBS_ALIVE_SECONDS = 0.1
    job = jobs.job_create("test")
    with jobs.job_running(job.pk) as report:
        first = Job.objects.get(pk=job.pk).alive_at
        time.sleep(0.5)
        assert Job.objects.get(pk=job.pk).alive_at > first  # stamped while nothing reports
        Job.objects.filter(pk=job.pk).update(worker="other-host/1/2/3")  # judged gone
        time.sleep(0.5)
        with pytest.raises(jobs.JobLost):
            report(1, 10, "step 1")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.worker == "other-host/1/2/3"  # untouched


@pytest.mark.django_db
def test_a_deferred_job_frees_its_worker_and_is_sent_when_woken(
    sent, django_capture_on_commit_callbacks
):
    job = _enqueued(django_capture_on_commit_callbacks)
    jobs.job_claim(job.pk)
    sent.clear()
    assert jobs.job_defer(job.pk, "waiting for LoRA abc", seconds=600)
    job.refresh_from_db()
    assert (
        job.status == JobStatus.QUEUED and job.worker == "" and job.stage == "waiting for LoRA abc"
    )
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert jobs.job_resend_unsent(grace_seconds=0) == 0  # its wait is not over
    assert jobs.job_wake([job.pk]) == 1 and len(sent) == 1
    assert sent[0]["task_id"] == Job.objects.get(pk=job.pk).params[jobs.SEND_KEY]["task_id"]
    assert jobs.job_wake([job.pk]) == 0  # sent: once


@pytest.mark.django_db
def test_the_database_allows_one_active_job_of_an_exclusive_kind():
    first, created = jobs.job_create_exclusive(INDEX_REBUILD)
    again, created_again = jobs.job_create_exclusive(INDEX_REBUILD)
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind=INDEX_REBUILD, exclusive=INDEX_REBUILD)
    jobs.job_succeed(first.pk)
    later, created = jobs.job_create_exclusive(INDEX_REBUILD)
    assert created and later.pk != first.pk
    Job.objects.create(kind=INDEX_REBUILD)  # not exclusive: no constraint


@pytest.mark.django_db(transaction=True)
def test_concurrent_rebuild_and_labelling_requests_share_one_job(monkeypatch):
    """Eight requests at once (their own connections): one rebuild job and one labelling job
    in the database, every request answered with it."""
    from labelling import services as labelling
    from retrieval import services as retrieval

    monkeypatch.setattr(sending, "_send", lambda *a, **k: True)
    requests = [retrieval.index_rebuild_request] * 4 + [
        lambda: labelling.labelling_request("label_genres", limit=5)
    ] * 4
    barrier, answers = threading.Barrier(len(requests)), []

    def ask(request):
        try:
            barrier.wait(timeout=30)
            answers.append(request())
        except Exception as exc:  # noqa: BLE001 - the test checks every outcome
            answers.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(a, Job) for a in answers), answers
    assert Job.objects.filter(kind=INDEX_REBUILD).count() == 1
    assert Job.objects.filter(kind="label_genres").count() == 1
    assert len({a.pk for a in answers}) == 2


@pytest.mark.django_db
def test_the_workers_pass_resumes_the_orphaned_and_fails_the_hung(
    sent, settings, django_capture_on_commit_callbacks
):
    """`jobs_maintain`, what every worker runs at start and every few seconds: a job whose
    process is gone resumes; one whose process lives but has not reported for the stale
    threshold (hung) fails, with a generation judged by its own threshold."""
    settings.JOBS_STALE_SECONDS, settings.GEN_STALE_SECONDS = 60, 3600
    orphan, hung, slow_generation = (
        _enqueued(django_capture_on_commit_callbacks) for _ in range(3)
    )
    Job.objects.filter(pk=slow_generation.pk).update(kind="generation")
    sent.clear()
    _running_in(orphan, _dead_worker())
    _running_in(hung, processes.identity(), alive_seconds_ago=120)
    _running_in(slow_generation, processes.identity(), alive_seconds_ago=120)
    with django_capture_on_commit_callbacks(execute=True):
        done = jobs.jobs_maintain(grace_seconds=1)
    assert done == {"recovered": 1, "stale": 1, "sent": 0}
    assert Job.objects.get(pk=orphan.pk).status == JobStatus.QUEUED and len(sent) == 1
    hung = Job.objects.get(pk=hung.pk)
    assert hung.status == JobStatus.FAILED and "stopped reporting for 60 s" in hung.error
    assert Job.objects.get(pk=slow_generation.pk).status == JobStatus.RUNNING
