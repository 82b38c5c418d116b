"""Which process runs a job, and whether that process still exists.

A worker records `identity()` on every job it claims. Any process on the same machine (a
restarted worker, the web process of `make run`) can then tell at once whether that worker
is gone: the pid no longer exists, is a zombie, or belongs to a process started later (the
pid was reused). A process on another machine cannot look, so it judges by the job's
liveness stamp instead (`jobs.services`). Pure Python: no Django.
"""

from __future__ import annotations

import os
import socket

_SEP = "/"
_cache: dict[int, str] = {}


def _pid_namespace() -> str:
    """The pid namespace (containers on one host have their own): pids compare within it."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "-"
    return "".join(ch for ch in link if ch.isdigit()) or "-"


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a pid from /proc; None if no such
    process. Raises OSError when /proc cannot be read at all (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        if not os.path.isdir("/proc/self"):
            raise OSError("no /proc") from None
        return None
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def identity() -> str:
    """This process as a job records it: host / pid namespace / pid / start time."""
    pid = os.getpid()
    if pid not in _cache:  # computed per pid: a forked pool child is a new process
        try:
            stat = _stat(pid)
        except OSError:
            stat = None
        start = stat[1] if stat else ""
        _cache[pid] = _SEP.join((socket.gethostname(), _pid_namespace(), str(pid), start))
    return _cache[pid]


def describe(worker: str) -> str:
    """A recorded identity for people: "pid 4711 on host-a"."""
    parts = worker.split(_SEP)
    if len(parts) != 4:
        return "an unknown worker"
    return f"pid {parts[2]} on {parts[0]}"


def process_gone(worker: str) -> bool | None:
    """Whether the process a job recorded has ended: True or False when this process can
    look (same host and pid namespace), None when it cannot (another machine or container,
    or nothing recorded)."""
    parts = worker.split(_SEP)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    host, namespace, pid, start = parts
    if host != socket.gethostname() or namespace != _pid_namespace():
        return None
    try:
        stat = _stat(int(pid))
    except OSError:  # no /proc (not Linux): ask the kernel whether the pid exists
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # exists, owned by another user
        return False
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    return bool(start) and started != start  # the pid now names a later process
