"""The structure-aware exact search (`slot_exact_search`) against plain brute force."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml.fusion import query_vector
from retrieval.ml.index import SlotParts, exact_search, slot_exact_search


def _catalog(n: int, w: int, seed: int, duplicates: bool):
    """Fused rows [content, genre, artist, style] / 2 with few label values (a zero genre
    block for rows without one) and, optionally, rows sharing content and labels."""
    rng = np.random.default_rng(seed)

    def unit(m):
        v = rng.normal(size=(m, w)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    genres = np.vstack([np.zeros((1, w), np.float32), unit(5)])  # row 0: no genre
    artists, styles = unit(40), unit(7)
    content = unit(n)
    g, a, s = rng.integers(0, 6, n), rng.integers(0, 40, n), rng.integers(0, 7, n)
    if duplicates:
        src, dst = rng.integers(0, n, n // 5), rng.choice(n, n // 5, replace=False)
        content[dst], g[dst], a[dst], s[dst] = content[src], g[src], a[src], s[src]
    rows = np.hstack([content, genres[g], artists[a], styles[s]]) / 2
    queries = []
    for i in range(24):
        near = content[rng.integers(0, n)] + 0.3 * rng.normal(size=w)
        slots = [{}, {"artist": artists[i % 40]}, {"genre": genres[1 + i % 5]}][i % 3]
        queries.append(query_vector(None if i % 6 == 5 else near, dim=w, **slots))
    return rows.astype(np.float32), np.stack(queries)


def test_parts_round_trip_the_fused_rows():
    rows, _ = _catalog(500, 12, seed=1, duplicates=True)
    parts = SlotParts.from_fused(rows)
    assert parts.n == 500 and parts.d == rows.shape[1]
    assert [len(t) for t in parts.labels] == [6, 40, 7]  # distinct label rows only
    np.testing.assert_array_equal(parts.fused(), rows)
    picked = np.array([7, 3, 499, 3])
    np.testing.assert_array_equal(parts.fused(picked), rows[picked])


def test_structure_aware_exact_returns_the_brute_force_top_k():
    """Distinct scores: the same ids in the same order, the same scores."""
    rows, queries = _catalog(3000, 16, seed=2, duplicates=False)
    ids = np.arange(3000, dtype=np.int64) * 3 + 11
    parts = SlotParts.from_fused(rows)
    for k in (1, 10, 50):
        want_scores, want_ids = exact_search(rows, ids, queries[::6], k)  # content queries
        scores, found = slot_exact_search(parts, ids, queries[::6], k)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_structure_aware_exact_with_ties_and_every_prompt_form():
    """Duplicated rows and label-only queries tie: the scores must equal brute force's,
    and every returned row must truly score them."""
    rows, queries = _catalog(3000, 16, seed=3, duplicates=True)
    ids = np.arange(3000, dtype=np.int64) + 5
    parts = SlotParts.from_fused(rows)
    k = 40
    want_scores, _ = exact_search(rows, ids, queries, k)
    scores, found = slot_exact_search(parts, ids, queries, k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    true = np.einsum("qkd,qd->qk", rows[found - 5], queries)
    np.testing.assert_allclose(scores, true, atol=1e-6)
    assert all(len(set(r)) == k for r in found.tolist())  # no row twice


def test_structure_aware_exact_over_a_subset_of_rows():
    from retrieval.ml.index.exact import exact_rows, slot_exact_rows

    rows, queries = _catalog(2000, 8, seed=4, duplicates=False)
    parts = SlotParts.from_fused(rows)
    subset = np.flatnonzero(np.arange(2000) % 7 == 2)
    want_scores, want_rows = exact_rows(rows, queries, 15, subset)
    scores, found = slot_exact_rows(parts, queries, 15, subset)
    np.testing.assert_array_equal(found, want_rows)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert slot_exact_rows(parts, queries, 5, np.zeros(0, np.int64))[1].shape == (24, 0)


def test_parts_refuse_mismatched_shapes():
    content = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="label_of_row"):
        SlotParts(content, (np.zeros((2, 8), np.float32),) * 3, np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="three"):
        SlotParts(content, (np.zeros((2, 4), np.float32),) * 3, np.zeros((4, 3), np.int32))
