"""A generation whose LoRA another job is training waits in the queue, never in a worker
(issue #15, item 1: before, it slept in the only worker for as long as the other job's
claim looked alive, 14 minutes behind a dead one, blocking every later job)."""

from __future__ import annotations

import time

import pytest

from generation import services
from generation.models import Generation, LoraStatus
from generation.services import lora_cache, retrieval_sets, training
from generation.tasks import generation_train_task
from jobs import services as jobs
from jobs.models import Job, JobStatus

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"

pytestmark = pytest.mark.django_db


def _in_training_phase(user, seed: int, pinned: dict) -> Generation:
    """A generation whose prepare phase ran: queued for its training task."""
    generation = services.generation_request(
        user,
        services.GenerationParams(prompt=PROMPT, seed=seed, with_baseline=False),
        pinned=pinned,
    )
    job_id = generation.job_id
    with jobs.job_running(job_id, task_name="generation.prepare") as report:
        assert services.generation_prepare(generation.pk, report) == Generation.Phase.TRAIN
    generation.refresh_from_db()
    return generation


def test_a_generation_waiting_for_another_jobs_lora_waits_in_the_queue(
    indexed_demo, gen_settings, user, sent, django_capture_on_commit_callbacks
):
    pinned = retrieval_sets.retrieval_sets_build(PROMPT, gen_settings.GEN_K)
    with django_capture_on_commit_callbacks(execute=True):
        trainer = _in_training_phase(user, 1, pinned)
        waiter = _in_training_phase(user, 2, pinned)
    entry = trainer.lora_artist_style
    assert waiter.lora_artist_style_id == entry.pk  # the same LoRA
    assert lora_cache.lora_claim(entry, trainer.job_id)  # noqa: SLF001 - the trainer is at it
    Job.objects.filter(pk=trainer.job_id).update(status=JobStatus.RUNNING)
    sent.clear()

    started = time.monotonic()
    outcome = generation_train_task.apply(args=[waiter.job_id, waiter.pk]).get()
    took = time.monotonic() - started
    assert outcome == {"waiting_for": entry.key} and took < 5  # no sleeping in the worker
    job = Job.objects.get(pk=waiter.job_id)
    assert job.status == JobStatus.QUEUED and job.worker == "" and job.wait_until
    assert job.stage.startswith(f"waiting for LoRA {entry.key[:12]} (being trained by job #")
    waiter.refresh_from_db()
    assert waiter.phase == "train" and waiter.phase_attempts == 0  # waiting is no attempt
    assert sent == []  # nothing sent until the training ends (or the wait is over)

    # The trainer finishes this LoRA: the waiter is sent again at once, with its task.
    entry.refresh_from_db()
    assert entry.status == LoraStatus.TRAINING and entry.training_job_id == trainer.job_id
    training.lora_train(entry, job_id=trainer.job_id)
    assert [(spec["job_id"], spec["task"]) for spec in sent] == [
        (waiter.job_id, "generation.train")
    ]
    assert sent[0]["task_id"] == Job.objects.get(pk=waiter.job_id).params["_task"]["task_id"]


def test_a_claim_of_a_job_that_is_over_is_free(indexed_demo, gen_settings, user):
    """A trainer cancelled or failed while its worker was gone leaves its claim behind:
    the next job takes it at once instead of waiting out the stale threshold."""
    pinned = retrieval_sets.retrieval_sets_build(PROMPT, gen_settings.GEN_K)
    first = services.generation_request(
        user, services.GenerationParams(prompt=PROMPT, seed=1), pinned=pinned
    )
    second = services.generation_request(
        user, services.GenerationParams(prompt=PROMPT, seed=2), pinned=pinned
    )
    training = lora_cache.training_config_current().to_dict()
    entry = lora_cache.lora_entry_for("artist_style", pinned["sets"]["artist_style"], training)
    assert lora_cache.lora_claim(entry, first.job_id)  # noqa: SLF001
    assert not lora_cache.lora_claim(entry, second.job_id)  # noqa: SLF001 - alive: taken
    jobs.job_mark_cancelled(first.job_id)
    assert lora_cache.lora_claim(entry, second.job_id)  # noqa: SLF001 - over: free
