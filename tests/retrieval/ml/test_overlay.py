"""The index overlay: rows changed since a build are served at once, in every process."""

from __future__ import annotations

import time

import numpy as np
import pytest

from retrieval.ml.index import (
    OVERLAY_FILE,
    OVERLAY_MARGIN_SECONDS,
    IndexStore,
    LoadedIndex,
    build_index,
    exact_search,
    overlay_compact,
    overlay_read,
    overlay_write,
)

from .test_index import _fused_catalog, _slot_queries


def _relabel(rows: np.ndarray, which: np.ndarray, genre_block: np.ndarray) -> np.ndarray:
    """`rows` with the genre block of rows `which` replaced (a curator's correction)."""
    d4 = rows.shape[1] // 4
    changed = rows.copy()
    changed[which, d4 : 2 * d4] = genre_block / 2
    return changed


@pytest.mark.parametrize("kind", ["flat", "slots", "compressed"])
def test_overlaid_rows_score_as_if_rebuilt(tmp_path, kind):
    rows, parts = _fused_catalog(3000, 16, seed=11)
    ids = np.arange(len(rows), dtype=np.int64) * 3 + 5
    info = build_index(rows, ids, tmp_path, kind=kind, blocks=4)
    genres = parts[1]
    which = np.array([7, 300, 1999, 2500])
    changed = _relabel(rows, which, genres[(np.arange(len(which)) + 2) % len(genres)])
    overlay_write(tmp_path, ids[which], changed[which], keys=np.ones(len(which)))

    loaded = LoadedIndex.open(info.path)
    loaded.apply_overlay(overlay_read(tmp_path))
    assert loaded.overlaid == len(which)
    queries = _slot_queries(parts, seed=12)
    k = 15
    want_scores, _ = exact_search(changed, ids, queries, k)
    scores, found = loaded.search(queries, k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    true = np.einsum("qkd,qd->qk", changed[(found - 5) // 3], queries)
    np.testing.assert_allclose(scores, true, atol=1e-5)  # each hit's score is its new one
    # A sub-collection: overlaid rows outside it never come back, those inside do.
    allowed = ids[(np.arange(len(ids)) % 2 == 0) | np.isin(np.arange(len(ids)), which[:2])]
    sub = changed[np.isin(ids, allowed)]
    want_sub, _ = exact_search(sub, allowed, queries, k)
    got_sub, found_sub = loaded.search(queries, k, allowed_ids=allowed)
    assert np.isin(found_sub, allowed).all()
    np.testing.assert_allclose(got_sub, want_sub, atol=1e-5)
    # Stored vectors read back are the new ones.
    np.testing.assert_array_equal(loaded.vector_of(int(ids[which[0]])), changed[which[0]])
    np.testing.assert_array_equal(loaded.vectors_of(ids[which][::-1]), changed[which][::-1])


def test_the_newer_label_version_wins_whatever_the_write_order(tmp_path):
    vec = np.eye(2, 8, dtype=np.float32)
    overlay_write(tmp_path, [10], vec[1:], keys=[5])
    overlay_write(tmp_path, [10], vec[:1], keys=[4])  # an older change finishing late
    overlay = overlay_read(tmp_path)
    assert overlay.ids.tolist() == [10] and overlay.keys.tolist() == [5]
    np.testing.assert_array_equal(overlay.vectors[0], vec[1])
    overlay_write(tmp_path, [10, 11], None, keys=[5, 0])  # forgotten: a rebuild carries it
    assert overlay_read(tmp_path) is None and not (tmp_path / OVERLAY_FILE).exists()


def test_a_rebuild_drops_entries_it_holds_but_keeps_later_ones(tmp_path):
    rows, _parts = _fused_catalog(300, 8, seed=13)
    ids = np.arange(300, dtype=np.int64)
    build_index(rows, ids, tmp_path, kind="flat")
    long_ago = time.time() - 10 * OVERLAY_MARGIN_SECONDS
    overlay_write(tmp_path, [1], rows[2:3], keys=[1], stamp=long_ago)  # written, then rebuilt
    assert overlay_read(tmp_path) is None  # older than the current version: dropped
    snapshot = time.time()
    info = build_index(rows, ids, tmp_path, kind="flat", snapshot_at=snapshot)
    overlay_write(tmp_path, [3], rows[4:5], keys=[1], stamp=snapshot + 1)
    assert overlay_compact(tmp_path) == 1
    loaded = LoadedIndex.open(info.path)
    loaded.apply_overlay(overlay_read(tmp_path))
    np.testing.assert_array_equal(loaded.vector_of(3), rows[4])
    later = build_index(rows, ids, tmp_path, kind="flat", snapshot_at=snapshot + 10_000)
    assert overlay_read(tmp_path) is None  # the build compacted it away
    assert later.version != info.version


def test_every_store_notices_an_overlay_within_its_check_interval(tmp_path):
    rows, _parts = _fused_catalog(200, 8, seed=14)
    ids = np.arange(200, dtype=np.int64) + 1
    build_index(rows, ids, tmp_path, kind="flat")
    stores = [IndexStore(tmp_path, check_interval=0.05) for _ in range(3)]
    for store in stores:
        assert store.current().overlaid == 0
    overlay_write(tmp_path, [5], rows[9:10], keys=[1])
    time.sleep(0.06)
    for store in stores:
        loaded = store.current()
        assert loaded.overlaid == 1
        np.testing.assert_array_equal(loaded.vector_of(5), rows[9])
        scores, found = loaded.search(rows[9:10], 2)
        assert set(found[0].tolist()) == {5, 10}  # both rows now hold that vector
    # A new version re-applies the overlay to itself: within the margin for clocks the
    # entry stays (it repeats what the version holds), beyond it the build drops it.
    build_index(rows, ids, tmp_path, kind="flat")
    time.sleep(0.06)
    assert all(store.current().overlaid == 1 for store in stores)
    build_index(rows, ids, tmp_path, kind="flat", snapshot_at=time.time() + OVERLAY_MARGIN_SECONDS)
    assert overlay_read(tmp_path) is None
    time.sleep(0.06)
    assert all(store.current().overlaid == 0 for store in stores)


@pytest.mark.parametrize("kind", ["flat", "slots", "compressed"])
def test_a_build_stores_each_rows_neighbours_found_blind_to_one_block(tmp_path, kind):
    rows, _parts = _fused_catalog(1500, 8, seed=15)
    ids = np.arange(len(rows), dtype=np.int64) * 2 + 1
    info = build_index(
        rows, ids, tmp_path, kind=kind, blocks=4, neighbours=5, neighbours_blind_block=1
    )
    loaded = LoadedIndex.open(info.path)
    assert loaded.meta["neighbours"] == {"k": 5, "blind_block": 1}
    blind = rows.copy()
    blind[:, 8:16] = 0  # the genre block of the queries
    picked = np.array([0, 17, 999, 1499])
    _scores, truth = exact_search(rows, ids, blind[picked], 6)
    table = loaded.neighbours_of(ids[picked])
    for row, want, own in zip(table, truth, ids[picked], strict=True):
        want = [i for i in want if i != own][:5]
        exact = rows[(np.asarray(want) - 1) // 2] @ blind[(own - 1) // 2]
        got = rows[(row - 1) // 2] @ blind[(own - 1) // 2]
        np.testing.assert_allclose(np.sort(got), np.sort(exact), atol=1e-5)  # ties aside
        assert own not in row
    assert (loaded.neighbours_of([10**6]) == -1).all()  # not indexed
    plain = build_index(rows, ids, tmp_path / "plain", kind=kind, blocks=4)
    assert LoadedIndex.open(plain.path).neighbours_of(ids[:2]) is None
