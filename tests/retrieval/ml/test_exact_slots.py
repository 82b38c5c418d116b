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
    # Label-only queries tie (every row of a genre scores the same): the order among equal
    # scores is free, so compare the scores, that each row truly scores them, and the rows
    # of every query whose scores are distinct.
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    np.testing.assert_allclose(np.einsum("qkd,qd->qk", rows[found], queries), scores, atol=1e-6)
    assert np.isin(found, subset).all()
    distinct = [q for q in range(len(queries)) if len(np.unique(want_scores[q].round(5))) == 15]
    assert distinct, "the catalog must give some queries distinct scores"
    np.testing.assert_array_equal(found[distinct], want_rows[distinct])
    assert slot_exact_rows(parts, queries, 5, np.zeros(0, np.int64))[1].shape == (24, 0)


def test_parts_refuse_mismatched_shapes():
    content = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="label_of_row"):
        SlotParts(content, (np.zeros((2, 8), np.float32),) * 3, np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="three"):
        SlotParts(content, (np.zeros((2, 4), np.float32),) * 3, np.zeros((4, 3), np.int32))


# -- The compressed kind (compressed.py) ----------------------------------------------------


def test_content_groups_match_sorting_and_survive_a_hash_collision(monkeypatch):
    from retrieval.ml.index import slots as slots_module

    rng = np.random.default_rng(9)
    content = rng.normal(size=(800, 12)).astype(np.float32)
    content[rng.choice(800, 200, replace=False)] = content[rng.integers(0, 800, 200)]
    want = slots_module._content_groups_sorted(content)
    np.testing.assert_array_equal(slots_module.content_groups(content, chunk=128), want)
    # Every key equal: the row comparison must notice and fall back to sorting.
    monkeypatch.setattr(
        slots_module, "_row_words", lambda block, words: np.zeros((len(block), 1), np.uint64)
    )
    np.testing.assert_array_equal(slots_module.content_groups(content, chunk=128), want)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    from retrieval.ml.index import LoadedIndex, build_index

    rows, queries = _catalog(6000, 16, seed=11, duplicates=True)
    ids = np.arange(len(rows), dtype=np.int64) * 2 + 1
    root = tmp_path_factory.mktemp("compressed")
    content = root.parent / "content-input.npy"
    np.save(content, np.ascontiguousarray(rows[:, :16]))
    parts = SlotParts.from_fused(rows)
    mapped = SlotParts(np.load(content, mmap_mode="r"), parts.labels, parts.label_of_row)
    info = build_index(mapped, ids, root, exact_max=1000, compressed_min=5000)
    return rows, ids, queries, info, LoadedIndex.open(info.path)


def test_compressed_kind_is_chosen_above_its_threshold_and_stores_no_fused_rows(compressed):
    rows, ids, queries, info, loaded = compressed
    assert info.kind == "compressed" and loaded.kind == "compressed"
    assert not (info.path / "vectors.npy").exists() and loaded.vectors is None
    params = loaded.meta["params"]
    assert params["content_index"].startswith("ivf") and params["nprobe"] >= 1
    assert params["distinct_content"] < len(rows)
    np.testing.assert_array_equal(loaded.vectors_of(ids[[5, 0, 77]]), rows[[5, 0, 77]])


def test_compressed_build_stores_neighbours_from_the_parts(tmp_path):
    from retrieval.ml.index import LoadedIndex, build_index

    rows, _queries = _catalog(600, 16, seed=12, duplicates=False)
    parts = SlotParts.from_fused(rows)
    info = build_index(
        parts, np.arange(600), tmp_path, exact_max=100, compressed_min=500, neighbours=3
    )
    assert info.kind == "compressed"
    table = LoadedIndex.open(info.path).neighbours_of(np.arange(600))
    want = np.argsort(-(rows @ rows.T), axis=1)[:, 1:4]  # nearest other rows, exactly
    assert (table == want).mean() >= 0.9


def test_compressed_search_matches_exact_for_every_prompt_form(compressed, monkeypatch):
    from retrieval.ml.index import exact_search

    rows, ids, queries, _info, loaded = compressed
    import faiss

    # Every list and every distinct content vector: the search must then be exact.
    monkeypatch.setattr(loaded.slots, "refine", 6000)
    ivf = faiss.extract_index_ivf(loaded.slots.index)
    monkeypatch.setattr(ivf, "nprobe", ivf.nlist)
    k = 25
    want, _ = exact_search(rows, ids, queries, k)
    scores, found = loaded.search(queries, k)
    np.testing.assert_allclose(scores, want, atol=1e-5)
    true = np.einsum("qkd,qd->qk", rows[(found - 1) // 2], queries)
    np.testing.assert_allclose(scores, true, atol=1e-5)
    # Sub-collections: a small one (scanned exactly from the parts) and a large one.
    for allowed in (ids[ids % 7 == 3], ids[ids % 3 != 0]):
        sub = rows[np.isin(ids, allowed)]
        want_sub, _ = exact_search(sub, allowed, queries, k)
        got, found_sub = loaded.search(queries, k, allowed_ids=allowed)
        assert np.isin(found_sub, allowed).all()
        np.testing.assert_allclose(got, want_sub, atol=1e-5)


def test_compressed_kind_at_its_defaults_keeps_recall(compressed):
    from retrieval.ml.index import exact_search

    rows, ids, queries, _info, loaded = compressed
    assert loaded.slots.refine == 1500  # the defaults, as served (`compressed_refine`)
    k = 25
    want, _ = exact_search(rows, ids, queries, k)
    scores, _found = loaded.search(queries, k)
    kth = want[:, -1:]
    assert (scores >= kth - 1e-5).mean() >= 0.95


def test_threshold_step_sorts_combinations_lazily_and_stays_exact(tmp_path, monkeypatch):
    """With a head of 3 combinations the threshold step must sort the rest when it reaches
    them, and return brute force's scores for every prompt form."""
    from retrieval.ml.index import LoadedIndex, build_index
    from retrieval.ml.index import slots as slots_module

    from .test_index import _fused_catalog, _slot_queries

    monkeypatch.setattr(slots_module, "HOT_HEAD", 3)
    rows, parts = _fused_catalog(3000, 16, seed=13)
    ids = np.arange(len(rows), dtype=np.int64) + 10
    loaded = LoadedIndex.open(build_index(rows, ids, tmp_path, kind="slots", blocks=4).path)
    loaded.slots.content_candidates, loaded.slots.refine = 10, 10
    queries = _slot_queries(parts, seed=14)
    want, _ = exact_search(rows, ids, queries, 20)
    scores, _found = loaded.search(queries, 20)
    np.testing.assert_allclose(scores, want, atol=1e-5)


def test_label_only_search_sorts_only_the_head_of_the_combinations(tmp_path, monkeypatch):
    """A label-only query is settled by its best combinations: the threshold step must not
    sort every combination first (at 1 M rows, 126,609 of them, it took most of 20 ms)."""
    from retrieval.ml.index import LoadedIndex, build_index
    from retrieval.ml.index import slots as slots_module

    from .test_index import _fused_catalog

    rows, parts = _fused_catalog(3000, 16, seed=15)
    ids = np.arange(len(rows), dtype=np.int64) + 10
    loaded = LoadedIndex.open(build_index(rows, ids, tmp_path, kind="slots", blocks=4).path)
    assert loaded.slots.tables["combo_labels"].shape[0] > 100
    sorted_sizes = []
    best_first = slots_module._best_first

    def recording(combos, label, head):
        sorted_sizes.append(min(head, len(combos)))
        return best_first(combos, label, head)

    monkeypatch.setattr(slots_module, "HOT_HEAD", 8)
    monkeypatch.setattr(slots_module, "_best_first", recording)
    _content, genres, artists, _styles = parts
    for q in (query_vector(artist=artists[3], dim=16), query_vector(genre=genres[2], dim=16)):
        want, _ = exact_search(rows, ids, q[None, :], 5)
        scores, _found = loaded.search(q[None, :], 5)
        np.testing.assert_allclose(scores, want, atol=1e-5)
    assert sorted_sizes == [8, 8]


def test_compressed_refine_grows_with_the_catalog_within_its_bounds():
    from retrieval.ml.index.compressed import compressed_refine

    assert compressed_refine(5_000) == compressed_refine(885_113) == 1500
    assert compressed_refine(8_805_786) == 2935
    assert compressed_refine(10**9) == 6000


@pytest.mark.parametrize("kind", ["spread", "ties", "few high"])
def test_best_first_picks_the_head_through_a_sampled_cut(kind):
    """`_best_first` must return the `head` largest, best first, and every other one once,
    whether the sampled cut narrows the selection (spread values), keeps too many (ties)
    or too few (a handful of high values the sample misses)."""
    from retrieval.ml.index.slots import _best_first

    rng = np.random.default_rng(21)
    label = {
        "spread": rng.standard_normal(200_000),
        "ties": np.round(rng.standard_normal(200_000), 1),
        "few high": np.concatenate([np.zeros(199_990), np.arange(1.0, 11.0)]),
    }[kind].astype(np.float32)
    combos = rng.permutation(len(label))[:150_000]
    head = 64
    first, rest = _best_first(combos, label, head)
    want = np.sort(label[combos])[::-1][:head]
    np.testing.assert_array_equal(label[first], want)
    assert len(first) == head and (np.diff(label[first]) <= 0).all()
    np.testing.assert_array_equal(np.sort(np.concatenate([first, rest])), np.sort(combos))
