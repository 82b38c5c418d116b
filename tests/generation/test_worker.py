"""Generation through real Celery workers on Redis: request -> training -> rendering ->
gallery with progress observed, separate training and rendering queues, and a worker
killed mid-training whose job resumes from the LoRA checkpoint on another worker."""

from __future__ import annotations

import json
import os
import signal

import pytest
from django.urls import reverse

from generation.models import Generation, LoraCacheEntry
from jobs.models import Job, JobStatus
from tests.helpers import sending_to, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"


@pytest.fixture(scope="module")
def redis_url(redis_server) -> str:
    return redis_server.url(0)


def _worker_env(settings, redis_url: str, **extra) -> dict[str, str]:
    """A worker's environment; tuning constants (LORA_STEPS, ...) go in MYTHRAGEN_TUNING."""
    tuning = {"LORA_RESOLUTION": 64, "LORA_RANK": 8, "LORA_OPTIMIZER": "adamw"}
    tuning.update({k: extra.pop(k) for k in list(extra) if k in settings.TUNING})
    env = {
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "MYTHRAGEN_INDEX_DIR": str(settings.RETRIEVAL_INDEX_DIR),
        "MYTHRAGEN_EMBEDDER": "minilm",
        "MYTHRAGEN_SD_MODEL": settings.SD_MODEL,
        "MYTHRAGEN_CLIP_MODEL": settings.CLIP_MODEL,
        "MYTHRAGEN_DEVICE": "cpu",
        "MYTHRAGEN_PRECISION": "float32",
        "MYTHRAGEN_LORA_DIR": str(settings.LORA_DIR),
        "MYTHRAGEN_LORA_CACHE_BUDGET_MB": "0",
        "MYTHRAGEN_TUNING": json.dumps(tuning),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def indexed(imported_demo, gen_settings):
    from retrieval import services

    services.index_rebuild()
    return gen_settings


def _request(client, user, **fields) -> Generation:
    client.force_login(user)
    body = {"prompt": PROMPT, "seed": 4, **fields}
    response = client.post("/api/generations/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    return Generation.objects.get(pk=response.json()["id"])


def _dead(worker, log) -> None:
    if worker.poll() is not None:
        raise AssertionError(f"worker exited {worker.returncode}:\n{log.read_text()[-3000:]}")


def test_request_trains_renders_and_reaches_the_gallery_on_real_workers(
    indexed, client, user, tmp_path, redis_url
):
    settings = indexed
    env = _worker_env(settings, redis_url, LORA_STEPS=60, LORA_CHECKPOINT_EVERY=20)
    train_log, render_log = tmp_path / "train.log", tmp_path / "render.log"
    with sending_to(redis_url):
        trainer = start_worker(env, queues="celery,training", log=train_log)
        renderer = start_worker(env, queues="rendering", log=render_log)
        try:
            generation = _request(client, user, steps=30, with_baseline=True)
            seen: list[tuple[str, str, float]] = []

            def finished():
                _dead(trainer, train_log)
                _dead(renderer, render_log)
                job = Job.objects.get(pk=generation.job_id)
                row = (job.status, job.stage, job.progress)
                if not seen or seen[-1] != row:
                    seen.append(row)
                return job.status not in (JobStatus.QUEUED, JobStatus.RUNNING)

            wait_for(finished, timeout=240, interval=0.02)
        finally:
            stop_worker(trainer)
            stop_worker(renderer)
    generation.refresh_from_db()
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    stages = [stage for _status, stage, _p in seen]
    assert any(s.startswith(("retrieving", "caching")) for s in stages), stages
    training = [p for _st, s, p in seen if s.startswith("training")]
    assert training and any(0 < p < 1 for p in training), seen  # progress along the way
    assert any(s.startswith("rendering") for s in stages), stages
    assert any(s.startswith("queued for") for s in stages), stages  # handed between queues
    # Each queue's tasks ran on the worker that consumes it.
    assert "Task generation.train[" in train_log.read_text()
    assert "Task generation.render[" in render_log.read_text()
    assert "Task generation.render[" not in train_log.read_text()

    entries = LoraCacheEntry.objects.filter(status="ready")
    assert entries.count() == 2 and all(e.train_info["steps"] == 60 for e in entries)
    gallery = client.get(reverse("generation:gallery"))
    assert generation.image.url.encode() in gallery.content
    state = client.get(f"/api/generations/{generation.pk}/").json()
    assert state["status"] == "succeeded" and state["provenance"]["seed"] == 4


def test_a_worker_killed_mid_training_resumes_from_the_checkpoint(
    indexed, client, user, tmp_path, redis_url
):
    settings = indexed
    steps = {"LORA_STEPS": 150, "LORA_CHECKPOINT_EVERY": 20}
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    queues = "celery,training,rendering"
    with sending_to(redis_url):
        first = start_worker(
            _worker_env(settings, redis_url, **steps), queues=queues, log=first_log
        )
        try:
            generation = _request(client, user, with_baseline=False)

            def past_a_checkpoint():
                _dead(first, first_log)
                job = Job.objects.get(pk=generation.job_id)
                assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), job.error
                return job.stage.startswith("training 1/") and job.done >= 45

            wait_for(past_a_checkpoint, timeout=180, interval=0.05)
        finally:
            os.kill(first.pid, signal.SIGKILL)  # no warm shutdown: the task is not acknowledged
            first.wait()
        job = Job.objects.get(pk=generation.job_id)
        assert job.status == JobStatus.RUNNING
        # Another worker takes the unacknowledged task over (a short visibility timeout
        # here; in production it outlasts the longest training).
        second = start_worker(
            _worker_env(
                settings, redis_url, CELERY_VISIBILITY_TIMEOUT=2, CELERY_RESTORE_INTERVAL=1, **steps
            ),
            queues=queues,
            log=second_log,
        )
        try:

            def done():
                _dead(second, second_log)
                status = Job.objects.get(pk=generation.job_id).status
                return status not in (JobStatus.QUEUED, JobStatus.RUNNING)

            wait_for(done, timeout=300, interval=0.2)
        finally:
            stop_worker(second)
    generation.refresh_from_db()
    job = generation.job
    assert job.status == JobStatus.SUCCEEDED, job.error
    resumed = [e.train_info["resumed_from_step"] for e in LoraCacheEntry.objects.all()]
    assert max(resumed) >= 40, resumed  # the first LoRA continued from its checkpoint
    assert all(e.train_info["steps"] == 150 for e in LoraCacheEntry.objects.all())
    assert job.attempts >= 4  # prepare, train (killed), train (resumed), render
