"""Exact inner-product search in numpy: the baseline, the filtered path, and merging hits.

Works block by block, so a memory-mapped (n, d) file is never copied whole. Results are
best first, ties broken by row order (deterministic).
"""

from __future__ import annotations

import numpy as np

_SEARCH_CHUNK = 16384  # rows per block in exact search (bounded memory on big catalogs)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
    top_scores, pos = top_k(scores, k)
    return top_scores, np.take_along_axis(rows, pos, axis=1)


def exact_rows(
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
        scores, pos = top_k(queries @ block.T, k)
        best = _merge(best, (scores, block_rows[pos]), k)
    if best is None:
        m = queries.shape[0]
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    return best


def exact_search(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product search: (scores (m, k'), ids (m, k')), best first.

    k' = min(k, n). Ties are broken by row order. The baseline of tests and benchmarks;
    `LoadedIndex` scans the same way (`exact_rows`) where it does not use FAISS.
    """
    queries = as_queries(queries, vectors.shape[1])
    ids = np.asarray(ids, dtype=np.int64)
    scores, rows = exact_rows(vectors, queries, k)
    return scores, ids[rows]


def as_queries(queries: np.ndarray, d: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != d:
        raise ValueError(f"queries must have shape (m, {d}) or ({d},), got {np.shape(queries)}")
    return np.ascontiguousarray(q)


def merge_hits(scores_a, ids_a, scores_b, ids_b, k) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k best of two hit lists (scores desc, ties by id)."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    k = min(k, scores.shape[1])
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return (
        np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False),
        np.take_along_axis(ids, order, axis=1),
    )
