"""Fused vectors: assembled from stored caption/image vectors and the *current* labels.

`ArtworkEmbedding` keeps each artwork's caption (and image) vectors and `LabelEmbedding`
each label's; a fused row is assembled from them whenever it is needed (an index build,
a label change), so a genre correction needs no model. Reads and pure assembly only: the
writes that store vectors are in `retrieval.services`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from retrieval.models import ArtworkEmbedding, EmbeddingSpace, LabelEmbedding, LabelKind


def label_text(kind: str, name: str) -> str:
    """The text embedded for a label; queries use the same text, so a named slot matches."""
    return name.replace("_", " ")


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(data, dim: int) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.float32, count=dim)


def label_vectors(space: EmbeddingSpace) -> dict[str, dict[int, np.ndarray]]:
    """The space's label vectors: {"genre"|"artist"|"style": {label id: vector}}."""
    out: dict[str, dict[int, np.ndarray]] = {k: {} for k in LabelKind.values}
    for kind, label_id, vector in LabelEmbedding.objects.filter(space=space).values_list(
        "kind", "label_id", "vector"
    ):
        out[kind][label_id] = from_bytes(vector, space.dim)
    return out


def fused_hash(space_key: str, caption: str, image_name: str, genre_id, artist_id, style_id) -> str:
    """What a fused row was assembled from; an empty hash marks the row for re-assembly."""
    raw = f"{space_key}|{caption}|{image_name}|{genre_id}|{artist_id}|{style_id}"
    return hashlib.sha1(raw.encode()).hexdigest()


def assemble(space, labels, rows) -> np.ndarray:
    """Fused vectors for rows of (caption_vec, image_vec|None, genre_id, artist_id, style_id)."""
    from retrieval.ml.fusion import FusionWeights, fuse

    dim = space.dim
    zero = np.zeros(dim, dtype=np.float32)
    caption = np.stack([r[0] for r in rows])
    genre = np.stack([labels["genre"].get(r[2], zero) if r[2] else zero for r in rows])
    artist = np.stack([labels["artist"].get(r[3], zero) for r in rows])
    style = np.stack([labels["style"].get(r[4], zero) for r in rows])
    image = None
    if space.has_image:
        # Artworks without an image contribute a zero image term.
        image = np.stack([r[1] if r[1] is not None else zero for r in rows])
    return fuse(caption, genre, artist, style, image=image, weights=FusionWeights(**space.weights))


def fused_matrix(space: EmbeddingSpace, *, batch: int = 5000) -> tuple[np.ndarray, np.ndarray, str]:
    """All fused vectors of a space: (artwork ids, matrix, catalog hash).

    Reassembled from stored caption/image vectors and the *current* labels, so the index
    always reflects the latest genre of every artwork.
    """
    labels = label_vectors(space)
    rows = (
        ArtworkEmbedding.objects.filter(space=space)
        .order_by("artwork_id")
        .values_list(
            "artwork_id",
            "caption_vector",
            "image_vector",
            "artwork__genre_id",
            "artwork__artist_id",
            "artwork__style_id",
            "fused_hash",
        )
    )
    ids, parts, digest = [], [], hashlib.sha1(space.key.encode())
    buffer = []
    for art_id, cap, img, genre_id, artist_id, style_id, fhash in rows.iterator(chunk_size=batch):
        ids.append(art_id)
        digest.update(f"{art_id}:{fhash};".encode())
        buffer.append(
            (
                from_bytes(cap, space.dim),
                from_bytes(img, space.dim) if img else None,
                genre_id,
                artist_id,
                style_id,
            )
        )
        if len(buffer) >= batch:
            parts.append(assemble(space, labels, buffer))
            buffer = []
    if buffer:
        parts.append(assemble(space, labels, buffer))
    matrix = np.concatenate(parts) if parts else np.zeros((0, space.fused_dim), np.float32)
    return np.asarray(ids, dtype=np.int64), matrix.astype(np.float32), digest.hexdigest()[:16]
