"""Versioned FAISS indexes: both kinds against exact search, filtering, atomic swaps."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from retrieval.ml.index import (
    IndexStore,
    LoadedIndex,
    build_index,
    exact_search,
    kernels,
    list_versions,
    read_current,
)
from retrieval.ml.index import gpu as gpu_module
from retrieval.ml.index import slots as slots_module
from retrieval.ml.index import versions as versions_module

from .helpers import clustered

D = 32


@pytest.fixture(scope="module")
def data():
    vectors, queries = clustered(3000, D, clusters=30, noise=0.6, seed=1, queries=50)
    ids = np.arange(3000, dtype=np.int64) * 7 + 100  # catalog ids are not row numbers
    return vectors, ids, queries


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


@pytest.fixture(scope="module")
def flat_index(data, tmp_path_factory):
    vectors, ids, _ = data
    root = tmp_path_factory.mktemp("flat")
    info = build_index(vectors, ids, root, exact_max=1000)
    return info, LoadedIndex.open(info.path)


def test_exact_search_is_correct(data):
    vectors, ids, queries = data
    scores, found = exact_search(vectors, ids, queries, 10)
    brute = queries @ vectors.T
    best = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[best])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, best, axis=1), atol=1e-5)


def test_auto_picks_flat_at_or_under_exact_max(data, tmp_path):
    vectors, ids, queries = data
    stages = []
    info = build_index(
        vectors[:500],
        ids[:500],
        tmp_path,
        exact_max=500,
        meta={"model_id": "tiny"},
        progress=lambda stage, fraction: stages.append((stage, fraction)),
    )
    assert info.kind == "flat" and info.n == 500 and info.d == D
    assert read_current(tmp_path) == info.version
    meta = json.loads((info.path / "meta.json").read_text())
    assert meta["kind"] == "flat" and meta["user"] == {"model_id": "tiny"}
    assert meta["gpu"]["use_gpu"] == "auto"
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and stages[-1] == ("done", 1.0)

    loaded = LoadedIndex.open(info.path)
    scores, found = loaded.search(queries, 10)
    exact_scores, exact_ids = exact_search(vectors[:500], ids[:500], queries, 10)
    np.testing.assert_array_equal(found, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_auto_stays_flat_above_exact_max_without_the_fused_layout(data, flat_index):
    """Only fused vectors (blocks=4) get the slot index; anything else is searched exactly."""
    vectors, ids, queries = data
    info, loaded = flat_index
    assert info.kind == loaded.kind == "flat"
    scores, found = loaded.search(queries, 10)
    exact_scores, truth = exact_search(vectors, ids, queries, 10)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_auto_picks_slots_above_exact_max_for_fused_vectors(tmp_path):
    rows, _parts = _fused_catalog(600, 8, seed=2)
    info = build_index(rows, np.arange(600), tmp_path / "big", exact_max=500, blocks=4)
    assert info.kind == "slots"
    info = build_index(rows, np.arange(600), tmp_path / "small", exact_max=600, blocks=4)
    assert info.kind == "flat"


def test_removed_kinds_are_refused_when_built_and_when_loaded(data, tmp_path):
    """HNSW and IVF were removed: asking for them fails, and a version of either left on
    disk by an older build asks for a rebuild (its store keeps serving what it had)."""
    vectors, ids, _ = data
    for kind in ("hnsw", "ivf"):
        with pytest.raises(ValueError, match="kind must be one of"):
            build_index(vectors[:50], ids[:50], tmp_path, kind=kind)
    info = build_index(vectors[:50], ids[:50], tmp_path)
    meta_path = info.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["kind"] = "hnsw"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no longer served: rebuild"):
        LoadedIndex.open(info.path)


def test_single_query_and_k_above_n(flat_index, data):
    vectors, ids, queries = data
    _, loaded = flat_index
    scores, found = loaded.search(queries[0], 5)
    assert scores.shape == found.shape == (1, 5)
    assert np.all(np.diff(scores[0]) <= 1e-6)  # best first
    flat = build_index(vectors[:20], ids[:20], loaded.path.parent.parent / "small", kind="flat")
    _, few = LoadedIndex.open(flat.path).search(queries[:2], 50)
    assert few.shape == (2, 20)
    with pytest.raises(ValueError, match="queries must have shape"):
        loaded.search(np.ones(D + 1, np.float32), 5)


def test_allowed_ids_restrict_results_small_set_exact(flat_index, data):
    vectors, ids, queries = data
    _, loaded = flat_index
    allowed = ids[::37]  # 82 artworks, a "sub-collection"
    scores, found = loaded.search(queries, 10, allowed_ids=np.append(allowed, [-5, 10**9]))
    assert found.shape == (50, 10)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    rows = np.arange(0, 3000, 37)
    exact_scores, exact_ids = exact_search(vectors[rows], ids[rows], queries, 10)
    np.testing.assert_array_equal(found, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    # Fewer allowed than k: all of them; none allowed: an empty result.
    _, three = loaded.search(queries[:1], 10, allowed_ids=allowed[:3])
    assert sorted(three[0].tolist()) == sorted(allowed[:3].tolist())
    s, none = loaded.search(queries[:2], 10, allowed_ids=np.array([], dtype=np.int64))
    assert s.shape == none.shape == (2, 0)


@pytest.mark.parametrize("kind", ["flat", "slots", "compressed"])
@pytest.mark.parametrize("path", ["exact", "index"])
def test_allowed_ids_return_exactly_k_from_the_allowed_set(tmp_path, kind, path):
    rows, parts = _fused_catalog(3000, 8, seed=6)
    ids = np.arange(3000, dtype=np.int64) * 7 + 100
    queries = _slot_queries(parts, seed=7)
    info = build_index(rows, ids, tmp_path, kind=kind, blocks=4)
    loaded = LoadedIndex.open(info.path)
    if path == "index":  # slot indexes: the slot search with the filter, not a scan
        loaded.exact_allowed_max = 0
        loaded.exact_allowed_fraction = 0.0
    for allowed in (ids[:2000], ids[::300]):  # a wide and a very selective filter
        scores, found = loaded.search(queries, 10, allowed_ids=allowed)
        assert found.shape == (len(queries), 10)
        assert set(found.ravel().tolist()) <= set(allowed.tolist())
        mask = np.isin(ids, allowed)
        exact_scores, _truth = exact_search(rows[mask], ids[mask], queries, 10)
        np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_dense_and_sparse_ids_map_to_the_same_rows(data, tmp_path):
    vectors, _, queries = data
    rng = np.random.default_rng(5)
    dense = rng.permutation(1000).astype(np.int64) + 1  # 1..1000 shuffled: direct table
    sparse = dense * 1_000_003  # far apart: sorted lookup
    found_rows = {}
    for name, ids in (("dense", dense), ("sparse", sparse)):
        loaded = LoadedIndex.open(build_index(vectors[:1000], ids, tmp_path / name).path)
        np.testing.assert_array_equal(loaded.vector_of(int(ids[17])), vectors[17])
        assert loaded.vector_of(int(ids.max()) + 1) is None and loaded.vector_of(-3) is None
        np.testing.assert_array_equal(loaded.rows_of(ids[[5, 3, 5]]), [3, 5])
        _, found = loaded.search(queries, 5, allowed_ids=ids[:100])
        row_of_id = {int(i): r for r, i in enumerate(ids)}
        found_rows[name] = np.vectorize(row_of_id.__getitem__)(found)
        assert found_rows[name].max() < 100
        if name == "dense":  # the lookup is built lazily, on first use
            assert loaded._id_to_row is not None
        else:
            assert loaded._id_to_row is None and loaded._sorted_ids is not None
    np.testing.assert_array_equal(found_rows["dense"], found_rows["sparse"])


def test_concurrent_searches_during_rebuilds(data, tmp_path):
    import threading

    vectors, ids, queries = data
    build_index(vectors[:500], ids[:500], tmp_path)
    store = IndexStore(tmp_path, check_interval=0.0)
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                loaded = store.current()
                _, found = loaded.search(queries[:4], 5, allowed_ids=ids[:200])
                assert found.shape == (4, 5)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for size in (600, 700, 800):
        build_index(vectors[:size], ids[:size], tmp_path)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert store.current().n == 800


def test_vector_of_and_vectors_of(flat_index, data):
    vectors, ids, _ = data
    _, loaded = flat_index
    np.testing.assert_array_equal(loaded.vector_of(int(ids[123])), vectors[123])
    assert loaded.vector_of(-1) is None
    picked = [int(ids[5]), int(ids[2999]), int(ids[0])]
    np.testing.assert_array_equal(loaded.vectors_of(picked), vectors[[5, 2999, 0]])
    with pytest.raises(KeyError):
        loaded.vectors_of([int(ids[1]), -1])


def test_build_rejects_bad_input(tmp_path):
    vectors = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="unique"):
        build_index(vectors, np.array([1, 1, 2]), tmp_path)
    with pytest.raises(ValueError, match="ids must be 1-d"):
        build_index(vectors, np.array([1, 2]), tmp_path)
    with pytest.raises(ValueError, match="kind"):
        build_index(vectors, np.array([1, 2, 3]), tmp_path, kind="pq")
    with pytest.raises(ValueError, match="use_gpu"):
        build_index(vectors, np.array([1, 2, 3]), tmp_path, use_gpu="maybe")
    assert read_current(tmp_path) is None


def test_store_swaps_atomically_and_survives_failed_builds(data, tmp_path, monkeypatch, caplog):
    vectors, ids, queries = data
    store = IndexStore(tmp_path, check_interval=0.0)
    assert store.current() is None  # nothing built yet
    first = build_index(vectors[:300], ids[:300], tmp_path)
    served = store.current()
    assert served.version == first.version and served.n == 300

    # A build that fails while writing its files leaves CURRENT and the store untouched.
    real_save = np.save

    def failing_save(path, array, *args, **kwargs):
        if str(path).endswith("vectors.npy"):
            raise OSError("disk full (simulated)")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        build_index(vectors[:400], ids[:400], tmp_path)
    monkeypatch.undo()
    assert read_current(tmp_path) == first.version
    assert list_versions(tmp_path) == [first.version]
    assert not list(tmp_path.glob(".tmp-*"))  # no half-written folder left behind
    assert store.current() is served

    # A failure at the very switch (after the version folder is in place) changes nothing.
    def failing_replace(src, dst):
        raise OSError("replace failed (simulated)")

    monkeypatch.setattr(versions_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="replace failed"):
        build_index(vectors[:400], ids[:400], tmp_path)
    monkeypatch.undo()
    assert read_current(tmp_path) == first.version
    assert list_versions(tmp_path) == [first.version]

    # CURRENT naming a broken version: the old one keeps serving, with a warning.
    broken = tmp_path / "versions" / "29991231T000000000000Z-broken00"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    versions_module.switch_current(tmp_path, broken.name)
    with caplog.at_level(logging.WARNING, logger="retrieval.ml.index"):
        assert store.current() is served
    assert "still serving " + first.version in caplog.text
    assert store.last_error and broken.name in store.last_error
    import shutil

    shutil.rmtree(broken)

    # A successful build is picked up at the next check.
    second = build_index(vectors[:400], ids[:400], tmp_path)
    now = store.current()
    assert now.version == second.version and now.n == 400
    _, found = now.search(queries[:3], 5)
    assert found.shape == (3, 5)
    # The old LoadedIndex object still answers (requests in flight finish on it).
    assert served.search(queries[:1], 5)[1].shape == (1, 5)


def test_store_checks_current_at_most_every_interval(data, tmp_path):
    vectors, ids, _ = data
    first = build_index(vectors[:100], ids[:100], tmp_path)
    store = IndexStore(tmp_path, check_interval=3600)
    assert store.current().version == first.version
    second = build_index(vectors[:120], ids[:120], tmp_path)
    assert store.current().version == first.version  # not re-checked yet
    assert store.reload().version == second.version


def test_old_versions_are_pruned_but_never_the_current(data, tmp_path):
    vectors, ids, _ = data
    built = [build_index(vectors[: 50 + i], ids[: 50 + i], tmp_path).version for i in range(5)]
    assert list_versions(tmp_path) == built[-3:]
    assert read_current(tmp_path) == built[-1]
    # Even if CURRENT points at an old version (a manual rollback), pruning keeps it.
    versions_module.switch_current(tmp_path, built[2])
    versions_module.prune_versions(tmp_path, keep=1)
    assert set(list_versions(tmp_path)) == {built[2], built[4]}


def test_gpu_flat_search_matches_cpu(data, tmp_path):
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or gpu_module.gpu_count() == 0:
        pytest.skip("needs faiss-gpu and a CUDA device (this FAISS build has no GPU support)")
    vectors, ids, queries = data
    info = build_index(vectors, ids, tmp_path, kind="flat", use_gpu="auto")
    gpu = LoadedIndex.open(info.path)
    assert gpu.device == "cuda:0" and gpu.meta["gpu"]["search_device"] == "cuda:0"
    cpu = LoadedIndex.open(info.path, use_gpu="never")
    assert cpu.device == "cpu"
    gpu_scores, gpu_ids = gpu.search(queries, 10)
    cpu_scores, cpu_ids = cpu.search(queries, 10)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-4)
    assert _recall(gpu_ids, cpu_ids) >= 0.99


def _fused_catalog(n: int, d4: int, seed: int):
    """Rows shaped like MythraGen's fused vectors: [content, genre, artist, style] blocks,
    each unit-length, scaled by 1/2; labels repeat (few values), and a quarter of the rows
    share their content with another row (works titled alike)."""
    rng = np.random.default_rng(seed)

    def unit(m):
        v = rng.normal(size=(m, d4)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    genres, artists, styles = unit(6), unit(60), unit(8)
    artist_of = rng.integers(0, 60, n)
    style_of = (artist_of % 8 + rng.integers(0, 2, n)) % 8  # artists keep to few styles
    genre_of = rng.integers(0, 6, n)
    content = unit(n)
    dup = rng.choice(n, n // 4, replace=False)
    content[dup] = content[rng.integers(0, n, n // 4)]
    rows = np.hstack([content, genres[genre_of], artists[artist_of], styles[style_of]]) / 2
    return rows.astype(np.float32), (content, genres, artists, styles)


def _slot_queries(parts, seed: int):
    from retrieval.ml.fusion import query_vector

    content, genres, artists, styles = parts
    rng = np.random.default_rng(seed)
    d4 = content.shape[1]
    out = []
    for i in range(60):
        near = content[rng.integers(0, len(content))] + 0.4 * rng.normal(size=d4)
        form = i % 6
        slots = {
            0: {},
            1: {"artist": artists[rng.integers(0, 60)]},
            2: {"style": styles[rng.integers(0, 8)]},
            3: {"genre": genres[rng.integers(0, 6)], "style": styles[rng.integers(0, 8)]},
            4: {"artist": artists[rng.integers(0, 60)], "style": styles[rng.integers(0, 8)]},
            5: {"artist": artists[rng.integers(0, 60)]},  # label only
        }[form]
        out.append(query_vector(None if form == 5 else near, dim=d4, **slots))
    return np.stack(out)


@pytest.mark.parametrize(
    ("content_index", "candidates", "refine"),
    [("flat", 10, 10), ("pq6x4fs", 10, 1500), ("pq6x4fs", 200, 1500)],
)
def test_slot_index_matches_exact_scores_for_every_prompt_form(
    tmp_path, monkeypatch, content_index, candidates, refine
):
    """Few content candidates force the threshold step to find the rest; scores must equal
    brute force's for each query form (ties may pick different rows of equal score)."""
    if content_index != "flat":
        monkeypatch.setattr(slots_module, "SLOT_PQ_MIN", 100)
    rows, parts = _fused_catalog(4000, 24, seed=3)
    ids = np.arange(len(rows), dtype=np.int64) + 10
    info = build_index(rows, ids, tmp_path, kind="slots", blocks=4)
    loaded = LoadedIndex.open(info.path)
    assert loaded.kind == "slots"
    params = loaded.meta["params"]
    assert params["content_index"] == content_index
    assert params["distinct_content"] < len(rows)  # duplicates are stored once
    assert params["label_combinations"] < len(rows)
    loaded.slots.content_candidates, loaded.slots.refine = candidates, refine
    queries = _slot_queries(parts, seed=4)
    k = 20
    exact, _ = exact_search(rows, ids, queries, k)
    scores, found = loaded.search(queries, k)
    assert (found >= 0).all()
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    # The returned scores are the rows' true scores.
    true = np.einsum("qkd,qd->qk", rows[found - 10], queries)
    np.testing.assert_allclose(scores, true, atol=1e-5)

    # A sub-collection large enough to take the slot path (> exact_allowed thresholds).
    loaded.exact_allowed_max, loaded.exact_allowed_fraction = 0, 0.0
    allowed = ids[ids % 3 != 0]
    sub = rows[ids % 3 != 0]
    exact_sub, _ = exact_search(sub, allowed, queries, k)
    scores_sub, found_sub = loaded.search(queries, k, allowed_ids=allowed)
    assert np.isin(found_sub, allowed).all()
    np.testing.assert_allclose(scores_sub, exact_sub, atol=1e-5)


def test_old_slot_layout_asks_for_a_rebuild(tmp_path):
    rows, _parts = _fused_catalog(500, 8, seed=5)
    info = build_index(rows, np.arange(500), tmp_path, kind="slots", blocks=4)
    meta_path = info.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["params"].pop("slot_layout")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="rebuild"):
        LoadedIndex.open(info.path)


def test_faiss_row_kernels_match_numpy_and_refuse_strided_input():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((500, 48)).astype(np.float32)
    q = rng.standard_normal(48).astype(np.float32)
    rows = rng.choice(500, 120, replace=True)
    np.testing.assert_allclose(
        kernels.dot_rows(matrix, q, rows), matrix[rows] @ q, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(kernels.dot_all(matrix, q), matrix @ q, rtol=1e-5, atol=1e-5)
    assert kernels.dot_rows(matrix, q, np.zeros(0, np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        kernels.dot_all(matrix[:, ::2], q[::2])  # strided: raw memory would be wrong
    with pytest.raises(ValueError, match="C-contiguous float32"):
        kernels.dot_rows(matrix.astype(np.float64), q, rows)
