"""Embedding the catalog: label names, captions and images into stored vectors and fused
rows, in batches that each commit (so a run resumes), spread over workers in chunks.

`embed_catalog` is the one entry point (the `embed_catalog` command, `index_rebuild`).
A run of more stale artworks than one chunk (`RETRIEVAL_EMBED_CHUNK`) records each chunk
as an `embed_chunk` job and sends its task: other Celery worker processes take chunks
from the queue while the run itself claims and embeds the rest, through the same atomic
claim, so a chunk never runs twice and one worker (or no broker) still finishes alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from catalog.models import Artist, Artwork, Genre, Style
from catalog.selectors import artwork_image_load
from jobs.services import job_current, job_heartbeat
from retrieval.models import ArtworkEmbedding, EmbeddingSpace, LabelEmbedding, LabelKind
from retrieval.pgvector import mirror_upsert
from retrieval.services import (
    RetrievalUnavailable,
    artwork_vectors_mark_stale,
    embedder_get,
    space_ensure,
)
from retrieval.vectors import assemble, from_bytes, fused_hash, label_text, label_vectors, to_bytes

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]

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
    chunks: int = 0  # chunk jobs the run was split into (0: embedded in this process alone)
    workers: int = 1  # processes that embedded its chunks (this one included)


def embed_catalog(
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    chunk_size: int | None = None,
) -> EmbedReport:
    """Embed what is missing or stale, in batches; each batch commits (so it resumes).

    One run per embedding space at a time, across processes (`jobs.locks.exclusive`: a
    command and a rebuild job would otherwise embed the same artworks twice and collide on
    their rows): a second run waits for the first, saying so through `progress`, then
    finds that nearly everything is up to date.

    More stale artworks than `chunk_size` (default RETRIEVAL_EMBED_CHUNK; 0: never) are
    split into chunk jobs that idle Celery workers embed in parallel with this run, which
    embeds chunks too and reports them all as one progress (`_embed_in_chunks`).
    """
    from jobs.locks import exclusive

    for name, value, least in (("batch_size", batch_size, 1), ("chunk_size", chunk_size, 0)):
        if value is not None and value < least:  # a negative one would embed nothing
            raise ValueError(f"{name} must be at least {least} (got {value})")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (got {limit})")
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
        return _embed_catalog(embedder, space, started, batch_size, progress, limit, chunk_size)


_ART_FIELDS = ("id", "caption", "title", "image", "genre_id", "artist_id", "style_id")
_EMB_FIELDS = ("artwork_id", "id", "caption_text", "image_name", "fused_hash")
# Ids per `__in` query (SQLite caps a query's parameters).
_IN_MAX = 5000


def _stale(space, artworks, existing: dict) -> tuple[list[tuple], int]:
    """(the artworks, as `_ART_FIELDS` rows, whose stored vectors are missing or stale,
    as `_embed_batch` takes them; how many are up to date)."""
    todo, fresh = [], 0
    for art_id, caption, title, image, genre_id, artist_id, style_id in artworks:
        text = caption or title
        image_name = image if space.has_image else ""
        want = fused_hash(space.key, text, image_name, genre_id, artist_id, style_id)
        old = existing.get(art_id)
        if old and old[3] == want:
            fresh += 1
            continue
        todo.append((art_id, text, image_name, genre_id, artist_id, style_id, want, old))
    return todo, fresh


def _images_load(embedder, space, todo) -> None:
    load_images = getattr(embedder, "load_images", None)
    if load_images is not None and any(t[2] for t in todo):  # BLIP-2's vision half, once
        with job_heartbeat(job_current(), f"loading model {space.model_id} (image side)"):
            load_images()


def _embed_catalog(
    embedder, space, started, batch_size, progress, limit, chunk_size
) -> EmbedReport:
    batch_size = batch_size or settings.RETRIEVAL_EMBED_BATCH
    chunk_size = settings.RETRIEVAL_EMBED_CHUNK if chunk_size is None else chunk_size
    report = EmbedReport(space=str(space), is_tiny=space.is_tiny)
    report.labels_embedded = labels_embed(space, embedder)
    labels = label_vectors(space)
    existing = {
        row[0]: row[1:]
        for row in ArtworkEmbedding.objects.filter(space=space).values_list(*_EMB_FIELDS)
    }
    artworks = Artwork.objects.order_by("id").values_list(*_ART_FIELDS)
    if limit:
        artworks = artworks[:limit]
    todo, report.up_to_date = _stale(space, artworks, existing)
    report.artworks = len(todo) + report.up_to_date
    total = len(todo)
    if chunk_size and total > chunk_size:
        _embed_in_chunks(
            embedder, space, labels, [t[0] for t in todo], chunk_size, batch_size, progress, report
        )
        report.seconds = time.monotonic() - started
        return report
    _embed_batches(
        embedder,
        space,
        labels,
        todo,
        batch_size,
        report,
        lambda done: progress and progress(done, total, "embedding artworks"),
    )
    report.seconds = time.monotonic() - started
    return report


def _embed_batches(embedder, space, labels, todo, batch_size, report, done) -> None:
    """Embed `todo` (stale rows, as `_stale` gives them) batch by batch, each batch its own
    transaction; `done(n)` after each, from 0 (before the first) to len(todo)."""
    _images_load(embedder, space, todo)
    done(0)
    for start in range(0, len(todo), batch_size):
        _embed_batch(space, embedder, labels, todo[start : start + batch_size], report)
        done(min(start + batch_size, len(todo)))


def _embed_batch(space, embedder, labels, chunk, report: EmbedReport) -> None:
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


# --- Embedding spread over workers ------------------------------------------------------

# The job kind of one chunk of an `embed_catalog` run, and the task that runs one.
EMBED_CHUNK = "embed_chunk"
EMBED_CHUNK_TASK = "retrieval.embed_chunk"
# How often a run whose chunks all run elsewhere looks at them (seconds).
CHUNK_POLL_SECONDS = 0.25


class EmbedChunkFailed(RuntimeError):
    """A chunk job of an embedding run failed or was cancelled: the run stops (the batches
    committed so far are kept; the next run resumes from them)."""


def _chunks_wait(seconds: float) -> None:
    time.sleep(seconds)


def chunk_params(space_key: str, ids: list[int], *, parent=None, batch=None) -> dict:
    """A chunk job's params: its artworks as runs of consecutive ids ([first, last] pairs,
    a few for a fresh catalog's chunk of thousands), so job rows and the jobs API stay
    small."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return {
        "parent": parent,
        "space": space_key,
        "batch": batch,
        "artworks": len(ids),
        "id_runs": runs,
    }


def chunk_ids(params: dict) -> list[int]:
    """The artwork ids of a chunk job (`chunk_params`), in order."""
    return [i for first, last in params["id_runs"] for i in range(first, last + 1)]


def _chunk_embed(embedder, space, labels, ids, batch_size, report, progress) -> dict:
    """Embed the artworks `ids` of one chunk that are still stale (another run may have
    done some since), batch by batch; `progress(done, total)` counts the chunk's ids.
    Returns the chunk's summary (a chunk job's result)."""
    todo, fresh = [], 0
    for start in range(0, len(ids), _IN_MAX):
        part = ids[start : start + _IN_MAX]
        existing = {
            row[0]: row[1:]
            for row in ArtworkEmbedding.objects.filter(
                space=space, artwork_id__in=part
            ).values_list(*_EMB_FIELDS)
        }
        rows = Artwork.objects.filter(pk__in=part).order_by("id").values_list(*_ART_FIELDS)
        stale, up_to_date = _stale(space, rows, existing)
        todo += stale
        fresh += up_to_date
    before = (report.captions_embedded, report.images_embedded, report.reassembled)
    skipped = len(ids) - len(todo)  # up to date meanwhile, or deleted
    _embed_batches(
        embedder, space, labels, todo, batch_size, report, lambda n: progress(skipped + n, len(ids))
    )
    return {
        "artworks": len(ids),
        "up_to_date": fresh,
        "captions_embedded": report.captions_embedded - before[0],
        "images_embedded": report.images_embedded - before[1],
        "reassembled": report.reassembled - before[2],
    }


def embed_chunk_run(job_id: int, progress: Progress) -> dict:
    """The body of a chunk job (`retrieval.tasks.embed_chunk_task`): embed its artworks
    with this process's embedder, which must give the run's embedding space."""
    from jobs.models import Job

    params = Job.objects.values_list("params", flat=True).get(pk=job_id)
    embedder = embedder_get()
    space = space_ensure(embedder)
    if space.key != params["space"]:
        raise RetrievalUnavailable(
            f"This worker's embedder gives the space {space.key}, not the run's "
            f"{params['space']}: every worker needs the same MYTHRAGEN_EMBEDDER and model."
        )
    report = EmbedReport(space=str(space), is_tiny=space.is_tiny)
    batch_size = params.get("batch") or settings.RETRIEVAL_EMBED_BATCH
    return _chunk_embed(
        embedder,
        space,
        label_vectors(space),
        chunk_ids(params),
        batch_size,
        report,
        lambda done, total: progress(done, total, "embedding artworks"),
    )


def _chunks_leftover_end(space, progress: Progress | None) -> None:
    """Cancel the active chunk jobs of an earlier run of this space (one whose process
    died holding the run: its chunks outlive it) and wait until none runs, so no artwork is
    embedded by two processes at once. A queued one, or one whose worker is gone, ends at
    once; a live one stops after its current batch."""
    from jobs.models import ACTIVE_STATUSES, Job
    from jobs.services import job_cancel_request

    leftover = Job.objects.filter(
        kind=EMBED_CHUNK, status__in=ACTIVE_STATUSES, params__space=space.key
    )
    deadline = time.monotonic() + settings.JOBS_STALE_SECONDS
    while True:
        jobs = list(leftover)
        if not jobs:
            return
        for job in jobs:
            job_cancel_request(job)
        running = [j.pk for j in jobs if j.is_active]  # refreshed by the request
        if not running:
            return
        if time.monotonic() > deadline:
            raise EmbedChunkFailed(
                f"Chunk jobs {running} of an earlier embedding run were asked to stop "
                f"{settings.JOBS_STALE_SECONDS} s ago and still run; cancel them or restart "
                "their workers, then run again."
            )
        if progress:
            progress(0, 0, f"waiting for {len(running)} chunk jobs of an earlier run to stop")
        _chunks_wait(CHUNK_POLL_SECONDS)


def _embed_in_chunks(
    embedder, space, labels, ids, chunk_size, batch_size, progress, report
) -> None:
    """Embed `ids` (stale artworks, each once) as chunk jobs shared with Celery workers.

    Each chunk is a Job (kind `embed_chunk`: its artwork ids, the space, the run's job as
    `parent`) whose task is sent to the queue. This process works too: it claims the next
    queued chunk itself, through the same atomic claim as a worker (`job_running`), so a
    chunk runs once and a run with no other worker (or no broker) does them all, in order;
    a worker handed a chunk that is claimed or done drops it. When none is left to claim it
    waits for the chunks running elsewhere, taking over any whose worker is gone. It
    reports the sum over the chunks through `progress`. A chunk that fails or is cancelled
    stops the run (`EmbedChunkFailed`, naming it); however the run ends early, its
    unfinished chunks are cancelled.
    """
    from jobs.models import ACTIVE_STATUSES, Job
    from jobs.services import (
        job_cancel_request,
        job_create,
        job_enqueue_many,
    )
    from retrieval.tasks import embed_chunk_task

    _chunks_leftover_end(space, progress)
    parent = job_current()
    with transaction.atomic():
        jobs = [
            job_create(
                EMBED_CHUNK,
                params=chunk_params(
                    space.key, ids[start : start + chunk_size], parent=parent, batch=batch_size
                ),
            )
            for start in range(0, len(ids), chunk_size)
        ]
        job_enqueue_many(jobs, embed_chunk_task)
    chunks = {job.pk: job.params["artworks"] for job in jobs}
    report.chunks = len(chunks)
    try:
        workers = _chunks_drive(embedder, space, labels, chunks, batch_size, progress, report)
    except BaseException:
        for job in Job.objects.filter(pk__in=chunks, status__in=ACTIVE_STATUSES):
            job_cancel_request(job)
        raise
    report.workers = workers
    for result in Job.objects.filter(pk__in=list(chunks)).values_list("result", flat=True):
        report.captions_embedded += result.get("captions_embedded", 0)
        report.images_embedded += result.get("images_embedded", 0)
        report.reassembled += result.get("reassembled", 0)


def _chunks_drive(embedder, space, labels, chunks, batch_size, progress, report) -> int:
    """Run and wait for the chunk jobs `chunks` ({job id: artworks}) until all succeeded;
    return how many processes ran them."""
    from jobs import processes
    from jobs.models import Job, JobStatus
    from jobs.services import JobCancelled, JobNotClaimed, job_running, job_succeed

    me = processes.identity()
    total = sum(chunks.values())
    shown = [0]

    def state() -> dict:
        return {
            pk: rest
            for pk, *rest in Job.objects.filter(pk__in=list(chunks)).values_list(
                "pk", "status", "done", "worker", "error"
            )
        }

    def workers_of(rows) -> set:
        return {w for s, _d, w, _e in rows.values() if w and s != JobStatus.QUEUED}

    def tell(rows, here: int | None = None, here_done: int = 0) -> None:
        done = 0
        for pk, (status, job_done, _w, _e) in rows.items():
            if pk == here:
                done += here_done
            elif status == JobStatus.SUCCEEDED:
                done += chunks[pk]
            elif status == JobStatus.RUNNING:
                done += min(job_done, chunks[pk])
        shown[0] = max(shown[0], done)  # a chunk resumed elsewhere may report less at first
        n = len(workers_of(rows))
        if progress:
            stage = "embedding artworks" + (f" ({n} workers)" if n > 1 else "")
            progress(shown[0], total, stage)

    def run_here(pk: int) -> None:
        """Claim chunk `pk` and embed it in this process (JobNotClaimed: not ours to run)."""
        mine_stopped: list[BaseException] = []

        def step(done: int, size: int) -> None:
            chunk_report(done, size, "embedding artworks")
            try:
                tell(state(), pk, done)
            except JobCancelled as exc:  # the run (its job) was cancelled, not the chunk
                mine_stopped.append(exc)
                raise JobCancelled(f"embedding run stopped: {exc}") from exc

        try:
            with job_running(pk, task_name=EMBED_CHUNK_TASK) as chunk_report:
                params = Job.objects.values_list("params", flat=True).get(pk=pk)
                scratch = EmbedReport(space=report.space)  # the run sums the chunks' results
                summary = _chunk_embed(
                    embedder, space, labels, chunk_ids(params), batch_size, scratch, step
                )
                job_succeed(pk, summary)
        except JobCancelled as exc:
            if mine_stopped:
                raise mine_stopped[0] from None
            if isinstance(exc, JobNotClaimed):
                raise
            # The chunk alone was cancelled: the next look at the chunks says so.

    if progress:
        progress(0, total, "embedding artworks")
    while True:
        rows = state()
        ended = [pk for pk, r in rows.items() if r[0] in (JobStatus.FAILED, JobStatus.CANCELLED)]
        if ended:
            pk = ended[0]
            status, _d, worker, error = rows[pk]
            reason = (error.strip().splitlines() or [""])[0]
            raise EmbedChunkFailed(
                f"Embedding chunk job #{pk} ({chunks[pk]} artworks) {status}"
                + (f" in {processes.describe(worker)}" if worker else "")
                + (f": {reason}" if reason else "")
                + ". The run stops; what its chunks committed is kept, and the next run "
                "embeds the rest."
            )
        if all(r[0] == JobStatus.SUCCEEDED for r in rows.values()):
            tell(rows)
            return len(workers_of(rows))
        ran = False
        for pk in chunks:  # in order: the first chunk not done and not running elsewhere
            status, _d, worker, _e = rows[pk]
            if status == JobStatus.QUEUED or (status == JobStatus.RUNNING and worker != me):
                try:
                    run_here(pk)  # a running one is taken over only if its worker is gone
                except JobNotClaimed:
                    continue
                ran = True
                break
        if not ran:
            tell(rows)
            _chunks_wait(CHUNK_POLL_SECONDS)
