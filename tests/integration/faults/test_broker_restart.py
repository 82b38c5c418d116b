"""2. The Redis broker restarting while a job runs and another waits in it, the broker down
while the web side enqueues, and Redis restarting during a labelling run."""

import time

import pytest

from jobs.models import JobStatus
from tests.helpers import process_env, sending_to, stop_worker, wait_for
from tests.integration.faults.harness import (
    alive,
    counted,
    fault_worker,
    job_get,
    wait_flag,
    wait_job,
)


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_broker_restarting_loses_no_job(
    indexed_demo, redis_server, client, django_user_model, tmp_path
):
    """Redis restarts while job A runs and job B waits in it; later it is down while the web
    side enqueues job C. The worker reconnects, B is still in the broker after the restart,
    the web answers C at once (queued, with the reason in its stage) and C is re-sent and
    run once Redis is back. A late copy of A's message (as Redis redelivers a message whose
    ack was lost) does not run the finished job again."""
    from jobs.services import job_create, job_enqueue
    from retrieval.tasks import index_rebuild_task

    url = redis_server.url(1)
    go, flag = tmp_path / "go", tmp_path / "paused.flag"
    env = process_env(
        CELERY_BROKER_URL=url,
        CELERY_RESULT_BACKEND=url,
        JOBS_RESEND_SECONDS=1,
        MYTHRAGEN_TEST_GO=go,
    )
    admin = django_user_model.objects.create_superuser("boss", "", "pw")
    client.force_login(admin)
    log = tmp_path / "worker.log"
    redis = redis_server.client(1)
    with sending_to(url):
        worker = fault_worker(env, log, "pause-index-rebuild", flag)
        try:
            first = client.post("/api/index/")
            assert first.status_code == 202, first.content
            a = first.json()["id"]
            from django.db import transaction

            with transaction.atomic():  # a second job behind A (the API allows one at a time)
                b = job_create("index_rebuild")
                job_enqueue(b, index_rebuild_task)
            wait_for(flag.exists, timeout=90)
            assert job_get(a).status == JobStatus.RUNNING
            assert job_get(b.pk).status == JobStatus.QUEUED and redis.llen("celery") == 1

            # Restart the broker with A running (paused in its task) and B in the queue.
            redis_server.stop()
            redis_server.start()
            assert redis.llen("celery") == 1  # B survived the restart (append-only file)
            go.touch()
            started = time.monotonic()
            wait_job(a, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
            wait_job(b.pk, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
            restart_recovery = time.monotonic() - started

            # The broker is down while the web side enqueues C.
            redis_server.stop()
            t0 = time.monotonic()
            down = client.post("/api/index/")
            enqueue_seconds = time.monotonic() - t0
            assert down.status_code == 202, down.content
            c = down.json()
            assert c["status"] == "queued" and "task queue" in c["stage"], c
            assert job_get(c["id"]).celery_task_id == ""  # recorded, not sent
            assert client.get(f"/api/jobs/{c['id']}/").json()["stage"] == c["stage"]
            redis_server.start()
            t1 = time.monotonic()
            wait_job(c["id"], [JobStatus.SUCCEEDED], [(worker, log)], timeout=90)
            outage_recovery = time.monotonic() - t1

            # A message of A delivered again (an ack lost in the restart, so Redis hands it
            # out once its visibility timeout passes): the finished job does not run again.
            from celery import Celery

            copy = index_rebuild_task.apply_async(args=[a])
            # (not made the current app: later tests' shared tasks would send through it)
            reader = Celery(broker=url, backend=url, set_as_current=False)
            results = reader.AsyncResult(copy.id)
            wait_for(lambda: alive(worker, log) or results.ready(), timeout=30)
            assert results.state == "FAILURE" and "already succeeded" in str(results.result)
        finally:
            go.touch()
            stop_worker(worker)
    for pk in (a, b.pk, c["id"]):
        job = job_get(pk)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1, (pk, job.attempts)
    assert "Re-sent job" in log.read_text() or "re-sent" in log.read_text()
    print(
        f"\n[fault 2] after a restart mid-job: A and B done in {restart_recovery:.1f}s; "
        f"enqueue with the broker down answered in {enqueue_seconds:.2f}s; "
        f"C done {outage_recovery:.1f}s after Redis came back"
    )


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_redis_restarting_during_a_labelling_run_labels_each_artwork_once(
    imported_demo, tiny_models_dir, redis_server, tmp_path
):
    """Redis restarts while a labelling run is half done (its first batches committed). The
    run goes on and finishes; every unlabelled artwork gets exactly one VQA label and the
    run's body executes once, although Redis hands its message out a second time (a short
    visibility timeout here: the copy reaches the worker and is dropped by the claim). A
    second request during the run shares the running job."""
    from catalog.models import Artwork, GenreLabel
    from labelling.services import labelling_request
    from labelling.tasks import LABEL_GENRES

    url = redis_server.url(3)
    go, flag, counts, log = (tmp_path / n for n in ("go", "paused", "counts.txt", "w.log"))
    vqa = str(tiny_models_dir / "tiny-blip2-vqa")
    env = process_env(
        CELERY_BROKER_URL=url,
        CELERY_RESULT_BACKEND=url,
        CELERY_VISIBILITY_TIMEOUT=3,
        CELERY_RESTORE_INTERVAL=1,
        JOBS_RESEND_SECONDS=1,
        MYTHRAGEN_TEST_GO=go,
        MYTHRAGEN_TEST_COUNT=counts,
        MYTHRAGEN_VQA_MODEL=vqa,
        LABEL_BATCH=4,
        GENRE_LABELLER="vqa",  # the paper's zero-shot VQA labels, tiny model
    )
    todo = sorted(
        Artwork.objects.filter(genre__isnull=True).exclude(image="").values_list("id", flat=True)
    )
    assert len(todo) > 8
    with sending_to(url):
        worker = fault_worker(env, log, "pause-labelling-at:4", flag)
        try:
            job = labelling_request(LABEL_GENRES)
            wait_flag(flag, worker, log)
            assert labelling_request(LABEL_GENRES).pk == job.pk  # one run at a time
            labelled_before = GenreLabel.objects.filter(source="vqa").count()
            assert 0 < labelled_before < len(todo)  # half done
            redis_server.stop()
            redis_server.start()
            back = time.monotonic()
            go.touch()
            done = wait_job(job.pk, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
            recovered = time.monotonic() - back
            # The copy Redis handed out again is dropped by the claim (the job is done).
            wait_for(lambda: "already succeeded" in log.read_text(), timeout=30)
        finally:
            go.touch()
            stop_worker(worker)
    labelled = sorted(GenreLabel.objects.filter(source="vqa").values_list("artwork_id", flat=True))
    assert labelled == todo  # every artwork labelled, none twice
    assert done.result["labelled"] == len(todo)  # the run counts what it labelled in all
    assert done.attempts == 1 and done.recoveries == 0
    assert counted(counts) == [f"label_genres job {job.pk}"]  # its body ran once
    print(
        f"\n[fault 2b] Redis restarted after {labelled_before}/{len(todo)} labels: the run "
        f"finished {recovered:.1f}s after Redis was back; a redelivered copy was dropped"
    )
