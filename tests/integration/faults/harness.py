"""The fault tests' harness: `FAULT_RUNNER` (a process that SIGKILLs or pauses itself at
one named point), workers started with it, waits on processes and jobs, the brokers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.models import Job, JobStatus
from tests.helpers import (
    ROOT,
    sending_to,
    wait_for,
)

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
    from generation.services import lora_cache
    from jobs.services import job_current

    def started(module, name, line):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            with open(count, "a") as fh:
                fh.write(line(args) + "\n")
            return real(*args, **kwargs)

        setattr(module, name, wrapper)

    counted(lora_cache, "lora_claim", lambda a, k, won: won and f"train {a[0].key} job {a[1]}")
    started(gen, "generation_render", lambda a: f"render {a[0]} job {job_current()}")
    started(labelling, "genres_label", lambda a: f"label_genres job {job_current()}")

if fault == "die-while-loading-the-sd-model":
    # The render phase loads Stable Diffusion under a heartbeat (the job shows "loading
    # model ..."); the worker is killed half way through.
    from generation.services import rendering

    real_renderer_get = rendering.renderer_get

    class Dying:
        def __init__(self, renderer):
            self.renderer = renderer

        def load(self):
            time.sleep(1.5)  # long enough for the heartbeat to show the load on the job
            die("killed while loading the model")

        def __getattr__(self, name):
            return getattr(self.renderer, name)

    rendering.renderer_get = lambda: Dying(real_renderer_get())
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
    import retrieval.catalog_embedding as retrieval

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


def run_with_fault(
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


def fault_worker(env: dict, log: Path, fault: str = "", flag: Path | None = None, queues="celery"):
    """A worker as `make run` starts it: one prefork child runs the tasks, the main process
    answers control messages and looks after the jobs."""
    args = ["celery", "-A", "celery_app", "worker", "--pool=prefork", "--concurrency=1"]
    args += ["-Q", queues, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return run_with_fault([*args, "-l", "info"], env, log, fault, flag)


def alive(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"process exited {proc.returncode}:\n{log.read_text()[-3000:]}")


def wait_killed(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for a process to SIGKILL itself at its fault point."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"never reached its fault point:\n{log.read_text()[-3000:]}") from None
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def wait_flag(flag: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for a process to reach its fault point (it writes the flag)."""
    try:
        wait_for(lambda: alive(proc, log) or flag.exists(), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no fault point reached:\n{log.read_text()[-3000:]}") from None


def job_get(pk: int) -> Job:
    return Job.objects.get(pk=pk)


def wait_job(pk: int, statuses, procs=(), timeout: float = 120) -> Job:
    def reached():
        for proc, log in procs:
            alive(proc, log)
        job = job_get(pk)
        return job if job.status in statuses else None

    return wait_for(reached, timeout=timeout, interval=0.05)


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


def counted(path: Path) -> list[str]:
    """The executions a counting worker recorded (see FAULT_RUNNER)."""
    return path.read_text().splitlines() if path.exists() else []


def resumed_in(pk: int, worker, log: Path, started: float, timeout: float = 60) -> float:
    """Seconds from a worker's start until it runs the job again (claimed by a new process)."""
    before = job_get(pk).worker

    def running_again():
        alive(worker, log)
        job = job_get(pk)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise AssertionError(f"job {pk} {job.status}: {job.error}")
        return job.status == JobStatus.SUCCEEDED or (
            job.status == JobStatus.RUNNING and job.worker not in ("", before)
        )

    wait_for(running_again, timeout=timeout, interval=0.05)
    return time.monotonic() - started
