"""Fused artwork vectors: four slots (content, genre, artist, style) in one row (numpy only).

An artwork row is the concatenation of four blocks of size d (the embedder's dimension):

* content: V = w_image * image + w_caption * caption + w_genre * genre (the image term is
  left out when there is no image vector), as in the MythraGen paper;
* genre, artist, style: the text vectors of those labels.

Why this shape. Each block is L2-normalised on its own and the concatenation is scaled by
1/2 (= 1/sqrt(4)), so a row with all four slots has unit norm. A query is built the same
way from the slots the user asked for (missing slots are zero). The inner product of a
query with a row is then

    score = 1/4 * sum over the query's slots of cos(query slot, row slot)

so every slot counts equally (one slot cannot dominate because its raw vectors are longer),
each slot's contribution can be shown to the user (`slot_scores`), and the score is an
ordinary inner product that FAISS (`IndexFlatIP`, the slot index of `index/slots.py`)
and pgvector's inner-product operator can search. A missing label (an artwork with no
genre) leaves a zero block, which contributes 0 to every query rather than a misleading
similarity. Scores of different queries stay on one scale: a query asking for k slots
scores at most k/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLOTS = ("content", "genre", "artist", "style")
_SCALE = np.float32(1.0 / np.sqrt(len(SLOTS)))  # 1/2: a full row has unit norm


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the image, caption and genre vectors inside the content slot."""

    image: float = 1.0
    caption: float = 0.9
    genre: float = 0.75


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-12)


def _as_matrix(name: str, x: np.ndarray, n: int | None, d: int | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, d), got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} has dimension {x.shape[1]}, expected {d}")
    return x


def fuse(
    caption: np.ndarray,
    genre: np.ndarray,
    artist: np.ndarray,
    style: np.ndarray,
    image: np.ndarray | None = None,
    weights: FusionWeights = FusionWeights(),  # noqa: B008 (frozen, immutable default)
) -> np.ndarray:
    """Fused rows (n, 4d) float32 from per-artwork slot vectors, each (n, d).

    Zero rows mean "missing" (e.g. no genre label): they stay zero blocks. A row whose four
    blocks are all present has unit norm; see the module docstring for why.
    """
    caption = _as_matrix("caption", caption, None, None)
    n, d = caption.shape
    genre = _as_matrix("genre", genre, n, d)
    artist = _as_matrix("artist", artist, n, d)
    style = _as_matrix("style", style, n, d)
    content = weights.caption * caption + weights.genre * genre
    if image is not None:
        content = content + weights.image * _as_matrix("image", image, n, d)
    blocks = [content, genre, artist, style]
    out = np.concatenate([_normalise_rows(b.astype(np.float32)) for b in blocks], axis=1)
    out *= _SCALE
    return out.astype(np.float32, copy=False)


def query_vector(
    content: np.ndarray | None = None,
    genre: np.ndarray | None = None,
    artist: np.ndarray | None = None,
    style: np.ndarray | None = None,
    *,
    dim: int,
) -> np.ndarray:
    """A (4*dim,) float32 query: each given slot L2-normalised into its block, others zero.

    Scaled like `fuse` (1/2), so `query @ row` = 1/4 * sum of the slot cosines.
    """
    out = np.zeros(len(SLOTS) * dim, dtype=np.float32)
    for i, (name, vector) in enumerate(zip(SLOTS, (content, genre, artist, style), strict=True)):
        if vector is None:
            continue
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != dim:
            raise ValueError(f"{name} query vector has dimension {v.shape[0]}, expected {dim}")
        norm = float(np.linalg.norm(v))
        if norm > 1e-12:
            out[i * dim : (i + 1) * dim] = v / norm
    out *= _SCALE
    return out


def slot_scores(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per-slot parts of each row's score: (n, 4); each row sums to `vectors @ query`."""
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if query.shape[0] % len(SLOTS) or vectors.shape[1] != query.shape[0]:
        raise ValueError(
            f"query of size {query.shape[0]} and rows of size {vectors.shape[1]} must match "
            f"and split into {len(SLOTS)} slots"
        )
    d = query.shape[0] // len(SLOTS)
    n = vectors.shape[0]
    return np.einsum("nsd,sd->ns", vectors.reshape(n, len(SLOTS), d), query.reshape(len(SLOTS), d))
