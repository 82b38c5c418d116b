"""`IndexStore`: the current version of one root folder, as a web or worker process serves it.

`IndexStore.current()` is what a process calls per request: it loads the current version
once (memory-mapped with `IO_FLAG_MMAP_IFC`, so processes share one copy in the page
cache), then at most once a second stats `CURRENT` and swaps in a newer version, and
applies `OVERLAY.npz` when it changed (`overlay.py`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

from .loaded import LoadedIndex
from .overlay import OVERLAY_FILE, overlay_read
from .versions import CURRENT_FILE, VERSIONS_DIR, read_current

logger = logging.getLogger(__name__)


class IndexStore:
    """The current index version of one root folder, reloaded when `CURRENT` changes.

    `current()` is cheap: after the first load it looks at `CURRENT` at most once per
    `check_interval` seconds (one stat, plus one small read when it changed). If the new
    version fails to load, the old one keeps serving and a warning is logged
    (`last_error` holds the reason). Thread-safe.
    """

    def __init__(self, root: Path, *, check_interval: float = 1.0, use_gpu: str | None = None):
        self.root = Path(root)
        self.check_interval = check_interval
        self.use_gpu = use_gpu
        self.last_error: str | None = None
        self._loaded: LoadedIndex | None = None
        self._signature: tuple[int, int, int] | None = None
        self._last_check = -math.inf
        self._failed_version: str | None = None
        self._overlay_signature: tuple | None = None
        self._lock = threading.Lock()

    def current(self) -> LoadedIndex | None:
        """The loaded current version, or None when no index has been built (or loaded)."""
        if time.monotonic() - self._last_check < self.check_interval:
            return self._loaded
        with self._lock:
            if time.monotonic() - self._last_check >= self.check_interval:
                self._refresh()
                self._refresh_overlay()
                self._last_check = time.monotonic()
            return self._loaded

    def reload(self) -> LoadedIndex | None:
        """Check `CURRENT` and the overlay now, whatever the interval."""
        with self._lock:
            self._signature = None
            self._overlay_signature = None
            self._refresh()
            self._refresh_overlay()
            self._last_check = time.monotonic()
            return self._loaded

    def _refresh_overlay(self) -> None:
        """Apply `OVERLAY.npz` to the loaded version when the file or the version changed."""
        loaded = self._loaded
        if loaded is None:
            return
        try:
            st = (self.root / OVERLAY_FILE).stat()
            file_signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            file_signature = None
        signature = (loaded.version, file_signature)
        if signature == self._overlay_signature:
            return
        overlay = overlay_read(self.root) if file_signature is not None else None
        loaded.apply_overlay(overlay)
        self._overlay_signature = signature
        if loaded.overlaid:
            logger.info("Index %s: %d rows from the overlay", loaded.version, loaded.overlaid)

    def _refresh(self) -> None:
        current_file = self.root / CURRENT_FILE
        try:
            st = current_file.stat()
        except FileNotFoundError:
            return  # nothing built yet (or root moved away): keep what we have
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return
        name = read_current(self.root)
        if name is None or (self._loaded is not None and name == self._loaded.version):
            self._signature = signature
            return
        try:
            loaded = LoadedIndex.open(self.root / VERSIONS_DIR / name, use_gpu=self.use_gpu)
        except Exception as exc:  # keep serving the old version, whatever went wrong
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            if self._failed_version != name:
                logger.warning(
                    "Could not load index version %s under %s (%s); still serving %s",
                    name,
                    self.root,
                    self.last_error,
                    self._loaded.version if self._loaded else "nothing",
                )
                self._failed_version = name
            return  # signature not recorded: retried at the next check
        self._loaded = loaded
        self._signature = signature
        self._failed_version = None
        self.last_error = None
        logger.info("Serving index version %s (%s, n=%d)", name, loaded.kind, loaded.n)
