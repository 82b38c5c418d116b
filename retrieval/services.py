"""Writes for retrieval: embedding the catalog, assembling fused vectors, building indexes.

The only layer that translates between the ORM and `retrieval.ml` (which never sees
Django): it reads artworks and labels, hands texts/images/arrays to the embedder, fusion
and index code, and stores what comes back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q

from catalog.models import Artist, Artwork, Genre, Style
from catalog.selectors import artwork_image_load
from jobs.services import job_current, job_heartbeat
from retrieval.models import (
    ArtworkEmbedding,
    ArtworkVectorMirror,
    EmbeddingSpace,
    LabelEmbedding,
    LabelKind,
)

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]

SETTING_FOR = {"minilm": "MYTHRAGEN_MINILM_MODEL", "blip2": "MYTHRAGEN_BLIP2_RETRIEVAL_MODEL"}


class RetrievalUnavailable(RuntimeError):
    """The retrieval model cannot be loaded or no index is built yet (message says how)."""


def ml_device() -> str:
    """MYTHRAGEN_DEVICE, with "auto" meaning CUDA when torch sees a GPU."""
    device = settings.ML_DEVICE
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_id_for(kind: str) -> str:
    if kind == "minilm":
        return settings.RETRIEVAL_MINILM_MODEL
    if kind == "blip2":
        return settings.RETRIEVAL_BLIP2_MODEL
    raise RetrievalUnavailable(f"MYTHRAGEN_EMBEDDER must be 'minilm' or 'blip2', not {kind!r}")


def embedder_get():
    """The configured embedder, loaded once per process."""
    from retrieval.ml.embedders import get_embedder
    from retrieval.ml.errors import EmbedderError, ModelUnavailable

    kind = settings.RETRIEVAL_EMBEDDER
    model_id = model_id_for(kind)
    try:
        options = {}
        if kind == "minilm":
            options = {
                "prompt_runtime": settings.RETRIEVAL_PROMPT_RUNTIME,
                "onnx_dir": settings.RETRIEVAL_ONNX_DIR,
                "prompt_threads": settings.RETRIEVAL_QUERY_THREADS,
            }
        embedder = get_embedder(
            kind,
            model_id,
            device=ml_device(),
            setting=SETTING_FOR[kind],
            precision=settings.EMBEDDER_PRECISION,
            **options,
        )
        with job_heartbeat(job_current(), f"loading model {model_id}"):  # no-op outside a job
            embedder.load()  # BLIP-2: the text half only; images load the vision half on use
    except (ModelUnavailable, EmbedderError) as exc:  # a missing model; a bad prompt runtime
        raise RetrievalUnavailable(str(exc)) from exc
    return embedder


SPACE_CACHE_SECONDS = 300


def space_current(embedder=None) -> EmbeddingSpace:
    """The embedding space of the configured embedder and fusion weights."""
    embedder = embedder or embedder_get()
    weights = settings.RETRIEVAL_FUSION_WEIGHTS
    raw = "|".join(
        map(
            str,
            (settings.RETRIEVAL_EMBEDDER, embedder.model_id, embedder.dim, sorted(weights.items())),
        )
    )
    key = hashlib.sha1(raw.encode()).hexdigest()[:16]

    def get_or_create() -> EmbeddingSpace:
        space, _ = EmbeddingSpace.objects.get_or_create(
            key=key,
            defaults={
                "embedder": settings.RETRIEVAL_EMBEDDER,
                "model_id": embedder.model_id,
                "dim": embedder.dim,
                "has_image": embedder.has_image,
                "is_tiny": embedder.is_stand_in,  # any random-weight stand-in
                "weights": weights,
            },
        )
        return space

    # A space never changes once created (its key hashes what it is), so every search
    # need not ask the database for it (~0.5 ms a request).
    return cache.get_or_set(f"retrieval:space:{key}", get_or_create, SPACE_CACHE_SECONDS)


def label_text(kind: str, name: str) -> str:
    """The text embedded for a label; queries use the same text, so a named slot matches."""
    return name.replace("_", " ")


def _to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _from_bytes(data, dim: int) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.float32, count=dim)


_LABEL_MODELS = (
    (LabelKind.GENRE, Genre, "genre_id"),
    (LabelKind.ARTIST, Artist, "artist_id"),
    (LabelKind.STYLE, Style, "style_id"),
)


def labels_embed(space: EmbeddingSpace, embedder) -> int:
    """Embed every genre, artist and style name of the catalog that this space has not
    embedded under its current name: new labels, and renamed ones (an admin's correction,
    an import that repaired a name). The artworks carrying a renamed label are marked for
    re-assembly, so their fused vectors and pgvector mirror rows follow the new vector."""
    have = {
        (kind, label_id): text
        for kind, label_id, text in LabelEmbedding.objects.filter(space=space).values_list(
            "kind", "label_id", "text"
        )
    }
    todo: list[tuple[str, int, str]] = []
    for kind, model, _field in _LABEL_MODELS:
        for label_id, name in model.objects.values_list("id", "name"):
            text = label_text(kind, name)
            if have.get((kind, label_id)) != text:
                todo.append((kind, label_id, text))
    if not todo:
        return 0
    vectors = embedder.embed_texts([t for _k, _i, t in todo])
    renamed = [(k, i) for k, i, _t in todo if (k, i) in have]
    with transaction.atomic():
        if renamed:
            field_of = {kind: field for kind, _model, field in _LABEL_MODELS}
            labels, carriers = Q(), Q()
            for kind, label_id in renamed:
                labels |= Q(kind=kind, label_id=label_id)
                carriers |= Q(**{field_of[kind]: label_id})
            LabelEmbedding.objects.filter(space=space).filter(labels).delete()
            artwork_vectors_mark_stale(
                Artwork.objects.filter(carriers).values_list("id", flat=True)
            )
        LabelEmbedding.objects.bulk_create(
            [
                LabelEmbedding(space=space, kind=k, label_id=i, text=t, vector=_to_bytes(v))
                for (k, i, t), v in zip(todo, vectors, strict=True)
            ],
            batch_size=1000,
        )
    return len(todo)


def label_vectors(space: EmbeddingSpace) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {k: {} for k in LabelKind.values}
    for kind, label_id, vector in LabelEmbedding.objects.filter(space=space).values_list(
        "kind", "label_id", "vector"
    ):
        out[kind][label_id] = _from_bytes(vector, space.dim)
    return out


def _fused_hash(
    space_key: str, caption: str, image_name: str, genre_id, artist_id, style_id
) -> str:
    raw = f"{space_key}|{caption}|{image_name}|{genre_id}|{artist_id}|{style_id}"
    return hashlib.sha1(raw.encode()).hexdigest()


def _assemble(space, labels, rows) -> np.ndarray:
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


@dataclass
class EmbedReport:
    space: str
    artworks: int = 0
    labels_embedded: int = 0
    captions_embedded: int = 0
    images_embedded: int = 0
    reassembled: int = 0
    up_to_date: int = 0
    seconds: float = 0.0
    is_tiny: bool = False


def embed_catalog(
    *, batch_size: int | None = None, progress: Progress | None = None, limit: int | None = None
) -> EmbedReport:
    """Embed what is missing or stale, in batches; each batch commits (so it resumes)."""
    started = time.monotonic()
    embedder = embedder_get()
    space = space_current(embedder)
    batch_size = batch_size or settings.RETRIEVAL_EMBED_BATCH
    report = EmbedReport(space=str(space), is_tiny=space.is_tiny)
    report.labels_embedded = labels_embed(space, embedder)
    labels = label_vectors(space)
    existing = {
        row[0]: row[1:]
        for row in ArtworkEmbedding.objects.filter(space=space).values_list(
            "artwork_id", "id", "caption_text", "image_name", "fused_hash"
        )
    }
    artworks = Artwork.objects.order_by("id").values_list(
        "id", "caption", "title", "image", "genre_id", "artist_id", "style_id"
    )
    if limit:
        artworks = artworks[:limit]
    todo = []
    for art_id, caption, title, image, genre_id, artist_id, style_id in artworks:
        text = caption or title
        image_name = image if space.has_image else ""
        want = _fused_hash(space.key, text, image_name, genre_id, artist_id, style_id)
        old = existing.get(art_id)
        if old and old[3] == want:
            report.up_to_date += 1
            continue
        todo.append((art_id, text, image_name, genre_id, artist_id, style_id, want, old))
    report.artworks = len(todo) + report.up_to_date
    total = len(todo)
    load_images = getattr(embedder, "load_images", None)
    if load_images is not None and any(t[2] for t in todo):  # BLIP-2's vision half, once
        with job_heartbeat(job_current(), f"loading model {space.model_id} (image side)"):
            load_images()
    if progress:
        progress(0, total, "embedding artworks")
    for start in range(0, total, batch_size):
        chunk = todo[start : start + batch_size]
        _embed_chunk(space, embedder, labels, chunk, report)
        if progress:
            progress(min(start + batch_size, total), total, "embedding artworks")
    report.seconds = time.monotonic() - started
    return report


def _embed_chunk(space, embedder, labels, chunk, report: EmbedReport) -> None:
    ids = [c[0] for c in chunk]
    rows = {
        e.artwork_id: e for e in ArtworkEmbedding.objects.filter(space=space, artwork_id__in=ids)
    }
    need_text = [c for c in chunk if c[0] not in rows or rows[c[0]].caption_text != c[1]]
    need_image = [c for c in chunk if c[2] and (c[0] not in rows or rows[c[0]].image_name != c[2])]
    text_vecs = dict(
        zip(
            [c[0] for c in need_text],
            embedder.embed_texts([c[1] for c in need_text]) if need_text else [],
            strict=True,
        )
    )
    image_vecs = {}
    if need_image:
        images = [artwork_image_load(c[2]) for c in need_image]
        image_vecs = dict(
            zip([c[0] for c in need_image], embedder.embed_images(images), strict=True)
        )
    report.captions_embedded += len(need_text)
    report.images_embedded += len(need_image)
    assemble_rows, objs_new, objs_upd = [], [], []
    for art_id, text, image_name, genre_id, artist_id, style_id, want, _old in chunk:
        obj = rows.get(art_id) or ArtworkEmbedding(space=space, artwork_id=art_id)
        if art_id in text_vecs:
            obj.caption_text, obj.caption_vector = text, _to_bytes(text_vecs[art_id])
        if art_id in image_vecs:
            obj.image_name, obj.image_vector = image_name, _to_bytes(image_vecs[art_id])
        elif not image_name:
            obj.image_name, obj.image_vector = "", None
        obj.fused_hash = want
        (objs_upd if obj.pk else objs_new).append(obj)
        image_vec = _from_bytes(obj.image_vector, space.dim) if obj.image_vector else None
        assemble_rows.append(
            (_from_bytes(obj.caption_vector, space.dim), image_vec, genre_id, artist_id, style_id)
        )
    fused = _assemble(space, labels, assemble_rows)
    with transaction.atomic():
        ArtworkEmbedding.objects.bulk_create(objs_new)
        if objs_upd:
            ArtworkEmbedding.objects.bulk_update(
                objs_upd,
                ["caption_text", "caption_vector", "image_name", "image_vector", "fused_hash"],
            )
        report.reassembled += len(chunk)
        if connection.vendor == "postgresql":
            _mirror_upsert(space, [c[0] for c in chunk], [c[6] for c in chunk], fused)


def _mirror_upsert(space, ids: list[int], hashes: list[str], fused: np.ndarray) -> None:
    ArtworkVectorMirror.objects.bulk_create(
        [
            ArtworkVectorMirror(space=space, artwork_id=i, fused_hash=h, embedding=v)
            for i, h, v in zip(ids, hashes, fused, strict=True)
        ],
        update_conflicts=True,
        unique_fields=["space", "artwork"],
        update_fields=["fused_hash", "embedding"],
        batch_size=1000,
    )


def artwork_vectors_mark_stale(artwork_ids: Iterable[int]) -> int:
    """Mark artworks' fused vectors for re-assembly (after a label or caption change)."""
    return ArtworkEmbedding.objects.filter(artwork_id__in=list(artwork_ids)).update(fused_hash="")


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
                _from_bytes(cap, space.dim),
                _from_bytes(img, space.dim) if img else None,
                genre_id,
                artist_id,
                style_id,
            )
        )
        if len(buffer) >= batch:
            parts.append(_assemble(space, labels, buffer))
            buffer = []
    if buffer:
        parts.append(_assemble(space, labels, buffer))
    matrix = np.concatenate(parts) if parts else np.zeros((0, space.fused_dim), np.float32)
    return np.asarray(ids, dtype=np.int64), matrix.astype(np.float32), digest.hexdigest()[:16]


def index_root(space: EmbeddingSpace) -> Path:
    return Path(settings.RETRIEVAL_INDEX_DIR) / space.key


@dataclass
class IndexReport:
    version: str
    kind: str
    n: int
    d: int
    seconds: float
    pgvector_index: bool
    is_tiny: bool


def index_rebuild(*, progress: Progress | None = None, kind: str = "auto") -> IndexReport:
    """Embed what is stale, then build a new FAISS index version and switch to it.

    Searches keep using the previous version until the switch (an atomic rename), and
    keep using it if this build fails. On PostgreSQL the pgvector HNSW index is ensured.
    """
    from retrieval.ml.index import build_index

    started = time.monotonic()
    embed_catalog(progress=progress)
    space = space_current()
    if progress:
        progress(0, 1, "assembling fused vectors")
    ids, matrix, catalog_hash = fused_matrix(space)
    if not len(ids):
        raise RetrievalUnavailable("The catalog has no artworks to index; import some first.")

    def build_progress(stage: str, fraction: float) -> None:
        if progress:
            progress(int(fraction * 100), 100, f"building index: {stage}")

    info = build_index(
        matrix,
        ids,
        index_root(space),
        kind=kind,
        exact_max=settings.RETRIEVAL_EXACT_MAX,
        progress=build_progress,
        blocks=4,
        meta={
            "space": space.key,
            "model_id": space.model_id,
            "embedder": space.embedder,
            "is_tiny": space.is_tiny,
            "catalog_hash": catalog_hash,
        },
    )
    from retrieval.selectors import index_store

    index_store(space).reload()  # this process serves the new version at once
    pg_index = False
    if connection.vendor == "postgresql":
        if progress:
            progress(0, 1, "ensuring the pgvector HNSW index")
        pgvector_index_ensure(space)
        pg_index = True
    return IndexReport(
        version=info.version,
        kind=info.kind,
        n=info.n,
        d=info.d,
        seconds=time.monotonic() - started,
        pgvector_index=pg_index,
        is_tiny=space.is_tiny,
    )


def pgvector_index_name(space: EmbeddingSpace) -> str:
    return f"retrieval_mirror_hnsw_ip_{space.pk}"


def pgvector_index_ensure(space: EmbeddingSpace) -> None:
    """Create the partial HNSW index (inner product) for one space's mirror rows, once.

    Inner product, as FAISS scores the same vectors: a fused row lacking a label (a fifth
    of WikiArt has no genre) has a zero block and a norm below 1, and cosine would divide
    that away, ranking such rows differently on PostgreSQL than on SQLite (measured on the
    real catalog: exact cosine and exact inner product shared only 91% of the 50 nearest
    neighbours of an artwork). Replaces the cosine index of earlier versions.
    """
    table = ArtworkVectorMirror._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred FK checks from this transaction's inserts would block CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute(f"DROP INDEX IF EXISTS retrieval_mirror_hnsw_{int(space.pk)}")  # cosine
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {pgvector_index_name(space)} ON {table} "
            f"USING hnsw ((embedding::vector({space.fused_dim})) vector_ip_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE space_id = {int(space.pk)}"
        )


def index_rebuild_request(user=None):
    """Queue an index rebuild as a job (one at a time); returns the job."""
    from jobs.models import JobStatus
    from jobs.services import active_jobs, job_create, job_enqueue
    from retrieval.tasks import INDEX_REBUILD, index_rebuild_task

    with transaction.atomic():
        running = active_jobs(INDEX_REBUILD).first()
        if running is not None:
            return running
        job = job_create(INDEX_REBUILD, user=user)
        job_enqueue(job, index_rebuild_task)
    assert job.status == JobStatus.QUEUED
    return job
