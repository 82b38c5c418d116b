"""Fused four-slot vectors, slot queries and per-slot score breakdowns."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml.fusion import SLOTS, FusionWeights, fuse, query_vector, slot_scores


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fuse_shape_norm_and_blocks():
    rng = np.random.default_rng(0)
    n, d = 6, 8
    caption, genre, artist, style, image = (_unit(rng, n, d) for _ in range(5))
    fused = fuse(caption, genre, artist, style, image=image)
    assert fused.shape == (n, 4 * d) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    blocks = fused.reshape(n, 4, d)
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=2), 0.5, atol=1e-5)
    w = FusionWeights()
    content = w.image * image + w.caption * caption + w.genre * genre
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    np.testing.assert_allclose(blocks[:, 0], 0.5 * content, atol=1e-5)
    np.testing.assert_allclose(blocks[:, 2], 0.5 * artist, atol=1e-5)


def test_fuse_without_image_and_with_custom_weights():
    rng = np.random.default_rng(1)
    caption, genre, artist, style = (_unit(rng, 3, 4) for _ in range(4))
    no_image = fuse(caption, genre, artist, style)
    only_caption = fuse(caption, genre, artist, style, weights=FusionWeights(genre=0.0))
    np.testing.assert_allclose(only_caption[:, :4], 0.5 * caption, atol=1e-5)
    assert not np.allclose(no_image[:, :4], only_caption[:, :4])


def test_missing_genre_leaves_a_zero_block():
    rng = np.random.default_rng(2)
    caption, genre, artist, style = (_unit(rng, 3, 4) for _ in range(4))
    genre[1] = 0.0
    fused = fuse(caption, genre, artist, style)
    assert np.all(fused[1, 4:8] == 0.0)
    assert np.all(np.isfinite(fused))
    np.testing.assert_allclose(np.linalg.norm(fused[1]), np.sqrt(3) / 2, atol=1e-5)
    # Its content block still comes from the caption alone.
    np.testing.assert_allclose(fused[1, :4], 0.5 * caption[1], atol=1e-5)


def test_fuse_rejects_mismatched_shapes():
    rng = np.random.default_rng(3)
    a = _unit(rng, 3, 4)
    with pytest.raises(ValueError, match="rows"):
        fuse(a, a[:2], a, a)
    with pytest.raises(ValueError, match="dimension"):
        fuse(a, a, a, _unit(rng, 3, 5))


def test_query_vector_and_slot_scores():
    rng = np.random.default_rng(4)
    n, d = 5, 8
    rows = fuse(*(_unit(rng, n, d) for _ in range(4)), image=_unit(rng, n, d))
    content = rng.normal(size=d).astype(np.float32) * 7.0  # any length: normalised inside
    style = rng.normal(size=d).astype(np.float32)
    q = query_vector(content, style=style, dim=d)
    assert q.shape == (4 * d,) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q), np.sqrt(2) / 2, atol=1e-5)
    assert np.all(q[d : 3 * d] == 0.0)  # genre and artist not asked for
    parts = slot_scores(q, rows)
    assert parts.shape == (n, len(SLOTS))
    np.testing.assert_allclose(parts.sum(axis=1), rows @ q, atol=1e-5)
    assert np.all(parts[:, 1:3] == 0.0)
    # Each part is a quarter of a cosine between the query slot and the row slot.
    expected_content = (content / np.linalg.norm(content)) @ (2 * rows[:, :d]).T / 4
    np.testing.assert_allclose(parts[:, 0], expected_content, atol=1e-5)
    # A row identical to a full query scores 1 (scores share one scale).
    full = query_vector(*(2 * rows[0].reshape(4, d)), dim=d)
    np.testing.assert_allclose(full @ rows[0], 1.0, atol=1e-5)


def test_query_vector_validates_dimension():
    with pytest.raises(ValueError, match="dimension"):
        query_vector(np.ones(3), dim=4)
    assert np.all(query_vector(None, dim=4) == 0.0)
