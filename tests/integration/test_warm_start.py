"""A warm start: once the development server says search is ready, the first search is as
fast as any (it loaded the prompt encoder before it listened), and its console is quiet."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.harness import start_logged
from tests.helpers import free_port, process_env

pytestmark = pytest.mark.django_db(transaction=True)

# False alarms and noise the console must not show (issue #16).
NOISE = (
    "Could not load library with AVX2 support",
    "Failed to load CPU gemm_4bit_forward",
    "No hostname was supplied",
    "LOAD REPORT",
    "Loading SentenceTransformer model",
    "Batches:",
    "it/s]",
)


def test_first_search_after_ready_is_fast_and_the_console_quiet(indexed_demo, tmp_path):
    port = free_port()
    log = tmp_path / "runserver.log"
    server = start_logged(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        process_env(),
        log,
    )
    try:
        deadline = time.monotonic() + 240
        while "Starting development server" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "runserver" in text and "search ready (prompt encoder loaded in" in text, text
        # The server says it is ready after the encoder is loaded, not before.
        assert text.index("search ready") < text.index("Starting development server")
        url = f"http://127.0.0.1:{port}/search/?q=quiet+hills+by+Chiyo+Hanabusa"
        for _ in range(100):  # the socket opens just after the message
            try:
                started = time.perf_counter()
                with urllib.request.urlopen(url, timeout=60) as response:
                    body = response.read().decode()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError):
                    raise
                time.sleep(0.05)
        first = time.perf_counter() - started
        assert "artist: Chiyo Hanabusa" in body
        assert first < 2.0, f"first search took {first:.2f} s"
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert not [n for n in NOISE if n in text], text
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith('"')]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated  # each message once
