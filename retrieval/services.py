"""Writes for retrieval: the embedder and its space, index builds, live label changes.

With `retrieval.vectors` (fused vectors assembled from stored ones) and
`retrieval.pgvector` (the PostgreSQL mirror), the only layer that translates between the
ORM and `retrieval.ml` (which never sees Django): it reads artworks and labels, hands
texts/images/arrays to the embedder, fusion and index code, and stores what comes back.
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

from catalog.models import Artwork
from jobs.services import job_current, job_heartbeat
from retrieval.models import (
    ArtworkEmbedding,
    CatalogIdentity,
    EmbeddingSpace,
)
from retrieval.pgvector import mirror_build_record, mirror_upsert, pgvector_index_ensure
from retrieval.vectors import (
    assemble,
    from_bytes,
    fused_hash,
    fused_matrix,
    label_vectors,
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


def space_identity() -> dict:
    """The configured embedding space as settings name it (nothing is loaded): embedder
    kind, model id as the embedder resolves it, fusion weights. `EmbeddingSpace` rows store
    these fields: `selectors.space_configured` reads the matching row, `space_ensure` makes it."""
    from retrieval.ml.embedders import embedder_model_id

    kind = settings.RETRIEVAL_EMBEDDER
    weights = dict(settings.RETRIEVAL_FUSION_WEIGHTS)
    model_id = embedder_model_id(kind, model_id_for(kind))
    raw = repr((kind, model_id, sorted(weights.items())))
    cache_key = "retrieval:space:" + hashlib.sha1(raw.encode()).hexdigest()[:16]
    return {"embedder": kind, "model_id": model_id, "weights": weights, "cache_key": cache_key}


def space_ensure(embedder) -> EmbeddingSpace:
    """The configured embedding space, made on first use by embedding and index builds
    (searches only read it: `selectors.space_configured`). Its key also hashes the vector
    size, which only the loaded model knows: a model that changed size gets a new space."""
    identity = space_identity()
    weights = identity["weights"]
    raw = "|".join(
        map(str, (identity["embedder"], embedder.model_id, embedder.dim, sorted(weights.items())))
    )
    space, _ = EmbeddingSpace.objects.get_or_create(
        key=hashlib.sha1(raw.encode()).hexdigest()[:16],
        defaults={
            "embedder": identity["embedder"],
            "model_id": embedder.model_id,
            "dim": embedder.dim,
            "has_image": embedder.has_image,
            "is_tiny": embedder.is_stand_in,  # any random-weight stand-in
            "weights": weights,
        },
    )
    cache.set(identity["cache_key"], space, SPACE_CACHE_SECONDS)
    return space


def artwork_vectors_mark_stale(artwork_ids: Iterable[int]) -> int:
    """Mark artworks' fused vectors for re-assembly (after a label or caption change)."""
    return ArtworkEmbedding.objects.filter(artwork_id__in=list(artwork_ids)).update(fused_hash="")


CATALOG_ID_CACHE_SECONDS = 60


def catalog_id() -> str:
    """This database's catalog id (`CatalogIdentity`), made on first use if the row is gone
    (emptied tables). Cached for a minute: searches ask for it on every request."""

    def read() -> str:
        row = CatalogIdentity.objects.order_by("pk").first()
        if row is None:
            CatalogIdentity.objects.create()
            row = CatalogIdentity.objects.order_by("pk").first()  # two at once: the first wins
        return str(row.catalog_id)

    return cache.get_or_set("retrieval:catalog-id", read, CATALOG_ID_CACHE_SECONDS)


# Neighbours stored per artwork by each index build (labelling's review queue).
REVIEW_NEIGHBOURS = 10


def index_root(space: EmbeddingSpace) -> Path:
    """Where a space's index versions live: one folder per catalog, so two databases that
    share MYTHRAGEN_INDEX_DIR (the demo and a real catalog) never build over each other."""
    return Path(settings.RETRIEVAL_INDEX_DIR) / catalog_id() / space.key


class IndexOfAnotherCatalog(RetrievalUnavailable):
    """An index (or pgvector mirror) built from another catalog than this database's."""


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
    keep using it if this build fails. On PostgreSQL the pgvector mirror's HNSW index is
    ensured (`retrieval.pgvector`).
    """
    from retrieval.ml.index import build_index

    started = time.monotonic()
    from retrieval.catalog_embedding import embed_catalog

    embed_catalog(progress=progress)
    space = space_ensure(embedder_get())
    if progress:
        progress(0, 1, "assembling fused vectors")
    identity, catalog_rows = catalog_id(), Artwork.objects.count()
    snapshot_at = time.time()  # overlay entries stamped later are not in what is read now
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
        snapshot_at=snapshot_at,
        # Each artwork's nearest neighbours with its genre block blind: the review queue's
        # disagreement signal for every artwork, valid whatever genres change meanwhile.
        neighbours=REVIEW_NEIGHBOURS,
        neighbours_blind_block=1,
        meta={
            "space": space.key,
            "model_id": space.model_id,
            "embedder": space.embedder,
            "is_tiny": space.is_tiny,
            "catalog_hash": catalog_hash,
            # What `retrieval.selectors` checks before serving it (see CatalogIdentity).
            "catalog_id": identity,
            "catalog_rows": catalog_rows,
        },
    )
    from retrieval.selectors import index_store

    index_store(space).reload()  # this process serves the new version at once
    pg_index = False
    if connection.vendor == "postgresql":
        if progress:
            progress(0, 1, "ensuring the pgvector HNSW index")
        pgvector_index_ensure(space)
        mirror_build_record(space, identity)
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


def index_rebuild_request(user=None):
    """Queue an index rebuild as a job; one at a time (the database enforces it): a request
    while one is queued or running gets that one. Returns the job."""
    from jobs.services import job_create_exclusive, job_enqueue
    from retrieval.tasks import INDEX_REBUILD, index_rebuild_task

    with transaction.atomic():
        job, created = job_create_exclusive(INDEX_REBUILD, user=user)
        if created:
            job_enqueue(job, index_rebuild_task)
    return job


# --- Label changes reach search at once -----------------------------------------------------

# At most this many artworks are re-assembled at once by one label change (a bulk change is
# at most 5,000); more (a labelling run) are left to a rebuild, which is requested.
LIVE_MAX = 5000


def artwork_labels_changed(artwork_ids: Iterable[int]) -> int:
    """Make artworks' new genres count in search and "similar artworks" now, everywhere.

    Called in the transaction that changed the labels (after `artwork_genre_refresh`).
    There, each artwork's fused vector is re-assembled from its stored caption/image
    vectors and its current labels (no model is needed): its `fused_hash` and, on
    PostgreSQL, its pgvector mirror row are written with the change. Once the transaction
    commits, the vectors go into the served FAISS index's overlay (`retrieval.ml.index.overlay`),
    which every web and worker process applies within a second; the next rebuild folds
    them in. Artworks whose caption changed since they were embedded, or that carry a label
    not embedded yet, are only marked stale (the next `embed_catalog` does them). Beyond
    LIVE_MAX artworks, all are marked stale and an index rebuild is requested instead.
    Returns how many were re-assembled.
    """
    ids = sorted({int(i) for i in artwork_ids})
    if not ids:
        return 0
    if len(ids) > LIVE_MAX:
        for start in range(0, len(ids), LIVE_MAX):  # SQLite caps a query's parameters
            artwork_vectors_mark_stale(ids[start : start + LIVE_MAX])
        transaction.on_commit(lambda: _overlay_forget_and_rebuild(ids))
        return 0
    done = 0
    space_ids = ArtworkEmbedding.objects.filter(artwork_id__in=ids).values_list(
        "space_id", flat=True
    )
    for space in EmbeddingSpace.objects.filter(pk__in=set(space_ids)):
        done += _relabel_in_space(space, ids)
    return done


def _relabel_in_space(space: EmbeddingSpace, ids: list[int]) -> int:
    rows = ArtworkEmbedding.objects.filter(space=space, artwork_id__in=ids).values_list(
        "id",
        "artwork_id",
        "caption_text",
        "caption_vector",
        "image_name",
        "image_vector",
        "artwork__caption",
        "artwork__title",
        "artwork__image",
        "artwork__genre_id",
        "artwork__artist_id",
        "artwork__style_id",
        "artwork__label_version",
    )
    labels = label_vectors(space)
    fresh, stale = [], []
    for row in rows:
        pk, text, image_name = row[0], row[2], row[4]
        caption, title, image, genre, artist, style = row[6:12]
        current_image = image if space.has_image else ""
        embedded = text == (caption or title) and image_name == current_image
        known = (genre is None or genre in labels["genre"]) and artist in labels["artist"]
        if embedded and known and style in labels["style"]:
            fresh.append(row)
        else:
            stale.append(pk)
    if stale:
        ArtworkEmbedding.objects.filter(pk__in=stale).update(fused_hash="")
    if not fresh:
        return 0
    fused = assemble(
        space,
        labels,
        [
            (
                from_bytes(r[3], space.dim),
                from_bytes(r[5], space.dim) if r[5] else None,
                r[9],
                r[10],
                r[11],
            )
            for r in fresh
        ],
    )
    hashes = [fused_hash(space.key, r[2], r[4], r[9], r[10], r[11]) for r in fresh]
    ArtworkEmbedding.objects.bulk_update(
        [ArtworkEmbedding(pk=r[0], fused_hash=h) for r, h in zip(fresh, hashes, strict=True)],
        ["fused_hash"],
        batch_size=1000,
    )
    art_ids = [r[1] for r in fresh]
    if connection.vendor == "postgresql":
        mirror_upsert(space, art_ids, hashes, fused)
    versions = [r[12] for r in fresh]
    transaction.on_commit(lambda: _overlay_put(space, art_ids, fused, versions))
    return len(fresh)


def _overlay_put(space: EmbeddingSpace, ids, vectors, versions) -> None:
    """After the commit: the new vectors into the served index's overlay (if one is built).
    A failure is logged, not raised: the change is committed, and a rebuild carries it."""
    from retrieval.ml.index import overlay_write, read_current

    root = index_root(space)
    if read_current(root) is None:
        return  # no index yet: the first build reads the current labels
    try:
        held = overlay_write(root, np.asarray(ids), vectors, np.asarray(versions))
    except Exception:  # noqa: BLE001 - disk full, a foreign file: search stays as built
        logger.exception("Could not update the index overlay under %s", root)
        return
    if held > LIVE_MAX:
        index_rebuild_request()  # fold a long run of corrections into a new version


def _overlay_forget_and_rebuild(ids: list[int]) -> None:
    """After a change too large to re-assemble at once: drop the artworks' overlay entries
    (now out of date) and ask for a rebuild, if an index is built."""
    from retrieval.ml.index import overlay_write, read_current

    wanted = set(ids)
    versions = {
        i: v
        for i, v in Artwork.objects.values_list("id", "label_version").iterator(chunk_size=5000)
        if i in wanted
    }
    built = False
    for space in EmbeddingSpace.objects.all():
        root = index_root(space)
        if read_current(root) is None:
            continue
        built = True
        try:
            overlay_write(
                root, np.asarray(ids), None, np.asarray([versions.get(i, 0) for i in ids])
            )
        except Exception:  # noqa: BLE001
            logger.exception("Could not update the index overlay under %s", root)
    if built:
        index_rebuild_request()
