"""Versioned FAISS indexes of fused artwork vectors: atomic builds, hot swap, filtered search.

On disk, under one root folder::

    root/
      CURRENT                      the name of the version being served (one line)
      versions/
        20261122T101530123456Z-3fa2c1d0/
          index.faiss              FAISS index over row numbers 0..n-1
          ids.npy                  int64 catalog id of each row
          vectors.npy              float32 (n, d) rows, for exact and filtered search
          meta.json                kind, n, d, parameters, timings, caller's meta
          slots.npz, content.npy   slot indexes only: label look-up tables, and the
                                   content blocks in label-combination order

      OVERLAY.npz                  rows changed since a version was built (see below)

Builds never touch the served version: a build writes a temporary folder inside `root`,
fsyncs it, renames it into `versions/`, and only then replaces `CURRENT` with
`os.replace` (atomic on POSIX). A failure at any point leaves `CURRENT` naming the old
version. The newest `keep` versions are kept (never the current one); processes still
serving a pruned version keep working, since their mapped files stay alive until unmapped.

`IndexStore.current()` is what a web or worker process calls per request: it loads the
current version once (memory-mapped with `IO_FLAG_MMAP_IFC`, so processes share one copy in
the page cache), then at most once a second stats `CURRENT` and swaps in a newer version.

The overlay: a curator's correction changes an artwork's genre block, and waiting for a
rebuild would leave search and "similar artworks" wrong for minutes. `overlay_write` puts
the artwork's new vector into `root/OVERLAY.npz` (merged under a file lock, replaced
atomically); every `IndexStore` notices the file when it checks `CURRENT` (at most once a
second) and its `LoadedIndex` then searches the version without those rows and scores
their new vectors exactly, merging both. An entry applies to a version built from data
read before the entry was stamped (`snapshot_at` in meta.json, less a margin for clocks:
an entry the version already holds changes nothing); older entries are dropped.

Vectors are expected L2-normalised (see `fusion.py`): inner product is the score.

Index kinds (measured on 80k x 1024 clustered vectors, one thread, see ENVIRONMENT.md):
``flat`` (IndexFlatIP, exact, ~16 ms/query) up to `exact_max` rows; ``hnsw``
(IndexHNSWFlat M=32, ~0.2 ms/query, recall@20 0.99) above; ``ivf`` (IVF-Flat, nprobe
calibrated at build time for recall@10 >= 0.95 on a sample) on request; ``slots`` for
MythraGen's fused [content, genre, artist, style] vectors above `exact_max` (the default
there, see `LoadedIndex._slot_search`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KINDS = ("auto", "flat", "hnsw", "ivf", "slots")
GPU_MODES = ("auto", "always", "never")
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
TMP_PREFIX = ".tmp-"
OVERLAY_FILE = "OVERLAY.npz"
OVERLAY_LOCK = ".overlay.lock"
# An overlay entry stamped up to this long before a version's snapshot still applies to
# it (it can only repeat what the version holds), so hosts whose clocks differ by less
# never lose a correction.
OVERLAY_MARGIN_SECONDS = 120.0
IVF_TARGET_RECALL = 0.95
SLOT_LAYOUT = 3  # version of the slot index layout; older slot indexes must be rebuilt
SLOT_PQ_MIN = 4096  # fewer distinct content vectors: exact flat content index
_SEARCH_CHUNK = 16384  # rows per block in exact search (bounded memory on big catalogs)

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


# ---------------------------------------------------------------------------------------
# Exact search (numpy): the baseline, the fallback, and the filtered-search path.


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first (values, positions) of the k largest entries of each row of (m, n)."""
    m, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score, ties by position (deterministic results).
    order = np.lexsort((part, -part_scores), axis=1)
    return (
        np.take_along_axis(part_scores, order, axis=1).astype(np.float32, copy=False),
        np.take_along_axis(part, order, axis=1).astype(np.int64, copy=False),
    )


def _merge(best: tuple[np.ndarray, np.ndarray] | None, new: tuple[np.ndarray, np.ndarray], k: int):
    if best is None:
        return new
    scores = np.concatenate([best[0], new[0]], axis=1)
    rows = np.concatenate([best[1], new[1]], axis=1)
    top_scores, pos = _top_k(scores, k)
    return top_scores, np.take_along_axis(rows, pos, axis=1)


def _exact_rows(
    vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over `vectors` (or only `rows` of it): (scores, row numbers), best first.

    Works block by block, so a memory-mapped (n, d) file is never copied whole.
    """
    total = vectors.shape[0] if rows is None else rows.shape[0]
    best = None
    for start in range(0, total, _SEARCH_CHUNK):
        if rows is None:
            block_rows = np.arange(start, min(start + _SEARCH_CHUNK, total), dtype=np.int64)
            block = np.asarray(vectors[start : start + _SEARCH_CHUNK], dtype=np.float32)
        else:
            block_rows = rows[start : start + _SEARCH_CHUNK]
            block = np.asarray(vectors[block_rows], dtype=np.float32)
        scores, pos = _top_k(queries @ block.T, k)
        best = _merge(best, (scores, block_rows[pos]), k)
    if best is None:
        m = queries.shape[0]
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    return best


def exact_search(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product search: (scores (m, k'), ids (m, k')), best first.

    k' = min(k, n). Ties are broken by row order. Used as the benchmarks' baseline and as
    the fallback whenever an approximate or filtered search returns too few hits.
    """
    queries = _as_queries(queries, vectors.shape[1])
    ids = np.asarray(ids, dtype=np.int64)
    scores, rows = _exact_rows(vectors, queries, k)
    return scores, ids[rows]


def _as_queries(queries: np.ndarray, d: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != d:
        raise ValueError(f"queries must have shape (m, {d}) or ({d},), got {np.shape(queries)}")
    return np.ascontiguousarray(q)


# ---------------------------------------------------------------------------------------
# Building


def _gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    if get is None:
        return 0
    try:
        return int(get())
    except Exception:  # a CPU build that exposes the symbol but cannot query CUDA
        return 0


def _check_gpu_mode(use_gpu: str) -> str:
    if use_gpu not in GPU_MODES:
        raise ValueError(f"use_gpu must be one of {GPU_MODES}, got {use_gpu!r}")
    if use_gpu == "always" and _gpu_count() == 0:
        raise RuntimeError(
            "use_gpu='always' but this FAISS build sees no GPU (faiss-cpu, or no CUDA device)"
        )
    return use_gpu


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


def _choose_kind(kind: str, n: int, exact_max: int, blocks: int = 0) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "auto":
        if n <= exact_max:
            return "flat"
        return "slots" if blocks == 4 else "hnsw"
    if kind == "slots" and blocks != 4:
        raise ValueError("kind 'slots' needs fused vectors of 4 blocks (blocks=4)")
    if n == 0:
        return "flat"  # nothing to train an approximate index on
    return kind


def _add_in_chunks(index, vectors: np.ndarray, report: Callable[[float], None]) -> None:
    n = vectors.shape[0]
    chunk = max(1024, n // 20)
    for start in range(0, n, chunk):
        index.add(vectors[start : start + chunk])
        report(min(1.0, (start + chunk) / max(n, 1)))


def _ivf_nlist(n: int) -> int:
    # ~4 sqrt(n) lists, and at least 39 training points per list (FAISS warns below that).
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _calibrate_nprobe(index, vectors: np.ndarray, nlist: int) -> tuple[int, float]:
    """Smallest power-of-two nprobe with recall@10 >= IVF_TARGET_RECALL on a sample.

    Leave-one-out: each sampled row is a query whose own row is dropped from both the
    exact and the IVF answers (a stored row always finds itself, which would flatter the
    recall of queries that are not in the catalog).
    """
    rng = np.random.default_rng(0)
    n = vectors.shape[0]
    sample_rows = rng.choice(n, size=min(200, n), replace=False)
    sample = vectors[sample_rows]
    k = min(10, n - 1)
    if k < 1:
        return 1, 1.0

    def without_self(found: np.ndarray) -> list[list[int]]:
        return [
            [r for r in row if r != own and r >= 0][:k]
            for row, own in zip(found.tolist(), sample_rows.tolist(), strict=True)
        ]

    truth = without_self(_exact_rows(vectors, sample, k + 1)[1])
    total = sum(len(t) for t in truth)
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        found = without_self(index.search(sample, k + 1)[1])
        hits = sum(len(set(t) & set(f)) for t, f in zip(truth, found, strict=True))
        recall = hits / total
        if recall >= IVF_TARGET_RECALL or nprobe >= nlist:
            return nprobe, recall
        nprobe = min(nlist, nprobe * 2)


def _build_faiss(
    kind: str,
    vectors: np.ndarray,
    *,
    hnsw_m: int,
    ef_construction: int,
    ef_search: int,
    report: Callable[[float], None],
    slot_tables: dict[str, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    n, d = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        _add_in_chunks(index, vectors, report)
        return index, {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        _add_in_chunks(index, vectors, report)
        return index, {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    if kind == "slots":
        # A compressed scan over the distinct content blocks (`_slot_tables`), refined
        # exactly at search time; label blocks are scored exactly by table look-up.
        groups = slot_tables["content_rows"][slot_tables["content_ptr"][:-1]]
        content = np.ascontiguousarray(vectors[groups, : d // 4])
        index, content_index = _content_index(content)
        report(1.0)
        return index, {
            "blocks": 4,
            "slot_layout": SLOT_LAYOUT,
            "content_index": content_index,
            "distinct_content": int(content.shape[0]),
            "label_combinations": int(slot_tables["combo_labels"].shape[0]),
        }
    if kind == "ivf":
        nlist = _ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        # faiss' Python wrapper keeps `quantizer` alive as long as `index`.
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train_n = min(n, 256 * nlist)
        train = vectors if train_n == n else vectors[np.sort(rng.choice(n, train_n, replace=False))]
        index.train(train)
        report(0.3)
        _add_in_chunks(index, vectors, lambda f: report(0.3 + 0.6 * f))
        nprobe, recall = _calibrate_nprobe(index, vectors, nlist)
        index.nprobe = nprobe
        return index, {"nlist": nlist, "nprobe": nprobe, "calibrated_recall_at_10": recall}
    raise ValueError(f"unknown index kind {kind!r}")


def _content_index(content: np.ndarray) -> tuple[Any, str]:
    """The content part of a slot index: 4-bit product-quantisation fast scan (one 4-bit
    code per 4 dimensions, 48 bytes per 384-d vector) over every distinct content vector;
    search refines its candidates with exact inner products. Below SLOT_PQ_MIN vectors (or
    for dimensions that do not split in fours) an exact flat index.

    Why not HNSW: on the real catalog (70,782 distinct MiniLM content vectors) an HNSW
    (M 32, efConstruction 80-200, efSearch 128-512) found only 85-94% of the true top 50
    by content for title prompts: queries carry no genre term while stored content does,
    so they fall between the graph's clusters. A scan has no such blind spot: 0.995 with
    1,000 refined candidates (0.997 for the final top 50 with 700, the default), in under
    a millisecond, and builds in ~2 s instead of ~50 s.
    """
    n, d = content.shape
    if n < SLOT_PQ_MIN or d % 4:
        index = faiss.IndexFlatIP(d)
        index.add(content)
        return index, "flat"
    m = d // 4
    index = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = content if n <= 65536 else content[np.sort(rng.choice(n, 65536, replace=False))]
    index.train(train)
    index.add(content)
    return index, f"pq{m}x4fs"


def _slot_tables(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """The look-up tables of a slot index (see `LoadedIndex._slot_search`).

    - `inverse` (n, 3) and `u0..u2`: for each label block (genre, artist, style) its
      distinct rows and which one each catalog row holds (a few thousand labels stand for
      81k rows);
    - `combo_labels` (c, 3), `combo_of_row` (n,), `combo_ptr` (c+1,), `combo_rows` (n,):
      the distinct (genre, artist, style) combinations, and the rows of combination i as
      `combo_rows[combo_ptr[i]:combo_ptr[i+1]]`; all rows of one combination share one
      label score, whatever the query;
    - `content_of_row` (n,), `content_ptr`, `content_rows`: the same grouping for identical
      content blocks (the content HNSW holds each distinct content vector once: many works
      share a title such as "Untitled", and duplicates degrade an HNSW graph).
    """
    d4 = vectors.shape[1] // 4
    n = vectors.shape[0]
    inverse = np.zeros((n, 3), dtype=np.int32)
    tables: dict[str, np.ndarray] = {}
    for b in range(3):
        block = np.ascontiguousarray(vectors[:, (b + 1) * d4 : (b + 2) * d4])
        uniq, inv = np.unique(block, axis=0, return_inverse=True)
        tables[f"u{b}"] = uniq.astype(np.float32)
        inverse[:, b] = inv.reshape(-1)
    tables["inverse"] = inverse
    combos, combo_of_row = np.unique(inverse, axis=0, return_inverse=True)
    tables["combo_labels"] = combos.astype(np.int32)
    for name, groups, count in (
        ("combo", combo_of_row.reshape(-1), len(combos)),
        ("content", _content_groups(vectors[:, :d4]), None),
    ):
        if count is None:
            count = int(groups.max()) + 1 if n else 0
        order = np.argsort(groups, kind="stable").astype(np.int32)
        ptr = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(groups, minlength=count), out=ptr[1:])
        tables[f"{name}_of_row"] = groups.astype(np.int32)
        tables[f"{name}_ptr"] = ptr
        tables[f"{name}_rows"] = order
    position = np.empty(n, dtype=np.int32)
    position[tables["combo_rows"]] = np.arange(n, dtype=np.int32)
    tables["position_of_row"] = position  # row -> its line in content.npy
    return tables


def _content_groups(content: np.ndarray) -> np.ndarray:
    """For each row, the number of its distinct content vector (first-seen order)."""
    content = np.ascontiguousarray(content, dtype=np.float32)
    keys = content.view(np.dtype((np.void, content.dtype.itemsize * content.shape[1])))
    _uniq, first, inverse = np.unique(keys.reshape(-1), return_index=True, return_inverse=True)
    # Renumber by first appearance so unique content i is row-ordered (stable, readable).
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _write_slot_tables(folder: Path, tables: dict[str, np.ndarray], vectors: np.ndarray) -> None:
    """slots.npz, and content.npy: the content blocks in combination order, so the rows of
    one label combination are one contiguous slice (scored without gathering)."""
    with open(folder / "slots.npz", "wb") as fh:
        np.savez(fh, **tables)
        fh.flush()
        os.fsync(fh.fileno())
    d4 = vectors.shape[1] // 4
    np.save(folder / "content.npy", np.ascontiguousarray(vectors[tables["combo_rows"], :d4]))
    _fsync_file(folder / "content.npy")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        _fsync_file(path)


def _write_neighbours(
    folder: Path,
    vectors: np.ndarray,
    ids: np.ndarray,
    k: int,
    blocks: int,
    blind: int | None,
    report: Callable[[float], None],
) -> None:
    """`neighbours.npy`: (n, k) catalog ids of each row's nearest other rows, searched in
    the version just written (so every index kind finds them as its searches would)."""
    loaded = LoadedIndex.open(folder)
    n, d = vectors.shape
    width = d // blocks
    out = np.full((n, k), -1, dtype=np.int64)
    step = 1024
    for start in range(0, n, step):
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
    _fsync_file(folder / "neighbours.npy")


def _write_version_files(
    folder: Path, index, vectors: np.ndarray, ids: np.ndarray, meta: dict[str, Any]
) -> None:
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "ids.npy", ids)
    np.save(folder / "vectors.npy", vectors)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for name in ("index.faiss", "ids.npy", "vectors.npy", "meta.json"):
        _fsync_file(folder / name)
    _fsync_dir(folder)


def _switch_current(root: Path, version: str) -> None:
    """Atomically make `version` the served one (write a temp file, then os.replace)."""
    tmp = root / f"{TMP_PREFIX}{CURRENT_FILE}-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT_FILE)
    _fsync_dir(root)


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


def _version_name(vectors: np.ndarray, ids: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=4)
    digest.update(ids.tobytes())
    digest.update(vectors.tobytes())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{digest.hexdigest()}"


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    root: Path,
    *,
    kind: str = "auto",
    exact_max: int = 20000,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
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

    `kind` "auto" is "flat" (exact) for n <= `exact_max`, else "hnsw"; "flat", "hnsw" and
    "ivf" can be forced. `use_gpu` ("auto", "always", "never") is recorded and decides
    whether readers move flat indexes to a GPU (only on a faiss-gpu build with a device).
    `progress(stage, fraction)` is called with fraction in [0, 1]. `meta` (JSON-able: model
    id, catalog version, ...) is stored as meta["user"]. After the switch, versions beyond
    the newest `keep` are deleted (never the current one).

    `blocks=4` declares MythraGen's fused layout [content, genre, artist, style] (equal
    blocks): then "auto" above `exact_max` picks "slots", a slot-decomposed index (see
    `LoadedIndex._slot_search`) instead of plain HNSW.

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
    use_gpu = _check_gpu_mode(use_gpu)
    report("validating", 0.0)
    vectors, ids = _validate(vectors, ids)
    n, d = vectors.shape
    if blocks and d % blocks:
        raise ValueError(f"d={d} is not divisible into {blocks} blocks")
    chosen = _choose_kind(kind, n, exact_max, blocks)
    user_meta = dict(meta or {})
    json.dumps(user_meta)  # fail before building if the caller's meta is not JSON-able

    root = Path(root)
    (root / VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
    report("building", 0.05)
    slot_tables = _slot_tables(vectors) if chosen == "slots" else None
    index, params = _build_faiss(
        chosen,
        vectors,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        report=lambda f: report("building", 0.05 + 0.75 * f),
        slot_tables=slot_tables,
    )
    version = _version_name(vectors, ids)
    build_seconds = time.perf_counter() - started
    gpus = _gpu_count()
    on_gpu = use_gpu != "never" and gpus > 0 and chosen == "flat"
    full_meta = {
        "format": FORMAT_VERSION,
        "version": version,
        "kind": chosen,
        "requested_kind": kind,
        "n": n,
        "d": d,
        "metric": "inner_product",
        "params": {**params, "exact_max": exact_max},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "snapshot_at": snapshot_at,
        "build_seconds": round(build_seconds, 4),
        "faiss_version": getattr(faiss, "__version__", "unknown"),
        "neighbours": {"k": int(neighbours), "blind_block": neighbours_blind_block},
        "gpu": {
            "use_gpu": use_gpu,
            "gpus_at_build": gpus,
            # Readers move only flat indexes to a GPU (see LoadedIndex.open).
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
        _write_version_files(tmp, index, vectors, ids, full_meta)
        if slot_tables is not None:
            _write_slot_tables(tmp, slot_tables, vectors)
        if neighbours > 0:
            _write_neighbours(
                tmp,
                vectors,
                ids,
                neighbours,
                blocks or 1,
                neighbours_blind_block,
                lambda f: report("neighbours", 0.8 + 0.15 * f),
            )
        os.rename(tmp, final)
        renamed = True
        _fsync_dir(root / VERSIONS_DIR)
        report("switching", 0.95)
        _switch_current(root, version)
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


# ---------------------------------------------------------------------------------------
# The overlay: vectors changed since the served version was built


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
    _fsync_dir(root)


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
class _AppliedOverlay:
    """An overlay as one version applies it: its rows there, their vectors, and a mask."""

    rows: np.ndarray  # int64, sorted
    vectors: np.ndarray  # float32 (r, d)
    mask: np.ndarray  # bool (n,): True where a row is overlaid


# ---------------------------------------------------------------------------------------
# Loading and searching


def _check_kernel_args(matrix: np.ndarray, q: np.ndarray) -> None:
    # FAISS reads raw memory: a strided or wrongly typed array would give wrong numbers.
    if not (
        matrix.dtype == np.float32
        and q.dtype == np.float32
        and matrix.flags.c_contiguous
        and q.flags.c_contiguous
        and matrix.ndim == 2
        and q.shape == (matrix.shape[1],)
    ):
        raise ValueError("FAISS kernels need C-contiguous float32 arrays of matching width")


def _dot_rows(matrix: np.ndarray, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`matrix[rows] @ q` without copying the rows out: FAISS's SIMD kernel, one thread.

    Measured on the real catalog (1,000 scattered rows of the 81k x 384 content block, one
    search after another): numpy's gather + product took about twice as long, the copy
    being most of it, and numpy's BLAS on 2 threads is far slower on a busy machine.
    `matrix` must be C-contiguous float32 and `q` float32 of its width.
    """
    _check_kernel_args(matrix, q)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float32)
    if len(rows):
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out),
            faiss.swig_ptr(q),
            faiss.swig_ptr(matrix),
            faiss.swig_ptr(rows),
            matrix.shape[1],
            1,
            len(rows),
        )
    return out


def _dot_all(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`matrix @ q` on one thread (FAISS's kernel: no BLAS thread pool to wake)."""
    _check_kernel_args(matrix, q)
    out = np.empty(len(matrix), dtype=np.float32)
    if len(matrix):
        faiss.fvec_inner_products_ny(
            faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(matrix), q.size, len(matrix)
        )
    return out


def _expand(ptr: np.ndarray, members: np.ndarray, groups: np.ndarray):
    """Rows of the given groups of a CSR grouping (their positions in it when `members` is
    None), and for each row its position in `groups`."""
    starts, ends = ptr[groups], ptr[groups + 1]
    sizes = (ends - starts).astype(np.int64)
    if len(sizes) and (sizes == 1).all():  # the usual case for content groups
        owner = np.arange(len(groups))
        return (starts, owner) if members is None else (members[starts].astype(np.int64), owner)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(groups)), sizes)
    offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions = starts[owner] + offsets
    if members is None:
        return positions, owner
    return members[positions].astype(np.int64), owner


def _merge_hits(scores_a, ids_a, scores_b, ids_b, k) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k best of two hit lists (scores desc, ties by id)."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    k = min(k, scores.shape[1])
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return (
        np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False),
        np.take_along_axis(ids, order, axis=1),
    )


@dataclass
class LoadedIndex:
    """One version of the index, memory-mapped and ready to search. Thread-safe for search.

    Filtered search (`allowed_ids`, e.g. a sub-collection swapped in as the database) is
    exact when at most max(`exact_allowed_max`, `exact_allowed_fraction` * n) rows are
    allowed: FAISS scans only the allowed rows of the flat vectors (an `IDSelectorBitmap`
    over the flat index, or the flat storage of an HNSW index). Larger allowed sets search
    the approximate index with the same selector, HNSW with its beam widened by
    1 / (fraction allowed), and fall back to exact search if that returns fewer than k.

    Measured here (80k x 1024 clustered rows, HNSW M 32, one thread, one query, k 20):

        allowed rows          1k      4k      16k     50k     64k
        default path (ms)     0.55    2.7     8.3     14.7    1.2 (HNSW + selector)
        forced HNSW + sel.    15.9    10.6    2.5     1.0     1.05
        its recall@20         0.97    1.0     1.0     1.0     1.0

    Unfiltered: HNSW 0.4 ms (recall@20 1.0), numpy exact 14 ms. HNSW with a selector is
    faster above ~10% allowed on this (uncorrelated) filter, but only exact search is
    exact whatever the filter; the defaults keep every sub-collection of up to 50k rows
    (or 20% of n) exact at <= ~15 ms. Tune the two attributes per deployment.
    """

    version: str
    path: Path
    kind: str
    n: int
    d: int
    meta: dict[str, Any]
    index: Any = field(repr=False)
    ids: np.ndarray = field(repr=False)
    vectors: np.ndarray = field(repr=False)
    device: str = "cpu"
    gpu_index: Any = field(default=None, repr=False)
    ef_search: int = 128
    exact_allowed_max: int = 50_000
    exact_allowed_fraction: float = 0.2
    _gpu_resources: Any = field(default=None, repr=False)
    _flat: Any = field(default=None, repr=False)
    _id_to_row: np.ndarray | None = field(default=None, repr=False)
    _sorted_ids: np.ndarray | None = field(default=None, repr=False)
    _sorted_rows: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _slots: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _content: np.ndarray | None = field(default=None, repr=False)
    # Distinct content vectors the slot search re-scores exactly after its compressed scan,
    # and how many of the best it trusts as the true top (see `_slot_search`). On the real
    # catalog (400 bench prompts, k 50, one run): 1,000 candidates gave recall@50 0.998,
    # 700 0.997, 600 0.995, 500 0.993; 700 took ~20% less time than 1,000.
    slot_refine: int = 700
    slot_content_candidates: int = 200
    # At most this many rows are re-scored by the threshold step of one slot search.
    slot_expand_max: int = 30_000
    # Rows changed since the build (see the module docstring); set by `apply_overlay`.
    _overlay: _AppliedOverlay | None = field(default=None, repr=False)
    _neighbours: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path, *, use_gpu: str | None = None) -> LoadedIndex:
        """Load a version folder. `use_gpu` None follows what the build recorded."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported index format {meta.get('format')!r}")
        index = faiss.read_index(str(path / "index.faiss"), faiss.IO_FLAG_MMAP_IFC)
        ids = np.load(path / "ids.npy", mmap_mode="r")
        vectors = np.load(path / "vectors.npy", mmap_mode="r")
        n, d = int(meta["n"]), int(meta["d"])
        kind = meta["kind"]
        index_d = d // 4 if kind == "slots" else d
        index_n = int(meta.get("params", {}).get("distinct_content", n)) if kind == "slots" else n
        if (
            index.ntotal != index_n
            or ids.shape != (n,)
            or vectors.shape != (n, d)
            or index.d != index_d
        ):
            raise ValueError(f"{path}: index, ids and vectors disagree with meta.json")
        kind = meta["kind"]
        params = meta.get("params", {})
        ef_search = int(params.get("ef_search", 128))
        flat = None
        if kind == "flat":
            flat = index
        elif kind == "hnsw":
            index.hnsw.efSearch = ef_search  # not stored in the index file
            flat = faiss.downcast_index(index.storage)
        elif kind == "ivf":
            index.nprobe = int(params.get("nprobe", 1))
        loaded = cls(
            version=path.name,
            path=path,
            kind=kind,
            n=n,
            d=d,
            meta=meta,
            index=index,
            ids=ids,
            vectors=vectors,
            ef_search=ef_search,
            _flat=flat,
        )
        if kind == "slots":
            if params.get("slot_layout") != SLOT_LAYOUT:
                raise ValueError(
                    f"{path}: slot index of an older layout: rebuild it (manage.py build_index)"
                )
            with np.load(path / "slots.npz") as tables:
                loaded._slots = {name: np.ascontiguousarray(tables[name]) for name in tables}
            slots = loaded._slots
            slots["combo_sizes"] = np.diff(slots["combo_ptr"])
            for b in range(3):  # contiguous columns gather faster
                slots[f"combo_label{b}"] = np.ascontiguousarray(slots["combo_labels"][:, b])
            slots["position_of_row"] = slots["position_of_row"].astype(np.int64)
            content = np.load(path / "content.npy", mmap_mode="r")
            if content.shape != (n, d // 4):
                raise ValueError(f"{path}: content.npy disagrees with meta.json")
            loaded._content = content.view(np.ndarray)  # plain array view: faster indexing
        if (path / "neighbours.npy").is_file():
            table = np.load(path / "neighbours.npy", mmap_mode="r")
            if table.shape[0] != n:
                raise ValueError(f"{path}: neighbours.npy disagrees with meta.json")
            loaded._neighbours = table
        mode = use_gpu or meta.get("gpu", {}).get("use_gpu", "auto")
        if mode != "never" and kind == "flat" and n > 0 and _gpu_count() > 0:
            loaded._to_gpu()
        elif mode == "always" and _gpu_count() == 0:
            raise RuntimeError("use_gpu='always' but this FAISS build sees no GPU")
        return loaded

    def _to_gpu(self) -> None:
        """Copy the flat index to GPU 0 for unfiltered searches (faiss-gpu builds only)."""
        resources = faiss.StandardGpuResources()
        self.gpu_index = faiss.index_cpu_to_gpu(resources, 0, self.index)
        self._gpu_resources = resources  # must outlive the GPU index
        self.device = "cuda:0"

    # -- id <-> row ----------------------------------------------------------------------

    def _build_lookup(self) -> None:
        ids = np.asarray(self.ids)
        if ids.size and ids.min() >= 0 and ids.max() <= 4 * ids.size + 1024:
            # Catalog ids are mostly dense integers: a direct table is O(1) per id.
            table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            table[ids] = np.arange(ids.size, dtype=np.int64)
            self._id_to_row = table
        else:
            order = np.argsort(ids, kind="stable")
            self._sorted_rows = order.astype(np.int64)
            self._sorted_ids = ids[order]

    def _rows_of(self, artwork_ids: np.ndarray) -> np.ndarray:
        """Row numbers of the given ids, in input order; -1 where an id is not indexed."""
        wanted = np.asarray(artwork_ids, dtype=np.int64).reshape(-1)
        if self._id_to_row is None and self._sorted_ids is None:
            with self._lock:
                if self._id_to_row is None and self._sorted_ids is None:
                    self._build_lookup()
        if self._id_to_row is not None:
            table = self._id_to_row
            inside = (wanted >= 0) & (wanted < table.size)
            rows = np.full(wanted.shape, -1, dtype=np.int64)
            rows[inside] = table[wanted[inside]]
            return rows
        sorted_ids, sorted_rows = self._sorted_ids, self._sorted_rows
        if sorted_ids.size == 0:
            return np.full(wanted.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == wanted, sorted_rows[pos], -1)

    def rows_of(self, artwork_ids: np.ndarray) -> np.ndarray:
        """Sorted, unique row numbers of the given catalog ids (unknown ids are skipped)."""
        rows = self._rows_of(artwork_ids)
        return np.unique(rows[rows >= 0])

    def vector_of(self, artwork_id: int) -> np.ndarray | None:
        """A copy of the vector of one artwork (its overlay entry when it changed since the
        build), or None if it is not indexed."""
        row = int(self._rows_of(np.array([artwork_id]))[0])
        if row < 0:
            return None
        return self.vectors_of([artwork_id])[0]

    def vectors_of(self, artwork_ids) -> np.ndarray:
        """Copies of the vectors of the given artworks, in order (all indexed); overlaid
        rows give their new vectors."""
        rows = self._rows_of(np.asarray(artwork_ids, dtype=np.int64))
        if (rows < 0).any():
            raise KeyError("some artworks are not in this index version")
        order = np.argsort(rows)  # read the mapped file in order
        out = np.empty((len(rows), self.d), dtype=np.float32)
        out[order] = self.vectors[rows[order]]
        overlay = self._overlay
        if overlay is not None:
            changed = overlay.mask[rows]
            if changed.any():
                at = np.searchsorted(overlay.rows, rows[changed])
                out[changed] = overlay.vectors[at]
        return out

    def neighbours_of(self, artwork_ids) -> np.ndarray | None:
        """(m, k) catalog ids of each artwork's nearest neighbours as found when the
        version was built (-1: none, or the artwork is not indexed), or None when the
        version stores none (see `build_index`'s `neighbours`)."""
        table = self._neighbours
        if table is None:
            return None
        rows = self._rows_of(np.asarray(artwork_ids, dtype=np.int64))
        out = np.full((len(rows), table.shape[1]), -1, dtype=np.int64)
        inside = rows >= 0
        out[inside] = table[rows[inside]]
        return out

    @property
    def snapshot_at(self) -> float | None:
        value = self.meta.get("snapshot_at")
        return float(value) if value is not None else None

    @property
    def overlaid(self) -> int:
        """How many rows are served from the overlay."""
        overlay = self._overlay
        return 0 if overlay is None else len(overlay.rows)

    def apply_overlay(self, overlay: Overlay | None) -> None:
        """Serve the overlay's entries that are newer than this version (and of its rows)."""
        applied = None
        if overlay is not None and len(overlay) and overlay.vectors.shape[1] == self.d:
            keep = np.ones(len(overlay), dtype=bool)
            if self.snapshot_at is not None:
                keep = overlay.stamps >= self.snapshot_at - OVERLAY_MARGIN_SECONDS
            rows = self._rows_of(overlay.ids)
            keep &= rows >= 0
            if keep.any():
                order = np.argsort(rows[keep], kind="stable")
                picked = rows[keep][order]
                mask = np.zeros(self.n, dtype=bool)
                mask[picked] = True
                applied = _AppliedOverlay(
                    rows=picked.astype(np.int64),
                    vectors=np.ascontiguousarray(overlay.vectors[keep][order], dtype=np.float32),
                    mask=mask,
                )
        self._overlay = applied  # one assignment: searches see the old or the new one

    def set_ef_search(self, ef: int) -> None:
        """HNSW search breadth (higher: better recall, slower). No effect on other kinds."""
        if ef < 1:
            raise ValueError("ef must be positive")
        self.ef_search = int(ef)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.ef_search

    # -- search --------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores (m, k'), catalog ids (m, k')), best first.

        k' = min(k, number of searchable rows); with `allowed_ids` only those artworks are
        searched (unknown ids are ignored). Fewer than k results come back only when fewer
        rows exist or are allowed: whenever FAISS returns fewer, exact search fills in.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        q = _as_queries(queries, self.d)
        overlay = self._overlay  # one snapshot for the whole search
        if overlay is None:
            if allowed_ids is None:
                return self._search_all(q, k)
            return self._search_mask(q, k, self._mask_of(allowed_ids))
        # Overlaid rows: the version's copy is out of date, so it is searched without them,
        # and their new vectors are scored exactly and merged in.
        allowed = None if allowed_ids is None else self._mask_of(allowed_ids)
        base = ~overlay.mask if allowed is None else allowed & ~overlay.mask
        scores, ids = self._search_mask(q, k, base)
        extra = np.ones(len(overlay.rows), bool) if allowed is None else allowed[overlay.rows]
        if not extra.any():
            return scores, ids
        extra_scores = (q @ overlay.vectors[extra].T).astype(np.float32)
        extra_ids = np.broadcast_to(
            np.asarray(self.ids)[overlay.rows[extra]], extra_scores.shape
        ).astype(np.int64)
        return _merge_hits(scores, ids, extra_scores, extra_ids, k)

    def _mask_of(self, allowed_ids) -> np.ndarray:
        rows = self._rows_of(allowed_ids)
        mask = np.zeros(self.n, dtype=bool)
        mask[rows[rows >= 0]] = True
        return mask

    def _search_mask(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the rows where `mask` is True: (scores, catalog ids)."""
        count = int(mask.sum())
        if count == 0:
            m = q.shape[0]
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        if count == self.n:
            return self._search_all(q, k)
        k_eff = min(k, count)
        bits = np.packbits(mask, bitorder="little")  # IDSelectorBitmap's bit order
        selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits))
        if self.kind == "slots" and count > max(
            self.exact_allowed_max, self.exact_allowed_fraction * self.n
        ):
            scores, found = self._slot_search_many(q, k_eff, mask, selector)
        elif count <= max(self.exact_allowed_max, self.exact_allowed_fraction * self.n):
            scores, found = self._exact(q, k_eff, mask, selector)
        else:
            scores, found = self._approximate_selected(q, k_eff, count, selector)
            scores, found = self._fill_short(q, scores, found, k_eff, mask, selector)
        del bits  # the selector points into it: keep it alive until here
        return scores.astype(np.float32, copy=False), np.asarray(self.ids)[found]

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k_eff = min(k, self.n)
        if k_eff == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        index = self.gpu_index if self.gpu_index is not None else self.index
        if self.kind == "slots":
            scores, rows = self._slot_search_many(q, k_eff, None, None)
            return scores.astype(np.float32, copy=False), np.asarray(self.ids)[rows]
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k_eff))
            scores, rows = index.search(q, k_eff, params=params)
        else:
            scores, rows = index.search(q, k_eff)
        scores, rows = self._fill_short(q, scores, rows, k_eff, None, None)
        return scores.astype(np.float32, copy=False), np.asarray(self.ids)[rows]

    def _slot_search_many(self, q, k, mask, selector) -> tuple[np.ndarray, np.ndarray]:
        results = [self._slot_search(row, k, mask) for row in q]
        scores = np.stack([r[0] for r in results]).astype(np.float32)
        rows = np.stack([r[1] for r in results]).astype(np.int64)
        return self._fill_short(q, scores, rows, k, mask, selector)

    def _slot_search(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Slot-decomposed search over fused [content, genre, artist, style] vectors.

        score(row) = content(row) . q_content + label(row), where label(row) is the sum over
        the genre, artist and style blocks of block . q_block. Label blocks take few values,
        so label scores are computed once per distinct (genre, artist, style) combination
        (a few thousand, against 81k rows), and every row of a combination shares one.

        1. The content index (PQ fast scan, re-scored exactly) returns the M best distinct
           content vectors with exact scores; c_M, the M-th best, bounds the content score
           of every row it did not return.
        2. Those rows are scored exactly (content + label of their combination).
        3. Threshold step: a row outside step 1 scores at most c_M + label(row), so only
           combinations with label + c_M > the current k-th best total can still place a
           row in the top k. They are scored exactly, best label first, in batches that
           start small and double (the first few hundred rows usually settle it),
           re-tightening the k-th best after each and stopping at the first combination
           that cannot reach it.

        Exact whenever step 1 returns the true top M by content (ties aside). Plain HNSW
        over the concatenation found only ~60% of the true top 50 for prompts that leave
        slots empty (their queries lie far from every stored vector and tie on labels).
        Every product runs on FAISS's one-thread kernels, straight from the mapped file.
        Returns (scores, rows), padded with -inf / -1.
        """
        t = self._slots
        d4 = self.d // 4
        q = np.ascontiguousarray(q, dtype=np.float32)
        qc = q[:d4]
        combo_label = np.zeros(len(t["combo_labels"]), dtype=np.float32)
        for b in range(3):
            qb = q[(b + 1) * d4 : (b + 2) * d4]
            if qb.any():
                combo_label += _dot_all(t[f"u{b}"], qb)[t[f"combo_label{b}"]]
        has_content = bool(qc.any())
        if has_content:
            groups, c_scores, bound = self._slot_content(qc, k, mask)
            scored, owner = _expand(t["content_ptr"], t["content_rows"], groups)
            totals = c_scores[owner] + combo_label[t["combo_of_row"][scored]]
            if mask is not None:
                keep = mask[scored]
                scored, totals = scored[keep], totals[keep]
        else:
            bound = 0.0  # every row's content part is 0
            scored = np.zeros(0, dtype=np.int64)
            totals = np.zeros(0, dtype=np.float32)
        kth = float(np.partition(totals, -k)[-k]) if len(totals) >= k else -np.inf
        # Threshold step over combinations, best label score first. (Rows that could only
        # tie with the k-th best are not needed: ties may go either way.)
        hot = np.flatnonzero(combo_label > kth - bound) if bound > -np.inf else np.zeros(0, int)
        if len(hot):
            hot = hot[np.argsort(-combo_label[hot], kind="stable")]
            falling = -combo_label[hot]  # ascending
            ends = np.cumsum(t["combo_sizes"][hot])
            seen = np.zeros(self.n, dtype=bool)
            seen[scored] = True
            budget = self.slot_expand_max
            start, batch = 0, 256
            while start < len(hot) and budget > 0:
                # Combinations that can still beat the k-th best: label > kth - bound.
                cut = int(np.searchsorted(falling, bound - kth, side="left"))
                if cut <= start:
                    break
                before = ends[start - 1] if start else 0
                stop = int(np.searchsorted(ends, before + batch, side="left")) + 1
                stop = min(max(stop, start + 1), cut)
                positions, _owner = _expand(t["combo_ptr"], None, hot[start:stop])
                start, batch = stop, batch * 2
                rows = t["combo_rows"][positions]
                keep = ~seen[rows] if mask is None else ~seen[rows] & mask[rows]
                positions, rows = positions[keep][:budget], rows[keep][:budget]
                if not len(rows):
                    continue
                budget -= len(rows)
                seen[rows] = True
                add = combo_label[t["combo_of_row"][rows]]
                if has_content:
                    add = add + _dot_rows(self._content, qc, positions)
                scored = np.concatenate([scored, rows])
                totals = np.concatenate([totals, add])
                if len(totals) >= k:
                    kth = float(np.partition(totals, -k)[-k])
                    if not has_content:
                        break  # label-only: best combinations first, the rest can only tie
        top = np.argpartition(-totals, k - 1)[:k] if len(totals) > k else np.arange(len(totals))
        top = top[np.argsort(-totals[top], kind="stable")]
        scores = np.full(k, -np.inf, dtype=np.float32)
        out = np.full(k, -1, dtype=np.int64)
        scores[: len(top)] = totals[top]
        out[: len(top)] = scored[top]
        return scores, out

    def _slot_content(self, qc, k, mask) -> tuple[np.ndarray, np.ndarray, float]:
        """Best distinct content vectors for `qc` with exact scores, best first, and the
        bound on the content score of every other row (-inf when all were scored)."""
        t = self._slots
        total = self.index.ntotal
        wanted = max(k, self.slot_content_candidates)
        refine = max(self.slot_refine, wanted)
        if mask is not None:
            # Candidates are filtered after the scan: scan more, by 1 / fraction allowed.
            fraction = max(float(mask.mean()), 1e-6)
            refine = int(math.ceil(refine / fraction))
            wanted = int(math.ceil(wanted / fraction))
        refine = min(refine, total)
        _approx, groups = self.index.search(qc[None, :], refine)
        groups = groups[0][groups[0] >= 0]
        first = t["content_rows"][t["content_ptr"][groups]]
        exact = _dot_rows(self._content, qc, t["position_of_row"][first])
        if len(groups) < total:
            best = np.argpartition(-exact, wanted - 1)[:wanted] if len(exact) > wanted else None
            if best is None:
                best = np.arange(len(exact))
            bound = float(exact[best].min()) if len(best) == wanted else -np.inf
        else:
            best = np.arange(len(exact))
            bound = -np.inf  # every distinct content vector was scored
        return groups[best], exact[best], bound

    def _exact(self, q, k, mask, selector) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed rows (all rows when `mask` is None)."""
        if self._flat is not None:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            return self._flat.search(q, k, params=params)
        rows = None if mask is None else np.flatnonzero(mask)
        return _exact_rows(self.vectors, q, k, rows)

    def _approximate_selected(self, q, k, count, selector) -> tuple[np.ndarray, np.ndarray]:
        # The CPU index: GPU indexes do not take selectors.
        if self.kind == "hnsw":
            # Filtered-out nodes are walked but not kept: widen the beam by 1 / fraction
            # allowed, so about as many allowed candidates are seen as without a filter.
            ef = min(int(math.ceil(max(self.ef_search, k) * self.n / count)), 4096)
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=int(self.index.nprobe), sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(q, k, params=params)

    def _fill_short(self, q, scores, rows, k, mask, selector) -> tuple[np.ndarray, np.ndarray]:
        """Redo with exact search any query for which FAISS returned fewer than k rows."""
        short = (rows < 0).any(axis=1)
        if short.any():
            exact_scores, exact_rows = self._exact(q[short], k, mask, selector)
            scores, rows = scores.copy(), rows.copy()
            scores[short] = exact_scores
            rows[short] = exact_rows
        return scores, rows


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
