"""Writes for retrieval: embedding the catalog, building indexes, label changes made live.

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
from django.db.models import Q

from catalog.models import Artist, Artwork, Genre, Style
from catalog.selectors import artwork_image_load
from jobs.services import job_current, job_heartbeat
from retrieval.models import (
    ArtworkEmbedding,
    CatalogIdentity,
    EmbeddingSpace,
    LabelEmbedding,
    LabelKind,
)
from retrieval.pgvector import mirror_build_record, mirror_upsert, pgvector_index_ensure
from retrieval.vectors import (
    assemble,
    from_bytes,
    fused_hash,
    fused_matrix,
    label_text,
    label_vectors,
    to_bytes,
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
                LabelEmbedding(space=space, kind=k, label_id=i, text=t, vector=to_bytes(v))
                for (k, i, t), v in zip(todo, vectors, strict=True)
            ],
            batch_size=1000,
        )
    return len(todo)


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
    """Embed what is missing or stale, in batches; each batch commits (so it resumes).

    One run per embedding space at a time, across processes (`jobs.locks.exclusive`: a
    command and a rebuild job would otherwise embed the same artworks twice and collide on
    their rows): a second run waits for the first, saying so through `progress`, then
    finds that nearly everything is up to date.
    """
    from jobs.locks import exclusive

    started = time.monotonic()
    embedder = embedder_get()
    space = space_ensure(embedder)
    said = [-1e9]

    def waiting(holder: str) -> None:
        if time.monotonic() - said[0] >= 5:  # a report every 5 s keeps a job alive
            said[0] = time.monotonic()
            logger.info("embed_catalog: waiting for another run (%s) to finish", holder)
            if progress:
                progress(0, 0, f"waiting for another embedding run ({holder}) to finish")

    with exclusive(f"embed_catalog:{space.key}", on_wait=waiting):
        return _embed_catalog(embedder, space, started, batch_size, progress, limit)


def _embed_catalog(embedder, space, started, batch_size, progress, limit) -> EmbedReport:
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
        want = fused_hash(space.key, text, image_name, genre_id, artist_id, style_id)
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
            obj.caption_text, obj.caption_vector = text, to_bytes(text_vecs[art_id])
        if art_id in image_vecs:
            obj.image_name, obj.image_vector = image_name, to_bytes(image_vecs[art_id])
        elif not image_name:
            obj.image_name, obj.image_vector = "", None
        obj.fused_hash = want
        (objs_upd if obj.pk else objs_new).append(obj)
        image_vec = from_bytes(obj.image_vector, space.dim) if obj.image_vector else None
        assemble_rows.append(
            (from_bytes(obj.caption_vector, space.dim), image_vec, genre_id, artist_id, style_id)
        )
    fused = assemble(space, labels, assemble_rows)
    with transaction.atomic():
        ArtworkEmbedding.objects.bulk_create(objs_new)
        if objs_upd:
            ArtworkEmbedding.objects.bulk_update(
                objs_upd,
                ["caption_text", "caption_vector", "image_name", "image_vector", "fused_hash"],
            )
        report.reassembled += len(chunk)
        if connection.vendor == "postgresql":
            mirror_upsert(space, [c[0] for c in chunk], [c[6] for c in chunk], fused)


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
