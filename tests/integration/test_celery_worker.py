"""A real Celery worker runs a real task against the test database.

Two brokers: kombu's filesystem transport (the embedded default, no server) and
Redis (production). The worker is a separate process, so the test database must be
committed data: these tests use transactional test cases.
"""

import pytest
from celery import Celery

from catalog.demo import plan_demo_catalog
from catalog.models import Artwork
from retrieval import catalog_embedding
from tests.harness import wait_for
from tests.helpers import start_worker, stop_worker, wait_result

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def _run_import_through_worker(broker_env: dict, client: Celery, demo_dir, tmp_path):
    log = tmp_path / "worker.log"
    worker = start_worker(broker_env, log=log)
    try:
        result = client.send_task("catalog.wikiart_import", args=[str(demo_dir)])
        summary = wait_result(result, worker, log)
    finally:
        stop_worker(worker)
    assert result.state == "SUCCESS"
    return summary


def _filesystem_broker(tmp_path):
    """A filesystem broker and file result backend in `tmp_path`, and a client of them."""
    broker_dir, results = tmp_path / "broker", tmp_path / "results"
    for sub in ("queue", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True)
    results.mkdir()
    client = Celery(broker="filesystem://", backend=f"file://{results}", set_as_current=False)
    client.conf.broker_transport_options = {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "control_folder": str(broker_dir / "control"),
        "polling_interval": 0.2,
    }
    return client, broker_dir, results


def test_filesystem_broker_worker_imports_the_demo_catalog(demo_dir, tmp_path):
    client, broker_dir, results = _filesystem_broker(tmp_path)
    summary = _run_import_through_worker(
        {
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_BROKER_DIR": str(broker_dir),
            "CELERY_RESULT_BACKEND": f"file://{results}",
        },
        client,
        demo_dir,
        tmp_path,
    )
    plan = plan_demo_catalog()
    assert summary["created"] == len(plan) and summary["error_count"] == 0
    assert Artwork.objects.count() == len(plan)


def test_redis_broker_worker_imports_the_demo_catalog(demo_dir, tmp_path, redis_server):
    url = redis_server.url(1)
    client = Celery(broker=url, backend=url, set_as_current=False)
    client.connection_for_write().default_channel.client.flushdb()
    summary = _run_import_through_worker(
        {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url},
        client,
        demo_dir,
        tmp_path,
    )
    assert summary["created"] == len(plan_demo_catalog())
    assert Artwork.objects.filter(is_synthetic=True).count() == summary["created"]
    assert summary["images_attached"] == summary["created"]


def test_index_rebuild_job_runs_on_a_real_worker_with_progress(
    imported_demo, tmp_path, settings, redis_server
):
    """Admin-triggered rebuild: a worker embeds, indexes and reports progress in the Job."""
    from jobs.models import Job, JobStatus
    from jobs.services import job_create
    from tests.helpers import wait_for

    url = redis_server.url(2)
    client = Celery(broker=url, backend=url, set_as_current=False)
    client.connection_for_write().default_channel.client.flushdb()
    log = tmp_path / "worker.log"
    worker = start_worker(
        {
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
            "MYTHRAGEN_INDEX_DIR": str(settings.RETRIEVAL_INDEX_DIR),
            "MYTHRAGEN_EMBEDDER": "minilm",
        },
        log=log,
    )
    try:
        job = job_create("index_rebuild")
        client.send_task("retrieval.index_rebuild", args=[job.pk])
        seen_stages = set()

        def finished():
            current = Job.objects.get(pk=job.pk)
            if current.stage:
                seen_stages.add(current.stage.split(":")[0])
            if worker.poll() is not None:
                raise AssertionError(log.read_text()[-3000:])
            return current.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

        wait_for(finished, timeout=180, interval=0.05)
    finally:
        stop_worker(worker)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["n"] == Artwork.objects.count() and job.started_at and job.finished_at
    assert seen_stages & {"embedding artworks", "building index", "assembling fused vectors"}
    from retrieval import selectors

    assert selectors.index_status()["version"] == job.result["version"]


def test_embed_catalog_shares_its_chunks_with_a_real_worker(
    imported_demo, tmp_path, settings, monkeypatch
):
    """Issue #18, item 5: the command's run and one filesystem-broker worker embed the
    chunks between them: each embeds at least one, none twice, one progress."""
    from jobs import processes, sending
    from jobs.models import Job, JobStatus
    from retrieval.models import ArtworkEmbedding

    client, broker_dir, results = _filesystem_broker(tmp_path)

    def send(job_id, spec, *args, **kwargs):  # the recorded sends, to this test's broker
        result = client.send_task(spec["task"], args=spec["args"], task_id=spec["task_id"])
        Job.objects.filter(pk=job_id, celery_task_id="").update(celery_task_id=result.id)
        return True

    monkeypatch.setattr(sending, "_send", send)
    log = tmp_path / "worker.log"
    worker = start_worker(
        {
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_BROKER_DIR": str(broker_dir),
            "CELERY_RESULT_BACKEND": f"file://{results}",
            "MYTHRAGEN_INDEX_DIR": str(settings.RETRIEVAL_INDEX_DIR),
            "MYTHRAGEN_EMBEDDER": "minilm",
        },
        log=log,
    )
    me, reports = processes.identity(), []

    def progress(done, total, stage=""):
        reports.append((done, total))
        if done and len([d for d, _t in reports if d]) == 1:  # first batch: hold the
            # first chunk here until the worker runs another (no race on who is faster)

            def worker_has_one():
                if worker.poll() is not None:
                    raise AssertionError(log.read_text()[-3000:])
                return (
                    Job.objects.filter(kind=catalog_embedding.EMBED_CHUNK)
                    .exclude(worker__in=["", me])
                    .exists()
                )

            wait_for(worker_has_one, timeout=120, interval=0.1)

    try:
        report = catalog_embedding.embed_catalog(chunk_size=20, batch_size=10, progress=progress)
    finally:
        stop_worker(worker)
    chunks = Job.objects.filter(kind=catalog_embedding.EMBED_CHUNK)
    assert chunks.count() == 6 and {c.status for c in chunks} == {JobStatus.SUCCEEDED}
    workers = {c.worker for c in chunks}
    assert len(workers) == 2 and me in workers and report.workers == 2
    assert all(c.attempts == 1 for c in chunks)  # each chunk ran once
    n = Artwork.objects.count()
    assert ArtworkEmbedding.objects.count() == n and report.captions_embedded == n
    done = [d for d, t in reports if t == n]
    assert done == sorted(done) and done[-1] == n
