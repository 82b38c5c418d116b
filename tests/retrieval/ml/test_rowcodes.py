"""Row codes (`rowcodes.py`): the compressed kind's ranking of rows its threshold step cannot
score exactly."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml.index import LoadedIndex, SlotParts, build_index, exact_search
from retrieval.ml.index.rowcodes import ROW_CODES_MIN, RowCodes, row_codes_write

W = 16


def _unit(rng, m, w=W):
    v = rng.normal(size=(m, w)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_best_ranks_by_code_plus_label_within_and_across_label_runs(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "content.npy", _unit(rng, 12_000))
    row_codes_write(tmp_path)
    codes = RowCodes.open(tmp_path, 12_000)
    q = _unit(rng, 1)[0]
    positions = rng.choice(12_000, 3000, replace=False)
    # Three runs of equal labels, best first, as the threshold step passes them.
    label = np.repeat(np.array([0.5, 0.2, -0.1], np.float32), 1000)
    approx = codes.pq.decode(np.ascontiguousarray(codes.codes[positions])) @ q + label
    for count in (1, 40, 700):
        got = codes.best(q, positions, label, count)
        assert len(got) == count == len(set(got.tolist()))
        kth = np.sort(approx)[-count]
        assert (approx[got] >= kth - 1e-5).all()
    np.testing.assert_array_equal(codes.best(q, positions[:30], label[:30], 40), np.arange(30))


def test_codes_disagreeing_with_the_version_are_refused(tmp_path):
    np.save(tmp_path / "content.npy", _unit(np.random.default_rng(1), ROW_CODES_MIN))
    row_codes_write(tmp_path)
    with pytest.raises(ValueError, match="codes.npy disagrees"):
        RowCodes.open(tmp_path, ROW_CODES_MIN + 1)


@pytest.fixture(scope="module")
def styled(tmp_path_factory):
    """A compressed index of 12,000 rows whose 40 styles hold ~300 rows each."""
    rng = np.random.default_rng(2)
    n = 12_000
    genres, artists, styles = _unit(rng, 4), _unit(rng, 300), _unit(rng, 40)
    g, a, s = rng.integers(0, 4, n), rng.integers(0, 300, n), rng.integers(0, 40, n)
    content = _unit(rng, n)
    rows = np.hstack([content, genres[g], artists[a], styles[s]]) / 2
    ids = np.arange(n, dtype=np.int64) + 5
    parts = SlotParts.from_fused(rows)
    info = build_index(parts, ids, tmp_path_factory.mktemp("styled"), kind="compressed")
    # Content + style prompts whose style term outweighs content: the top 20 is the 20 best
    # of one style by content, far down the content ranking.
    near = content[rng.integers(0, n, 24)] + 0.3 * _unit(rng, 24)
    queries = np.hstack([near, np.zeros((24, 2 * W)), 4 * styles[rng.integers(0, 40, 24)]])
    return rows, ids, queries.astype(np.float32), info


def _exact_content_step(loaded):
    """Step 1 of the slot search on an exact flat index (as on a GPU host), so that only
    the threshold step can lose rows (16-d random content defeats 4-bit codes)."""
    import faiss

    flat = faiss.IndexFlatIP(W)
    for chunk in loaded.slots.distinct_content():
        flat.add(chunk)
    loaded.slots.gpu_index = flat


def test_compressed_build_writes_row_codes_and_the_threshold_step_ranks_by_them(styled):
    """A content + style prompt lifts one style's ~300 rows, more than an `expand_max` of
    100: ranked by their codes (the best 100 re-scored), the results keep their exact
    scores and almost all of the exact top 20; without codes the step stops after 100 rows
    and loses many."""
    rows, ids, queries, info = styled
    assert info.kind == "compressed"
    loaded = LoadedIndex.open(info.path)
    assert loaded.meta["params"]["row_codes"] == "pq2x8"
    assert loaded.slots.row_codes is not None
    _exact_content_step(loaded)
    loaded.slots.content_candidates = 20  # step 1 holds few of the style's rows
    loaded.slots.expand_max, loaded.slots.overflow_refine = 100, 100
    want, _ = exact_search(rows, ids, queries, 20)

    def recall():
        scores, found = loaded.search(queries, 20)
        true = np.stack([rows[found[i] - 5] @ queries[i] for i in range(len(queries))])
        np.testing.assert_allclose(scores, true, atol=1e-5)  # every score is exact
        return float((scores >= want[:, -1:] - 1e-5).mean())

    with_codes = recall()
    loaded.slots.row_codes = None
    without = recall()
    assert with_codes >= 0.95 and without < 0.6, (with_codes, without)


def test_small_or_odd_width_compressed_indexes_have_no_row_codes(tmp_path):
    rng = np.random.default_rng(3)
    rows = _unit(rng, 2000, 4 * W)
    info = build_index(rows, np.arange(2000), tmp_path, kind="compressed", blocks=4)
    assert "row_codes" not in LoadedIndex.open(info.path).meta["params"]
    assert not (info.path / "codes.npy").exists()
