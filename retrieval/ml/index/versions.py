"""The index's folders on disk: which version is served, the versions kept, atomic writes.

    root/
      CURRENT          the name of the version being served (one line)
      versions/<v>/    one complete build (see `build.py` for the files inside)
      OVERLAY.npz      rows changed since a version was built (`overlay.py`)

A version folder is complete before it is renamed into `versions/`, and `CURRENT` is
replaced with `os.replace` (atomic on POSIX), so readers see the old version or the new
one, never half of either. Pure Python and numpy-free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
TMP_PREFIX = ".tmp-"


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fsync_file(path)


def switch_current(root: Path, version: str) -> None:
    """Atomically make `version` the served one (write a temp file, then os.replace)."""
    tmp = root / f"{TMP_PREFIX}{CURRENT_FILE}-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT_FILE)
    fsync_dir(root)


def read_current(root: Path) -> str | None:
    """The version named in `root/CURRENT`, or None if there is none yet."""
    try:
        name = (Path(root) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def list_versions(root: Path) -> list[str]:
    """Complete versions under `root/versions`, oldest first (names sort by build time)."""
    folder = Path(root) / VERSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def prune_versions(root: Path, keep: int = 3, *, stale_tmp_seconds: float = 6 * 3600) -> list[str]:
    """Delete all but the newest `keep` versions (never the current one); return deleted names.

    Also removes temporary folders of builds that died more than `stale_tmp_seconds` ago.
    """
    root = Path(root)
    current = read_current(root)
    versions = list_versions(root)
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
    for name in doomed:
        shutil.rmtree(root / VERSIONS_DIR / name, ignore_errors=True)
    now = time.time()
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > stale_tmp_seconds:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink()
    return doomed
