"""The overlay: vectors changed since the served version was built.

A curator's correction changes an artwork's genre block, and waiting for a rebuild would
leave search and "similar artworks" wrong for minutes. `overlay_write` puts the artwork's
new vector into `root/OVERLAY.npz` (merged under a file lock, replaced atomically); every
`IndexStore` notices the file when it checks `CURRENT` (at most once a second) and its
`LoadedIndex` then searches the version without those rows and scores their new vectors
exactly, merging both (`overlay_apply`). An entry applies to a version built from data
read before the entry was stamped (`snapshot_at` in meta.json, less a margin for clocks:
an entry the version already holds changes nothing); older entries are dropped, and a
build compacts them away (`overlay_compact`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .versions import TMP_PREFIX, VERSIONS_DIR, fsync_dir, read_current

logger = logging.getLogger(__name__)

OVERLAY_FILE = "OVERLAY.npz"
OVERLAY_LOCK = ".overlay.lock"
# An overlay entry stamped up to this long before a version's snapshot still applies to
# it (it can only repeat what the version holds), so hosts whose clocks differ by less
# never lose a correction.
OVERLAY_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class Overlay:
    """Entries of `root/OVERLAY.npz`: per artwork its newest vector, the order key that
    made it the newest (the artwork's label version) and when it was written."""

    ids: np.ndarray  # int64 (m,)
    vectors: np.ndarray  # float32 (m, d)
    keys: np.ndarray  # int64 (m,)
    stamps: np.ndarray  # float64 (m,), Unix time

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def overlay_read(root: Path) -> Overlay | None:
    """The overlay of `root`, or None when there is none (or it cannot be read)."""
    path = Path(root) / OVERLAY_FILE
    try:
        with np.load(path) as data:
            return Overlay(
                ids=np.asarray(data["ids"], dtype=np.int64),
                vectors=np.asarray(data["vectors"], dtype=np.float32),
                keys=np.asarray(data["keys"], dtype=np.int64),
                stamps=np.asarray(data["stamps"], dtype=np.float64),
            )
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: serve the versions as built
        logger.warning("Could not read the index overlay %s: %s", path, exc)
        return None


def _snapshot_of_current(root: Path) -> float | None:
    name = read_current(root)
    if name is None:
        return None
    try:
        meta = json.loads((root / VERSIONS_DIR / name / "meta.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    value = meta.get("snapshot_at")
    return float(value) if value is not None else None


@contextlib.contextmanager
def _overlay_locked(root: Path):
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / OVERLAY_LOCK, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _overlay_store(root: Path, overlay: Overlay) -> None:
    tmp = root / f"{TMP_PREFIX}{OVERLAY_FILE}-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "wb") as fh:
        np.savez(
            fh, ids=overlay.ids, vectors=overlay.vectors, keys=overlay.keys, stamps=overlay.stamps
        )
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / OVERLAY_FILE)
    fsync_dir(root)


def _overlay_live(root: Path, overlay: Overlay | None) -> Overlay | None:
    """Without the entries the current version already holds."""
    if overlay is None or not len(overlay):
        return None
    snapshot = _snapshot_of_current(root)
    if snapshot is None:
        return overlay
    keep = overlay.stamps >= snapshot - OVERLAY_MARGIN_SECONDS
    if keep.all():
        return overlay
    if not keep.any():
        return None
    return Overlay(
        overlay.ids[keep], overlay.vectors[keep], overlay.keys[keep], overlay.stamps[keep]
    )


def overlay_write(
    root: Path,
    ids: np.ndarray,
    vectors: np.ndarray | None,
    keys: np.ndarray,
    *,
    stamp: float | None = None,
) -> int:
    """Record artworks' new vectors (or, with `vectors` None, forget their entries: a
    rebuild will carry them) in `root`'s overlay; return how many entries it holds.

    Per artwork the entry with the larger key wins (the caller passes the artwork's label
    version, which every change increments), so two writers finishing in either order
    leave the newer vector. Entries the current version already holds are dropped.
    Serialised by a lock file; readers see the old file or the new one, never a mix.
    """
    root = Path(root)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if keys.shape != ids.shape:
        raise ValueError("ids and keys differ in length")
    if vectors is not None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
            raise ValueError(f"vectors must be ({ids.shape[0]}, d), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
    stamp = time.time() if stamp is None else float(stamp)
    with _overlay_locked(root):
        old = _overlay_live(root, overlay_read(root))
        entries: dict[int, tuple[int, float, np.ndarray]] = {}
        if old is not None:
            if vectors is not None and old.vectors.shape[1] != vectors.shape[1]:
                old = None  # another dimension: a new space replaced the old vectors
            else:
                for i, key, st, vec in zip(old.ids, old.keys, old.stamps, old.vectors, strict=True):
                    entries[int(i)] = (int(key), float(st), vec)
        for n, artwork_id in enumerate(ids.tolist()):
            held = entries.get(artwork_id)
            if vectors is None:
                if held is not None and held[0] <= keys[n]:
                    del entries[artwork_id]
            elif held is None or held[0] <= keys[n]:
                entries[artwork_id] = (int(keys[n]), stamp, vectors[n])
        if entries:
            order = sorted(entries)
            d = len(next(iter(entries.values()))[2])
            overlay = _overlay_live(
                root,
                Overlay(
                    ids=np.asarray(order, dtype=np.int64),
                    vectors=np.stack([entries[i][2] for i in order])
                    .astype(np.float32)
                    .reshape(-1, d),
                    keys=np.asarray([entries[i][0] for i in order], dtype=np.int64),
                    stamps=np.asarray([entries[i][1] for i in order], dtype=np.float64),
                ),
            )
        else:
            overlay = None
        if overlay is not None:
            _overlay_store(root, overlay)
        else:
            with contextlib.suppress(FileNotFoundError):
                (root / OVERLAY_FILE).unlink()
        return 0 if overlay is None else len(overlay)


def overlay_compact(root: Path) -> int:
    """Drop the overlay entries the current version holds (after a build); return how
    many are left."""
    root = Path(root)
    if not (root / OVERLAY_FILE).exists():
        return 0
    with _overlay_locked(root):
        live = _overlay_live(root, overlay_read(root))
        if live is None:
            with contextlib.suppress(FileNotFoundError):
                (root / OVERLAY_FILE).unlink()
            return 0
        _overlay_store(root, live)
        return len(live)


@dataclass(frozen=True)
class AppliedOverlay:
    """An overlay as one version applies it: its rows there, their vectors, and a mask."""

    rows: np.ndarray  # int64, sorted
    vectors: np.ndarray  # float32 (r, d)
    mask: np.ndarray  # bool (n,): True where a row is overlaid


def overlay_apply(
    overlay: Overlay | None, rows_of, n: int, d: int, snapshot_at: float | None
) -> AppliedOverlay | None:
    """The entries of `overlay` that a version of `n` rows of width `d` serves: those newer
    than its snapshot and of its rows (`rows_of(ids)`: row numbers, -1 for unknown ids)."""
    if overlay is None or not len(overlay) or overlay.vectors.shape[1] != d:
        return None
    keep = np.ones(len(overlay), dtype=bool)
    if snapshot_at is not None:
        keep = overlay.stamps >= snapshot_at - OVERLAY_MARGIN_SECONDS
    rows = rows_of(overlay.ids)
    keep &= rows >= 0
    if not keep.any():
        return None
    order = np.argsort(rows[keep], kind="stable")
    picked = rows[keep][order]
    mask = np.zeros(n, dtype=bool)
    mask[picked] = True
    return AppliedOverlay(
        rows=picked.astype(np.int64),
        vectors=np.ascontiguousarray(overlay.vectors[keep][order], dtype=np.float32),
        mask=mask,
    )
