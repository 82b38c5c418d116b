"""Named locks held by one process at a time, released when it ends (however it ends).

`exclusive("embed_catalog:<space>")` guards work that two processes must not do at once
(a command and a worker's job both embedding the catalog). The lock lives where the
database does, so every process that shares the database shares the lock:

- PostgreSQL: a session advisory lock on a connection of its own, held for the block. A
  process that dies drops its connection, and the server releases the lock.
- SQLite (one machine): `flock` on a file beside the database file. The kernel releases it
  when the process dies.

No lock row that a killed process could leave behind, so nothing ever needs clearing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections


class LockBusy(RuntimeError):
    """Another process holds the lock (the message names it when it can)."""


def _key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def _me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class _PostgresLock:
    def __init__(self, name: str) -> None:
        self.name, self.key = name, _key(name)
        # A connection of its own (never Django's, which may be closed under us), to the
        # database the default connection uses now (a test database too).
        default = connections[DEFAULT_DB_ALIAS]
        self.conn = type(default)(dict(default.settings_dict), DEFAULT_DB_ALIAS)

    def try_acquire(self) -> bool:
        with self.conn.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('application_name', %s, false)",
                [f"mythragen lock {self.name} ({_me()})"[:63]],
            )
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
            return bool(cursor.fetchone()[0])

    def holder(self) -> str:
        with self.conn.cursor() as cursor:
            cursor.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                [self.key],
            )
            row = cursor.fetchone()
        return (row[0].split("(", 1)[-1].rstrip(")") if row and "(" in row[0] else "") or ""

    def release(self) -> None:
        # (closing the connection releases it anyway)
        with contextlib.suppress(Exception), self.conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        self.conn.close()


def lock_files(database: Path) -> list[Path]:
    """The lock files of an SQLite database (never deleted while in use: a process waiting
    on a deleted file would hold a lock nobody else sees)."""
    return sorted((database.parent / ".locks").glob(f"{database.name}.*.lock"))


class _FileLock:
    def __init__(self, name: str) -> None:
        database = Path(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
        folder = database.parent / ".locks"  # beside the database: every process sees it
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.path = folder / f"{database.name}.{safe}.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, _me().encode(), 0)
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@contextlib.contextmanager
def exclusive(
    name: str,
    *,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.5,
) -> Iterator[None]:
    """Hold the lock `name` for the block. Held elsewhere: wait (calling `on_wait(holder)`
    about every `poll` seconds, e.g. to report on a job), or with `wait=False` raise
    `LockBusy` at once."""
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    lock = _PostgresLock(name) if vendor == "postgresql" else _FileLock(name)
    try:
        while not lock.try_acquire():
            holder = lock.holder() or "another process"
            if not wait:
                raise LockBusy(f"{name} is already running ({holder})")
            if on_wait is not None:
                on_wait(holder)
            time.sleep(poll)
        yield
    finally:
        lock.release()
