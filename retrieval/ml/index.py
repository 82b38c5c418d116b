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

Builds never touch the served version: a build writes a temporary folder inside `root`,
fsyncs it, renames it into `versions/`, and only then replaces `CURRENT` with
`os.replace` (atomic on POSIX). A failure at any point leaves `CURRENT` naming the old
version. The newest `keep` versions are kept (never the current one); processes still
serving a pruned version keep working, since their mapped files stay alive until unmapped.

`IndexStore.current()` is what a web or worker process calls per request: it loads the
current version once (memory-mapped with `IO_FLAG_MMAP_IFC`, so processes share one copy in
the page cache), then at most once a second stats `CURRENT` and swaps in a newer version.

Vectors are expected L2-normalised (see `fusion.py`): inner product is the score.

Index kinds (measured on 80k x 1024 clustered vectors, one thread, see ENVIRONMENT.md):
``flat`` (IndexFlatIP, exact, ~16 ms/query) up to `exact_max` rows; ``hnsw``
(IndexHNSWFlat M=32, ~0.2 ms/query, recall@20 0.99) above; ``ivf`` (IVF-Flat, nprobe
calibrated at build time for recall@10 >= 0.95 on a sample) on request.
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
IVF_TARGET_RECALL = 0.95
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
        # HNSW over the content block only; label blocks are scored exactly at search time.
        content = np.ascontiguousarray(vectors[:, : d // 4])
        index = faiss.IndexHNSWFlat(d // 4, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        _add_in_chunks(index, content, report)
        return index, {
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "blocks": 4,
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


def _write_slot_tables(folder: Path, vectors: np.ndarray) -> None:
    """For each label block (genre, artist, style): its distinct rows and, per catalog row,
    which one it holds. A few thousand distinct labels stand for 81k rows."""
    d4 = vectors.shape[1] // 4
    inverse = np.zeros((vectors.shape[0], 3), dtype=np.int32)
    uniques = {}
    for b in range(3):
        block = np.ascontiguousarray(vectors[:, (b + 1) * d4 : (b + 2) * d4])
        uniq, inv = np.unique(block, axis=0, return_inverse=True)
        uniques[f"u{b}"] = uniq.astype(np.float32)
        inverse[:, b] = inv.reshape(-1)
    with open(folder / "slots.npz", "wb") as fh:
        np.savez(fh, inverse=inverse, **uniques)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        _fsync_file(path)


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
    """
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
    index, params = _build_faiss(
        chosen,
        vectors,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        report=lambda f: report("building", 0.05 + 0.75 * f),
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
        "build_seconds": round(build_seconds, 4),
        "faiss_version": getattr(faiss, "__version__", "unknown"),
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
        if chosen == "slots":
            _write_slot_tables(tmp, vectors)
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
    pruned = prune_versions(root, keep)
    if pruned:
        logger.info("Pruned old index versions: %s", ", ".join(pruned))
    seconds = time.perf_counter() - started
    report("done", 1.0)
    return IndexInfo(version=version, path=final, kind=chosen, n=n, d=d, seconds=seconds)


# ---------------------------------------------------------------------------------------
# Loading and searching


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
    _slot_inverse: np.ndarray | None = field(default=None, repr=False)
    _slot_uniques: list | None = field(default=None, repr=False)
    # Content candidates the slot index takes from its HNSW before exact re-scoring.
    slot_content_candidates: int = 500
    # At most this many extra rows are re-scored by the threshold step of a slot search.
    slot_expand_max: int = 20_000

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
        if index.ntotal != n or ids.shape != (n,) or vectors.shape != (n, d) or index.d != index_d:
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
        elif kind == "slots":
            index.hnsw.efSearch = ef_search
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
            with np.load(path / "slots.npz") as tables:
                loaded._slot_inverse = np.ascontiguousarray(tables["inverse"])
                loaded._slot_uniques = [tables[f"u{b}"] for b in range(3)]
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
        """A copy of the stored vector of one artwork, or None if it is not indexed."""
        row = int(self._rows_of(np.array([artwork_id]))[0])
        if row < 0:
            return None
        return np.array(self.vectors[row], dtype=np.float32)

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
        if allowed_ids is None:
            return self._search_all(q, k)
        rows = self._rows_of(allowed_ids)
        mask = np.zeros(self.n, dtype=bool)
        mask[rows[rows >= 0]] = True
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
        results = [self._slot_search(row, k, mask, selector) for row in q]
        scores = np.stack([r[0] for r in results]).astype(np.float32)
        rows = np.stack([r[1] for r in results]).astype(np.int64)
        return self._fill_short(q, scores, rows, k, mask, selector)

    def _slot_search(self, q, k, mask, selector) -> tuple[np.ndarray, np.ndarray]:
        """Slot-decomposed search over fused [content, genre, artist, style] vectors.

        Score = content . q_content + sum over label blocks of label . q_label. Label blocks
        take few distinct values, so their part is exact for every row by table look-up;
        the candidates are every row tied at or above the k-th best label score, plus the
        best rows by content from an HNSW over the content block alone; candidates are then
        scored exactly. Plain HNSW over the concatenation found only ~60% of the true top 50
        for prompts that leave slots empty (their queries lie far from every stored vector
        and tie on labels); this finds them. Returns (scores, rows), padded with -1.
        """
        d4 = self.d // 4
        qc = q[:d4]
        label = np.zeros(self.n, dtype=np.float32)
        has_label = False
        for b in range(3):
            qb = q[(b + 1) * d4 : (b + 2) * d4]
            if np.any(qb):
                label += (self._slot_uniques[b] @ qb)[self._slot_inverse[:, b]]
                has_label = True
        if mask is not None:
            label[~mask] = -np.inf
        parts = []
        if has_label:
            kth = np.partition(label, -k)[-k]
            parts.append(np.flatnonzero(label >= kth - 1e-6))
        if np.any(qc):
            m = max(k, self.slot_content_candidates)
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, m), sel=selector)
            _s, found = self.index.search(qc[None, :].astype(np.float32), m, params=params)
            parts.append(found[0][found[0] >= 0])
        if not parts:  # an all-zero query: every row scores 0
            parts.append(np.flatnonzero(mask) if mask is not None else np.arange(self.n))
        candidates = np.unique(np.concatenate(parts))
        if mask is not None:
            candidates = candidates[mask[candidates]]
        total = np.asarray(self.vectors[candidates, :d4]) @ qc + label[candidates]
        if has_label and np.any(qc) and len(total) >= k:
            # Threshold step: a row can only reach the top k if its label score plus the
            # best content score anywhere (the content search's top hit) beats the current
            # k-th total. Score those rows too (capped, so a pathological query stays fast).
            best_content = float(np.max(total - label[candidates]))
            kth_total = float(np.partition(total, -k)[-k])
            more = np.flatnonzero(label >= kth_total - best_content)
            more = np.setdiff1d(more, candidates, assume_unique=False)
            if len(more):
                more = more[: self.slot_expand_max]
                candidates = np.concatenate([candidates, more])
                total = np.concatenate(
                    [total, np.asarray(self.vectors[more, :d4]) @ qc + label[more]]
                )
        top = np.argsort(-total, kind="stable")[:k]
        scores = np.full(k, -np.inf, dtype=np.float32)
        rows = np.full(k, -1, dtype=np.int64)
        scores[: len(top)] = total[top]
        rows[: len(top)] = candidates[top]
        return scores, rows

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
        self._lock = threading.Lock()

    def current(self) -> LoadedIndex | None:
        """The loaded current version, or None when no index has been built (or loaded)."""
        if time.monotonic() - self._last_check < self.check_interval:
            return self._loaded
        with self._lock:
            if time.monotonic() - self._last_check >= self.check_interval:
                self._refresh()
                self._last_check = time.monotonic()
            return self._loaded

    def reload(self) -> LoadedIndex | None:
        """Check `CURRENT` now, whatever the interval."""
        with self._lock:
            self._signature = None
            self._refresh()
            self._last_check = time.monotonic()
            return self._loaded

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
