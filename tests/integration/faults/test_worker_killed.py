"""1. A Celery worker SIGKILLed between two phases, during training, while a model loads
and while it renders; cancel of an orphaned job; duplicate and unsent messages."""

import time
from pathlib import Path

import pytest
from django.utils import timezone

from jobs import processes
from jobs.models import Job, JobStatus
from tests.helpers import process_env, stop_worker, wait_for
from tests.integration.faults.harness import (
    PROMPT,
    counted,
    fault_worker,
    job_get,
    resumed_in,
    wait_job,
    wait_killed,
)


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_between_phases_and_during_training_loses_nothing(
    indexed_demo, tiny_generation, broker, client, django_user_model, tmp_path
):
    """On the embedded default and on Redis, with production thresholds (a 15-minute stale
    threshold, Redis's 13-hour visibility timeout):

    a. the worker dies between prepare and train, after handing the job over but before the
       training task reached the broker: a restarted worker re-sends it.
    b. the worker dies mid-training (the filesystem transport had consumed the message;
       Redis holds it unacknowledged for hours). Before, the job showed "running" for good
       and an identical request waited for its LoRA inside the worker. Now the restarted
       worker finds the job's worker gone and resumes it at once, from its checkpoint; the
       identical request trains nothing, and answers to `celery inspect ping` while the
       training runs (the prefork pool of `make run`).
    """
    from django.conf import settings

    from generation import services as gen
    from generation.models import Generation, LoraCacheEntry
    from generation.services.retrieval_sets import retrieval_sets_build

    env = process_env(**broker.env, **tiny_generation)
    lora_dir = Path(env["MYTHRAGEN_LORA_DIR"])
    queues = "celery,training,rendering"
    flag, counts = tmp_path / "fault.flag", tmp_path / "counts.txt"
    env["MYTHRAGEN_TEST_COUNT"] = str(counts)
    user = django_user_model.objects.create_user("painter", "", "pw")
    client.force_login(user)
    t0, marks = time.monotonic(), {}
    with broker.sending():
        first_log = tmp_path / "w1.log"
        first = fault_worker(env, first_log, "die-before-sending-the-training-task", flag, queues)
        # The request as the API makes it, with the retrieval sets found here and pinned
        # (as a re-run does): this process has the text model loaded, the workers need none.
        params = gen.GenerationParams(prompt=PROMPT, seed=4, with_baseline=False)
        pinned = retrieval_sets_build(PROMPT, settings.GEN_K)
        generation = gen.generation_request(user, params, pinned=pinned)
        job_id = generation.job_id
        wait_killed(first, first_log)
        marks["first killed between phases"] = time.monotonic() - t0
        job, generation = job_get(job_id), Generation.objects.get(pk=generation.pk)
        # The stuck state of the known caveat: queued for training, nothing in the broker.
        assert (job.status, generation.phase) == (JobStatus.QUEUED, "train")
        assert job.stage.startswith("queued for training") and job.celery_task_id == ""

        # (a) A restarted worker re-sends the training task; this one dies at step >= 12 of
        # the first LoRA (checkpoints every 5 steps). Meanwhile another user asks for the
        # same picture (the same two LoRAs).
        second_log = tmp_path / "w2.log"
        second = fault_worker(env, second_log, "die-at-training-step:12", flag, queues)
        wait_job(job_id, [JobStatus.RUNNING], [(second, second_log)], timeout=120)
        marks["training task re-sent and running"] = time.monotonic() - t0
        other_user = django_user_model.objects.create_user("sculptor", "", "pw")
        twin = gen.generation_request(
            other_user,
            gen.GenerationParams(prompt=PROMPT, seed=5, with_baseline=False),
            pinned=pinned,
        )
        wait_killed(second, second_log)
        marks["second killed mid-training"] = time.monotonic() - t0
        job = job_get(job_id)
        assert job.status == JobStatus.RUNNING and job.stage.startswith("training 1/")
        assert list(lora_dir.glob("work/*/*")), "no checkpoint written before the kill"

        # (b) The worker is started again, as `make run` does: the job resumes at once.
        third_log = tmp_path / "w3.log"
        restarted = time.monotonic()
        third = fault_worker(env, third_log, queues=queues)
        try:
            resumed = resumed_in(job_id, third, third_log, restarted)
            marks["resumed by the restarted worker"] = time.monotonic() - t0
            answers = broker.ping()  # while it trains (or renders)
            done = wait_job(job_id, [JobStatus.SUCCEEDED], [(third, third_log)], timeout=180)
            finished = time.monotonic() - restarted
            marks["done"] = time.monotonic() - t0
            twin_done = wait_job(twin.job_id, [JobStatus.SUCCEEDED], [(third, third_log)], 180)
        finally:
            stop_worker(third)
    assert resumed < 60, f"resumed {resumed:.1f}s after the restart"
    assert answers, "the worker did not answer `celery inspect ping` while a task ran"
    assert done.recoveries == 1 and "stopped reporting" not in done.error
    assert twin_done.recoveries == 0
    generation.refresh_from_db()
    twin.refresh_from_db()
    assert generation.image and generation.provenance["prompt"] == PROMPT
    assert twin.image and twin.lora_artist_style_id == generation.lora_artist_style_id
    entries = LoraCacheEntry.objects.filter(status="ready")
    assert entries.count() == 2 and all(e.train_info["steps"] == 30 for e in entries)
    assert {e.training_job_id for e in entries} == {job_id}  # the twin trained nothing
    resumed_from = max(e.train_info["resumed_from_step"] for e in entries)
    assert resumed_from >= 10, [e.train_info for e in entries]  # continued from its checkpoint
    assert not list(lora_dir.glob("work/*/*"))  # checkpoints cleared once trained
    # Nothing ran twice: the first LoRA's training began twice (killed, resumed), the
    # second once; each generation rendered once.
    runs = counted(counts)
    trainings = sorted(line.split()[1] for line in runs if line.startswith("train "))
    killed = [e.key for e in entries if e.train_info["resumed_from_step"] > 0]
    assert trainings == sorted([*killed, *(e.key for e in entries)]), runs
    assert all(line.endswith(f"job {job_id}") for line in runs if line.startswith("train "))
    renders = sorted(line for line in runs if line.startswith("render "))
    assert renders == sorted(
        [f"render {generation.pk} job {job_id}", f"render {twin.pk} job {twin.job_id}"]
    )
    timeline = ", ".join(f"{what} {at:.1f}s" for what, at in marks.items())
    print(
        f"\n[fault 1, {broker.name}] {timeline}; resumed {resumed:.1f}s after the restart "
        f"(from step {resumed_from}), done {finished:.1f}s after it; ping answered: "
        f"{len(answers)}"
    )


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_a_model_loads_and_while_it_renders_resumes(
    indexed_demo, tiny_generation, broker, django_user_model, tmp_path
):
    """Killed while it loads Stable Diffusion, then while it renders: each restarted worker
    resumes the job within a minute; the picture is rendered once to the end."""
    from django.conf import settings

    from generation import services as gen
    from generation.models import Generation
    from generation.services.retrieval_sets import retrieval_sets_build

    env = process_env(**broker.env, **tiny_generation)
    queues = "celery,training,rendering"
    flag, counts = tmp_path / "fault.flag", tmp_path / "counts.txt"
    env["MYTHRAGEN_TEST_COUNT"] = str(counts)
    user = django_user_model.objects.create_user("painter", "", "pw")
    # No LoRA weight: no training, straight to rendering.
    params = gen.GenerationParams(
        prompt=PROMPT,
        seed=7,
        steps=6,
        with_baseline=False,
        weight_artist_style=0,
        weight_genre_style=0,
    )
    recovered = {}
    with broker.sending():
        generation = gen.generation_request(
            user, params, pinned=retrieval_sets_build(PROMPT, settings.GEN_K)
        )
        job_id = generation.job_id
        steps = [
            ("loading", "die-while-loading-the-sd-model"),
            ("rendering", "die-at-render-step:3"),
            ("done", ""),
        ]
        for n, (what, fault) in enumerate(steps):
            log = tmp_path / f"w{n}.log"
            started = time.monotonic()
            worker = fault_worker(env, log, fault, flag, queues)
            try:
                if n:
                    recovered[steps[n - 1][0]] = resumed_in(job_id, worker, log, started)
                if fault:
                    wait_killed(worker, log)
                    job = job_get(job_id)
                    assert job.status == JobStatus.RUNNING, (job.status, job.error)
                    if what == "loading":
                        assert job.stage.startswith("loading model "), job.stage
                else:
                    done = wait_job(job_id, [JobStatus.SUCCEEDED], [(worker, log)], 120)
            finally:
                stop_worker(worker)
    generation = Generation.objects.get(pk=generation.pk)
    assert generation.image and done.recoveries == 2 and generation.phase == "done"
    assert all(seconds < 60 for seconds in recovered.values()), recovered
    renders = [line for line in counted(counts) if line.startswith("render ")]
    assert renders == [f"render {generation.pk} job {job_id}"] * 3  # two killed, one whole
    times = ", ".join(f"killed while {k}: resumed in {v:.1f}s" for k, v in recovered.items())
    print(f"\n[fault 1b, {broker.name}] {times} (from the restarted worker's start)")


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)  # the database decides
def test_cancel_ends_at_once_a_job_whose_worker_was_killed(
    indexed_demo, tiny_generation, broker, client, django_user_model, tmp_path
):
    """Before, cancel answered 200 and changed nothing (the job waited for a step that no
    worker would ever run), and retry answered 409. Now the job is cancelled in the same
    request, a restarted worker leaves it cancelled, and retry queues it again."""
    from django.conf import settings

    from generation import services as gen
    from generation.services.retrieval_sets import retrieval_sets_build
    from jobs.services import jobs_maintain

    env = process_env(**broker.env, **tiny_generation)
    flag, counts = tmp_path / "fault.flag", tmp_path / "counts.txt"
    env["MYTHRAGEN_TEST_COUNT"] = str(counts)
    user = django_user_model.objects.create_user("painter", "", "pw")
    client.force_login(user)
    params = gen.GenerationParams(
        prompt=PROMPT, seed=8, with_baseline=False, weight_artist_style=0, weight_genre_style=0
    )
    queues = "celery,training,rendering"
    with broker.sending():
        generation = gen.generation_request(
            user, params, pinned=retrieval_sets_build(PROMPT, settings.GEN_K)
        )
        first_log = tmp_path / "w1.log"
        first = fault_worker(env, first_log, "die-at-render-step:2", flag, queues)
        wait_killed(first, first_log)
        # The pool's child goes with its main process (the kernel kills it a moment later).
        wait_for(lambda: processes.process_gone(job_get(generation.job_id).worker), timeout=10)
        t0 = time.monotonic()
        answer = client.post(f"/api/generations/{generation.pk}/cancel/")
        cancel_seconds = time.monotonic() - t0
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.json()
        assert job_get(generation.job_id).status == JobStatus.CANCELLED
        # What a restarted worker runs first (`jobs_maintain`) leaves it cancelled ...
        assert jobs_maintain(grace_seconds=1) == {"recovered": 0, "stale": 0, "sent": 0}
        assert job_get(generation.job_id).status == JobStatus.CANCELLED
        # ... and the user may retry it (before: 409, the job was "still running").
        retried = client.post(f"/api/generations/{generation.pk}/retry/")
        assert retried.status_code in (200, 202), retried.content
        generation.refresh_from_db()
        assert job_get(generation.job_id).status == JobStatus.QUEUED
    renders = [line for line in counted(counts) if line.startswith("render ")]
    assert len(renders) == 1  # the killed attempt only: nothing resumed the cancelled job
    print(f"\n[fault 1c] cancel of a job whose worker was killed: {cancel_seconds:.2f}s")


@pytest.mark.django_db
def test_copies_of_a_phase_message_run_it_once(imported_demo, django_user_model):
    """The claim behind re-sending and recovery, through a generation's tasks: a copy of the
    message while the job runs in a live worker is dropped; a stale copy of an earlier
    phase does nothing; once the worker is gone, a copy (redelivered) takes the job over."""
    from generation import services as gen
    from generation.tasks import generation_prepare_task, generation_render_task
    from jobs import services as jobs

    user = django_user_model.objects.create_user("painter", "", "pw")
    generation = gen.generation_request(user, gen.GenerationParams(prompt=PROMPT, seed=1))
    job_id = generation.job_id
    jobs.job_claim(job_id, task_name="generation.prepare")  # a live worker (this process)
    copy = generation_prepare_task.apply(args=[job_id, generation.pk]).get()
    assert copy["skipped"] and "second copy" in copy["reason"]
    stale = generation_render_task.apply(args=[job_id, generation.pk]).get()
    assert stale == {"skipped": True, "phase": "render"}
    generation.refresh_from_db()
    assert generation.phase_attempts == 0 and job_get(job_id).attempts == 1
    Job.objects.filter(pk=job_id).update(
        worker="nowhere/1/2/3", alive_at=timezone.now() - timezone.timedelta(hours=1)
    )
    assert jobs.job_claim(job_id, task_name="generation.prepare").recoveries == 1  # taken over


@pytest.mark.django_db
def test_unsent_jobs_are_resent_once_and_finished_ones_never_run_again(
    monkeypatch, django_capture_on_commit_callbacks
):
    """What a worker's re-send pass picks: queued jobs whose message never left (recorded
    over the grace period ago), each once; and a finished job's late message does nothing."""
    from jobs import services as jobs
    from retrieval.tasks import index_rebuild_task

    with django_capture_on_commit_callbacks(execute=False):  # recorded, then the sender died
        old, fresh, sent, running = (jobs.job_create("index_rebuild") for _ in range(4))
        for job in (old, fresh, sent, running):
            jobs.job_enqueue(job, index_rebuild_task)
    long_ago = timezone.now() - timezone.timedelta(minutes=5)
    Job.objects.filter(pk__in=[old.pk, sent.pk, running.pk]).update(heartbeat_at=long_ago)
    Job.objects.filter(pk=sent.pk).update(celery_task_id="already-sent")
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    calls = []
    from jobs import sending

    monkeypatch.setattr(sending, "_send", lambda job_id, spec, *a, **kw: calls.append(spec) or True)
    assert jobs.job_resend_unsent(grace_seconds=30) == 1
    assert [c["args"] for c in calls] == [[old.pk]]
    assert calls[0]["task"] == "retrieval.index_rebuild" and calls[0]["task_id"]
    assert jobs.job_resend_unsent(grace_seconds=30) == 0 and len(calls) == 1  # claimed: once

    jobs.job_succeed(old.pk, {"n": 1})
    with pytest.raises(jobs.JobCancelled, match="already succeeded"), jobs.job_running(old.pk):
        raise AssertionError("a finished job ran again")
    assert job_get(old.pk).status == JobStatus.SUCCEEDED and job_get(old.pk).attempts == 0
