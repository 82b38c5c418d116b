"""bin/supervise: how `make run` keeps its worker running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pids(marks: Path, count: int, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = marks.read_text().split() if marks.exists() else []
        if len(lines) >= count:
            return [int(p) for p in lines]
        time.sleep(0.05)
    raise AssertionError(
        f"expected {count} starts, saw {marks.read_text() if marks.exists() else ''}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


def test_a_killed_command_is_started_again_and_stopping_stops_it(tmp_path):
    marks, log = tmp_path / "starts", tmp_path / "worker.log"
    child = (
        "import os, sys, time; open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); "
        "print('started', flush=True); time.sleep(120)"
    )
    supervisor = subprocess.Popen(
        [str(ROOT / "bin" / "supervise"), str(log), sys.executable, "-c", child, str(marks)]
    )
    try:
        (first,) = _pids(marks, 1)
        os.kill(first, signal.SIGKILL)  # as the OOM killer or an operator would
        second = _pids(marks, 2)[1]
        assert second != first and _alive(second)
        text = log.read_text()
        assert text.count("started") == 2
        assert "exited with status 137; starting it again in 2 s" in text
        supervisor.send_signal(signal.SIGTERM)  # make run's exit trap
        assert supervisor.wait(timeout=10) == 0
        deadline = time.monotonic() + 5
        while _alive(second) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(second), "stopping the supervisor left its command running"
        assert len(_pids(marks, 2)) == 2  # and started nothing more
    finally:
        supervisor.kill()
