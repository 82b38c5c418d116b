"""Embedding spread over workers (issue #18, item 5): a large run is split into chunk jobs
that idle workers and the run itself share; one progress; failures, cancel, leftovers.
Other workers are simulated by the identities their jobs record (no Celery worker here;
tests/integration/test_celery_worker.py runs a real one)."""

from __future__ import annotations

import socket
import subprocess
import sys
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from catalog.models import Artwork
from jobs import processes
from jobs import services as jobs
from jobs.models import Job, JobStatus
from retrieval import catalog_embedding, vectors
from retrieval.models import ArtworkEmbedding, EmbeddingSpace
from retrieval.tasks import embed_chunk_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_chunks(settings):
    settings.RETRIEVAL_EMBED_CHUNK = 50  # the demo's 120 artworks: chunks of 50, 50, 20


def _identity(proc: subprocess.Popen) -> str:
    stat = processes._stat(proc.pid)  # noqa: SLF001 - its start time, while it lives
    host, namespace = socket.gethostname(), processes._pid_namespace()  # noqa: SLF001
    return f"{host}/{namespace}/{proc.pid}/{stat[1]}"


@pytest.fixture
def other_worker():
    """The identity of another live process of this machine (a worker, as jobs see it)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield _identity(proc)
    finally:
        proc.kill()
        proc.wait()


def _dead_worker() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = _identity(proc)
    proc.wait()
    return identity


def _chunks():
    return list(Job.objects.filter(kind=catalog_embedding.EMBED_CHUNK).order_by("pk"))


def _after_chunks_are_made(monkeypatch, change):
    """Call `change(chunk_jobs)` right after the run records its chunks."""
    original = jobs.job_enqueue_many

    def enqueue(chunk_jobs, task):
        original(chunk_jobs, task)
        change(chunk_jobs)

    monkeypatch.setattr(jobs, "job_enqueue_many", enqueue)


def test_a_large_run_is_split_into_chunks_that_the_run_embeds_itself(
    imported_demo, small_chunks, sent, django_capture_on_commit_callbacks
):
    reports = []
    with django_capture_on_commit_callbacks(execute=True):
        report = catalog_embedding.embed_catalog(
            batch_size=20, progress=lambda d, t, s="": reports.append((d, t, s))
        )
    n = Artwork.objects.count()
    chunks = _chunks()
    assert [len(catalog_embedding.chunk_ids(c.params)) for c in chunks] == [50, 50, 20]
    assert [s["task"] for s in sent] == ["retrieval.embed_chunk"] * 3
    assert {c.status for c in chunks} == {JobStatus.SUCCEEDED}
    assert {c.worker for c in chunks} == {processes.identity()}  # no other worker: all here
    every = [i for c in chunks for i in catalog_embedding.chunk_ids(c.params)]
    assert len(every) == len(set(every)) == n  # each artwork in exactly one chunk
    assert set(every) == set(Artwork.objects.values_list("id", flat=True))
    assert report.chunks == 3 and report.workers == 1
    assert report.captions_embedded == n and report.reassembled == n
    assert ArtworkEmbedding.objects.count() == n
    embedding = [(d, t) for d, t, s in reports if s.startswith("embedding artworks")]
    assert {t for _d, t in embedding} == {n}
    done = [d for d, _t in embedding]
    assert done == sorted(done) and done[-1] == n and len(set(done)) > 3

    space = EmbeddingSpace.objects.get()
    ids, chunked, _ = vectors.fused_matrix(space)
    ArtworkEmbedding.objects.all().delete()
    whole = catalog_embedding.embed_catalog(batch_size=20, chunk_size=0)  # the one-process path
    assert whole.chunks == 0 and len(_chunks()) == 3  # no new jobs
    ids2, plain, _ = vectors.fused_matrix(space)
    assert list(ids) == list(ids2)
    assert np.allclose(chunked, plain, atol=1e-5)
    again = catalog_embedding.embed_catalog()
    assert again.up_to_date == n and again.chunks == 0


def test_a_small_run_makes_no_jobs(imported_demo, settings):
    settings.RETRIEVAL_EMBED_CHUNK = Artwork.objects.count()
    report = catalog_embedding.embed_catalog()
    assert report.chunks == 0 and not Job.objects.exists()
    assert ArtworkEmbedding.objects.count() == Artwork.objects.count()


def test_a_chunk_another_worker_runs_is_waited_for_not_run_again(
    imported_demo, small_chunks, monkeypatch, other_worker
):
    taken = {}

    def claimed_elsewhere(chunk_jobs):
        taken["pk"] = chunk_jobs[1].pk
        Job.objects.filter(pk=chunk_jobs[1].pk).update(
            status=JobStatus.RUNNING, worker=other_worker
        )

    _after_chunks_are_made(monkeypatch, claimed_elsewhere)
    waits = []

    def other_worker_finishes(seconds):
        waits.append(seconds)
        if len(waits) == 2:  # meanwhile, the other worker embeds its chunk
            summary = catalog_embedding.embed_chunk_run(taken["pk"], lambda *a: None)
            jobs.job_succeed(taken["pk"], summary)

    monkeypatch.setattr(catalog_embedding, "_chunks_wait", other_worker_finishes)
    stages = []
    report = catalog_embedding.embed_catalog(progress=lambda d, t, s="": stages.append(s))
    assert len(waits) == 2  # it waited for the chunk, then finished
    chunks = _chunks()
    assert {c.status for c in chunks} == {JobStatus.SUCCEEDED}
    other = Job.objects.get(pk=taken["pk"])
    assert other.worker == other_worker and other.attempts == 0  # never claimed by the run
    assert [c.worker for c in chunks].count(processes.identity()) == 2
    assert report.workers == 2 and stages[-1] == "embedding artworks (2 workers)"
    assert report.captions_embedded == Artwork.objects.count()
    assert ArtworkEmbedding.objects.count() == Artwork.objects.count()


def test_a_chunk_whose_worker_died_is_taken_over(imported_demo, small_chunks, monkeypatch):
    dead = _dead_worker()

    def lost(chunk_jobs):
        Job.objects.filter(pk=chunk_jobs[0].pk).update(status=JobStatus.RUNNING, worker=dead)

    _after_chunks_are_made(monkeypatch, lost)
    monkeypatch.setattr(
        catalog_embedding, "_chunks_wait", lambda s: pytest.fail("nothing to wait for")
    )
    catalog_embedding.embed_catalog()
    first = _chunks()[0]
    assert first.status == JobStatus.SUCCEEDED and first.recoveries == 1
    assert first.worker == processes.identity()
    assert ArtworkEmbedding.objects.count() == Artwork.objects.count()


def test_a_failed_chunk_stops_the_run_naming_it(imported_demo, small_chunks, monkeypatch):
    failed = {}

    def fails_elsewhere(chunk_jobs):
        failed["pk"] = chunk_jobs[2].pk
        Job.objects.filter(pk=chunk_jobs[2].pk).update(
            status=JobStatus.RUNNING, worker=_dead_worker(), recoveries=99
        )

    _after_chunks_are_made(monkeypatch, fails_elsewhere)
    with pytest.raises(
        catalog_embedding.EmbedChunkFailed, match=f"#{failed.get('pk', '')}"
    ) as info:
        catalog_embedding.embed_catalog()
    assert f"chunk job #{failed['pk']} (20 artworks) failed" in str(info.value)
    assert "Gave up after" in str(info.value)  # the chunk's own error
    assert not Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists()
    assert ArtworkEmbedding.objects.count() == 100  # the two chunks before it are kept
    report = catalog_embedding.embed_catalog()  # the next run embeds the rest
    assert report.up_to_date == 100 and report.captions_embedded == 20


def test_cancelling_the_run_cancels_its_chunks(imported_demo, small_chunks):
    def cancel_after_a_batch(done, total, stage=""):
        if done >= 20 and stage.startswith("embedding"):
            raise jobs.JobCancelled("cancelled by the user")

    with pytest.raises(jobs.JobCancelled, match="cancelled by the user"):
        catalog_embedding.embed_catalog(batch_size=20, progress=cancel_after_a_batch)
    chunks = _chunks()
    assert len(chunks) == 3 and {c.status for c in chunks} == {JobStatus.CANCELLED}
    assert ArtworkEmbedding.objects.count() == 20  # the committed batch is kept


def test_a_cancelled_rebuild_job_cancels_its_chunks(imported_demo, small_chunks, monkeypatch):
    from retrieval.tasks import INDEX_REBUILD, index_rebuild_task

    job = jobs.job_create(INDEX_REBUILD)
    original = catalog_embedding._chunk_embed  # noqa: SLF001

    def cancel_requested_meanwhile(*args, **kwargs):
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        return original(*args, **kwargs)

    monkeypatch.setattr(catalog_embedding, "_chunk_embed", cancel_requested_meanwhile)
    index_rebuild_task.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    chunks = _chunks()
    statuses = {c.status for c in chunks}  # those done before it saw the cancel stay done
    assert len(chunks) == 3 and JobStatus.CANCELLED in statuses
    assert statuses <= {JobStatus.CANCELLED, JobStatus.SUCCEEDED}
    assert {c.params["parent"] for c in chunks} == {job.pk}


def test_leftover_chunks_of_an_earlier_run_are_cancelled_first(imported_demo, small_chunks):
    catalog_embedding.embed_catalog(limit=1)  # makes the space
    space = EmbeddingSpace.objects.get()
    ids = list(Artwork.objects.order_by("id").values_list("id", flat=True)[1:30])
    queued = jobs.job_create(
        catalog_embedding.EMBED_CHUNK, params=catalog_embedding.chunk_params(space.key, ids)
    )
    running = jobs.job_create(
        catalog_embedding.EMBED_CHUNK, params=catalog_embedding.chunk_params(space.key, ids)
    )
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING, worker=_dead_worker())
    report = catalog_embedding.embed_catalog()
    assert report.chunks == 3
    for job in (queued, running):
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
    new = [c for c in _chunks() if c.pk not in (queued.pk, running.pk)]
    assert {c.status for c in new} == {JobStatus.SUCCEEDED}


def test_the_chunk_task_embeds_its_chunk_once(imported_demo, small_chunks):
    catalog_embedding.embed_catalog(limit=1)
    space = EmbeddingSpace.objects.get()
    ids = list(Artwork.objects.order_by("id").values_list("id", flat=True)[:30])
    job = jobs.job_create(
        catalog_embedding.EMBED_CHUNK, params=catalog_embedding.chunk_params(space.key, ids)
    )
    result = embed_chunk_task.apply(args=[job.pk]).get()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and result["captions_embedded"] == 29
    assert result["up_to_date"] == 1 and job.done == 30
    assert ArtworkEmbedding.objects.count() == 30
    again = embed_chunk_task.apply(args=[job.pk]).get()  # a late copy of its message
    assert again["skipped"] is True and "already succeeded" in again["reason"]


def test_the_command_reports_its_chunks(imported_demo):
    out = StringIO()
    call_command("embed_catalog", "--chunk-size", "50", "--no-progress", stdout=out)
    assert "in 3 chunk jobs, embedded by 1 process" in out.getvalue()
    assert ArtworkEmbedding.objects.count() == Artwork.objects.count()


def test_chunk_params_keep_ids_as_runs_and_read_back_in_order():
    ids = [3, 4, 5, 6, 9, 11, 12, 40]
    params = catalog_embedding.chunk_params("space", ids, parent=7, batch=16)
    assert params["id_runs"] == [[3, 6], [9, 9], [11, 12], [40, 40]]
    assert params["artworks"] == 8 and params["parent"] == 7 and params["batch"] == 16
    assert catalog_embedding.chunk_ids(params) == ids
    assert catalog_embedding.chunk_ids(catalog_embedding.chunk_params("space", [])) == []


@pytest.mark.parametrize(
    "option, value",
    [("--chunk-size", "-5"), ("--batch-size", "0"), ("--batch-size", "-1"), ("--limit", "-3")],
)
def test_the_command_refuses_sizes_that_would_embed_nothing(imported_demo, option, value):
    """A negative chunk or batch size used to report success having embedded nothing."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="must be at least"):
        call_command("embed_catalog", option, value, "--no-progress")
    assert not ArtworkEmbedding.objects.exclude(fused_hash="").exists()
