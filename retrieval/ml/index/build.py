"""Building an index version: validate, build the FAISS part, write, fsync, switch.

A version folder holds:

    index.faiss      FAISS index: flat over all rows, or a slot index's content index
    ids.npy          int64 catalog id of each row
    vectors.npy      float32 (n, d) rows, for exact and filtered search (not "compressed")
    meta.json        kind, n, d, parameters, timings, the caller's meta, `snapshot_at`
    slots.npz, content.npy   slot and compressed indexes only (`slots.py`, `compressed.py`)
    codes.npy, codes.pq      the compressed kind: each row's content code (`rowcodes.py`)
    neighbours.npy   optional: each row's nearest rows (`build_index`'s `neighbours`)

Builds never touch the served version: a build writes a temporary folder inside `root`,
fsyncs it, renames it into `versions/`, and only then replaces `CURRENT` (`versions.py`).
A failure at any point leaves `CURRENT` naming the old version. The newest `keep` versions
are kept (never the current one); processes still serving a pruned version keep working,
since their mapped files stay alive until unmapped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .compressed import COMPRESSED_MIN, compressed_build
from .exact import SlotParts
from .gpu import GPU_KINDS, check_gpu_mode, gpu_count
from .loaded import LoadedIndex
from .overlay import overlay_compact
from .rowcodes import row_codes_write
from .slots import slot_build, slot_tables_write
from .versions import (
    FORMAT_VERSION,
    TMP_PREFIX,
    VERSIONS_DIR,
    fsync_dir,
    fsync_file,
    prune_versions,
    read_current,
    switch_current,
)

logger = logging.getLogger(__name__)

KINDS = ("auto", "flat", "slots", "compressed")

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class IndexInfo:
    """What `build_index` wrote."""

    version: str
    path: Path
    kind: str
    n: int
    d: int
    seconds: float


def _validate(vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be a 2-d array (n, d) with d > 0, got {vectors.shape}")
    if ids.ndim != 1 or ids.shape[0] != vectors.shape[0]:
        raise ValueError(f"ids must be 1-d with {vectors.shape[0]} entries, got {ids.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise ValueError("ids must be unique (one row per artwork)")
    return vectors, ids


def _validate_parts(parts: SlotParts, ids: np.ndarray) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1 or ids.shape[0] != parts.n:
        raise ValueError(f"ids must be 1-d with {parts.n} entries, got {ids.shape}")
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise ValueError("ids must be unique (one row per artwork)")
    for start in range(0, parts.n, 65536):
        if not np.isfinite(parts.content[start : start + 65536]).all():
            raise ValueError("vectors contain NaN or infinite values")
    if not all(np.isfinite(t).all() for t in parts.labels):
        raise ValueError("vectors contain NaN or infinite values")
    top = parts.label_of_row.max(axis=0) if parts.n else np.full(3, -1)
    if parts.n and (parts.label_of_row.min() < 0 or (top >= [len(t) for t in parts.labels]).any()):
        raise ValueError("label_of_row points outside the label tables")
    return ids


def _choose_kind(
    kind: str, n: int, exact_max: int, blocks: int = 0, compressed_min: int = COMPRESSED_MIN
) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "auto":
        # Above exact_max the slot index, above compressed_min its compressed kind; both
        # need the fused layout; other vectors (tests, benchmarks) stay flat.
        if blocks != 4 or n <= exact_max:
            return "flat"
        return "compressed" if n > compressed_min else "slots"
    if kind in ("slots", "compressed") and blocks != 4:
        raise ValueError(f"kind {kind!r} needs fused vectors of 4 blocks (blocks=4)")
    if n == 0:
        return "flat"  # nothing to build a content index from
    return kind


def _add_in_chunks(index, vectors: np.ndarray, report: Callable[[float], None]) -> None:
    n = vectors.shape[0]
    chunk = max(1024, n // 20)
    for start in range(0, n, chunk):
        index.add(vectors[start : start + chunk])
        report(min(1.0, (start + chunk) / max(n, 1)))


def _write_neighbours(
    folder: Path,
    vectors: np.ndarray | SlotParts,
    ids: np.ndarray,
    k: int,
    blocks: int,
    blind: int | None,
    report: Callable[[float], None],
) -> None:
    """`neighbours.npy`: (n, k) catalog ids of each row's nearest other rows, searched in
    the version just written (so each kind finds them as its searches would)."""
    loaded = LoadedIndex.open(folder)
    n, d = loaded.n, loaded.d
    width = d // blocks
    out = np.full((n, k), -1, dtype=np.int64)
    step = 1024
    for start in range(0, n, step):
        if isinstance(vectors, SlotParts):
            queries = vectors.fused(np.arange(start, min(start + step, n)))
        else:
            queries = np.array(vectors[start : start + step], dtype=np.float32, copy=True)
        if blind is not None:
            queries[:, blind * width : (blind + 1) * width] = 0
        _scores, found = loaded.search(queries, k + 1)
        for j, row in enumerate(found):
            own = ids[start + j]
            keep = [int(i) for i in row if i >= 0 and i != own][:k]
            out[start + j, : len(keep)] = keep
        report(min(1.0, (start + step) / n))
    np.save(folder / "neighbours.npy", out)
    fsync_file(folder / "neighbours.npy")


def _write_version_files(
    folder: Path, index, vectors: np.ndarray | None, ids: np.ndarray, meta: dict[str, Any]
) -> None:
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "ids.npy", ids)
    names = ["index.faiss", "ids.npy", "meta.json"]
    if vectors is not None:  # the compressed kind stores no fused rows
        np.save(folder / "vectors.npy", vectors)
        names.append("vectors.npy")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for name in names:
        fsync_file(folder / name)
    fsync_dir(folder)


def _version_name(vectors: np.ndarray | SlotParts, ids: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=4)
    digest.update(ids.tobytes())
    if isinstance(vectors, SlotParts):
        for start in range(0, vectors.n, 65536):
            digest.update(np.ascontiguousarray(vectors.content[start : start + 65536]).tobytes())
        for table in (*vectors.labels, vectors.label_of_row):
            digest.update(np.ascontiguousarray(table).tobytes())
    else:
        digest.update(vectors.tobytes())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{digest.hexdigest()}"


def build_index(
    vectors: np.ndarray | SlotParts,
    ids: np.ndarray,
    root: Path,
    *,
    kind: str = "auto",
    exact_max: int = 20000,
    compressed_min: int = COMPRESSED_MIN,
    use_gpu: str = "auto",
    progress: Progress | None = None,
    meta: dict | None = None,
    keep: int = 3,
    blocks: int = 0,
    snapshot_at: float | None = None,
    neighbours: int = 0,
    neighbours_blind_block: int | None = None,
) -> IndexInfo:
    """Build an index of `vectors` (rows for catalog `ids`) as a new version under `root`.

    `kind` "auto" is "flat" (exact) for n <= `exact_max`, and above it "slots" when
    `blocks=4` (above `compressed_min`: "compressed", `compressed.py`), else "flat"; every
    kind can be forced. `vectors` may be given as `SlotParts` (content, possibly
    memory-mapped, plus label tables: implies `blocks=4`), which the compressed kind builds
    from without ever holding the fused matrix; other kinds put the rows together. (The
    HNSW and IVF kinds over fused rows were removed: both lost recall that a scan keeps,
    see `slots.py`.)
    `use_gpu` ("auto", "always", "never") is recorded and decides whether readers search
    content on a GPU (only on a faiss-gpu build with a device; `gpu.py`).
    `progress(stage, fraction)` is called with fraction in [0, 1]. `meta` (JSON-able: model
    id, catalog version, ...) is stored as meta["user"]. After the switch, versions beyond
    the newest `keep` are deleted (never the current one).

    `blocks=4` declares MythraGen's fused layout [content, genre, artist, style] (equal
    blocks), which the slot index (`slots.py`) needs.

    `snapshot_at` (a Unix time, default now) is when the caller began reading the data
    the vectors came from: overlay entries stamped before it are in the version already.

    `neighbours` > 0 stores each row's nearest rows (`neighbours.npy`, catalog ids), found
    with block `neighbours_blind_block` of its query zeroed (MythraGen: the genre block,
    so an artwork's own label never pulls in neighbours that share it; the lists then stay
    valid whatever genres change until the next build). See `LoadedIndex.neighbours_of`.
    """
    snapshot_at = time.time() if snapshot_at is None else float(snapshot_at)
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    if keep < 1:
        raise ValueError("keep must be at least 1")
    use_gpu = check_gpu_mode(use_gpu)
    report("validating", 0.0)
    if isinstance(vectors, SlotParts):
        blocks, parts = 4, vectors
        ids = _validate_parts(parts, ids)
        n, d = parts.n, parts.d
    else:
        vectors, ids = _validate(vectors, ids)
        n, d = vectors.shape
        parts = None
    if blocks and d % blocks:
        raise ValueError(f"d={d} is not divisible into {blocks} blocks")
    chosen = _choose_kind(kind, n, exact_max, blocks, compressed_min)
    if chosen == "compressed" and parts is None:
        parts = SlotParts.from_fused(vectors)
    elif chosen != "compressed" and parts is not None:
        vectors = parts.fused()  # flat and slots keep the fused rows
        parts = None
    user_meta = dict(meta or {})
    json.dumps(user_meta)  # fail before building if the caller's meta is not JSON-able

    root = Path(root)
    (root / VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
    report("building", 0.05)
    tables = None
    if chosen == "compressed":
        index, params, tables = compressed_build(
            parts, report=lambda f: report("building", 0.05 + 0.7 * f)
        )
    elif chosen == "slots":
        index, params, tables = slot_build(vectors)
    else:
        index, params = faiss.IndexFlatIP(d), {}
        _add_in_chunks(index, vectors, lambda f: report("building", 0.05 + 0.75 * f))
    version = _version_name(parts if parts is not None else vectors, ids)
    build_seconds = time.perf_counter() - started
    gpus = gpu_count()
    on_gpu = use_gpu != "never" and gpus > 0 and chosen in GPU_KINDS
    full_meta = {
        "format": FORMAT_VERSION,
        "version": version,
        "kind": chosen,
        "requested_kind": kind,
        "n": n,
        "d": d,
        "metric": "inner_product",
        "params": {**params, "exact_max": exact_max, "compressed_min": compressed_min},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "snapshot_at": snapshot_at,
        "build_seconds": round(build_seconds, 4),
        "faiss_version": getattr(faiss, "__version__", "unknown"),
        "neighbours": {"k": int(neighbours), "blind_block": neighbours_blind_block},
        "gpu": {
            "use_gpu": use_gpu,
            "gpus_at_build": gpus,
            # Readers search content on a GPU when they have one (see LoadedIndex.open).
            "search_device": "cuda:0" if on_gpu else "cpu",
        },
        "user": user_meta,
    }

    report("writing", 0.8)
    tmp = root / f"{TMP_PREFIX}{version}"
    final = root / VERSIONS_DIR / version
    renamed = False
    try:
        tmp.mkdir()
        _write_version_files(tmp, index, None if parts is not None else vectors, ids, full_meta)
        if tables is not None:
            content = parts.content if parts is not None else vectors[:, : d // 4]
            slot_tables_write(tmp, tables, content)
        if params.get("row_codes"):
            row_codes_write(tmp)
        if neighbours > 0:
            _write_neighbours(
                tmp,
                parts if parts is not None else vectors,
                ids,
                neighbours,
                blocks or 1,
                neighbours_blind_block,
                lambda f: report("neighbours", 0.8 + 0.15 * f),
            )
        os.rename(tmp, final)
        renamed = True
        fsync_dir(root / VERSIONS_DIR)
        report("switching", 0.95)
        switch_current(root, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if renamed and read_current(root) != version:
            shutil.rmtree(final, ignore_errors=True)
        raise
    overlay_compact(root)
    pruned = prune_versions(root, keep)
    if pruned:
        logger.info("Pruned old index versions: %s", ", ".join(pruned))
    seconds = time.perf_counter() - started
    report("done", 1.0)
    return IndexInfo(version=version, path=final, kind=chosen, n=n, d=d, seconds=seconds)
