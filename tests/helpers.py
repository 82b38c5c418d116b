"""Helpers for tests that start real processes (Celery workers) against the test DB."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for servers a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def start_worker(env_overrides: dict[str, str], queues: str = "celery", log: Path | None = None):
    """Start a real `celery worker` subprocess on the test database."""
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


def stop_worker(proc: subprocess.Popen, timeout: float = 15) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
