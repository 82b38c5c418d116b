"""Helpers for tests that start real processes (Celery workers, servers) against the test
database; what needs no Django (ports, waiting, Redis, stopping) is in `tests.harness`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from tests.harness import ROOT, free_port, start_logged, stop, wait_for

__all__ = [
    "ROOT",
    "free_port",
    "process_env",
    "sending_to",
    "start_gunicorn",
    "start_worker",
    "stop_worker",
    "test_database_url",
    "wait_for",
    "wait_result",
]

stop_worker = stop


def test_database_url() -> str:
    """A DATABASE_URL for another process that points at the current test database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    if db["HOST"].startswith("/"):  # a unix socket folder (the embedded pgserver)
        return f"postgres://{db['USER']}{password}@/{db['NAME']}?host={quote(db['HOST'])}"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}{port}/{db['NAME']}"


def with_tuning(overrides: dict) -> dict:
    """`overrides` for a process's environment, those named like a tuning constant of
    config/settings.py (JOBS_RESEND_SECONDS, CELERY_BROKER_DIR, ...) moved into
    MYTHRAGEN_TUNING, the only way they reach another process."""
    overrides = dict(overrides)
    tuning = {k: overrides.pop(k) for k in list(overrides) if k in settings.TUNING}
    if tuning:
        given = json.loads(overrides.get("MYTHRAGEN_TUNING") or "{}")
        overrides["MYTHRAGEN_TUNING"] = json.dumps({**given, **tuning}, default=str)
    return overrides


def start_worker(env_overrides: dict[str, str], queues: str = "celery", log: Path | None = None):
    """Start a real `celery worker` subprocess on the test database (tuning constants
    among `env_overrides` go through MYTHRAGEN_TUNING)."""
    env_overrides = with_tuning(env_overrides)
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env_overrides,
    }
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "-Q",
            queues,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def wait_result(result, proc: subprocess.Popen, log: Path | None, timeout: float = 90):
    """Wait for a Celery result, failing at once (with the log) if the worker died."""
    deadline = time.monotonic() + timeout
    while not result.ready():
        if proc.poll() is not None:
            text = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"worker exited with {proc.returncode}:\n{text}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result within {timeout}s")
        time.sleep(0.2)
    return result.get(timeout=5)


def process_env(**overrides) -> dict[str, str]:
    """The environment of a server or worker process on the test database, media and
    index folders, with the small embedder offline and one thread. Overrides named like a
    tuning constant of config/settings.py (JOBS_RESEND_SECONDS, CELERY_BROKER_DIR, ...)
    reach it through MYTHRAGEN_TUNING."""
    overrides = with_tuning(overrides)
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


def start_gunicorn(log: Path, port: int, *, timeout: int = 120, **env) -> subprocess.Popen:
    """One gunicorn worker serving `config.wsgi` on the test database (`process_env`)."""
    return start_logged(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
        + ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", str(timeout)],
        process_env(**env),
        log,
    )


@contextmanager
def sending_to(url: str, options: dict | None = None):
    """Point this process's Celery app (the web side, which `job_enqueue` sends with) at
    `url`; a Redis broker's database is emptied first."""
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
