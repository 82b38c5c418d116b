"""Reads for retrieval: text/image search over the FAISS index, similar artworks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from catalog.filters import ArtworkFilter
from catalog.models import Artwork
from catalog.selectors import artist_label_ids, label_snapshot, with_labels
from retrieval.models import ArtworkVectorMirror, EmbeddingSpace, LabelEmbedding, MirrorBuild
from retrieval.pgvector import pgvector_index_name, similar_sql
from retrieval.query import ParsedPrompt, PromptParser, Vocabulary
from retrieval.services import (
    SPACE_CACHE_SECONDS,
    IndexOfAnotherCatalog,
    RetrievalUnavailable,
    catalog_id,
    embedder_get,
    index_root,
    space_identity,
)
from retrieval.vectors import label_text

SLOT_NAMES = ("content", "genre", "artist", "style")


class SearchInputError(ValueError):
    """A search request that cannot be answered as asked (the message says why)."""

    def __init__(self, message: str, errors: dict | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {"detail": message}


@dataclass
class SearchHit:
    artwork: Artwork
    score: float
    slots: dict[str, float]


@dataclass
class SearchResult:
    parsed: ParsedPrompt | None
    hits: list[SearchHit]
    index_version: str
    model_id: str
    is_tiny: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    restricted_to: int | None = None


def space_configured() -> EmbeddingSpace | None:
    """The one rule for "the current embedding space", used by search, similar artworks,
    the index status and the review queue: the space of the configured embedder, model and
    fusion weights (`services.space_identity`), or None when nothing has been embedded with
    them yet. Never writes (`services.space_ensure` makes the row when the catalog is
    embedded) and loads no model. Should a model behind one id have changed its vector
    size, the newest matching space is the one embedded last.

    A space never changes once made, so a found one is cached (~0.5 ms a request saved);
    "none yet" is not, so a first build is seen at once."""
    from django.core.cache import cache

    identity = space_identity()
    space = cache.get(identity["cache_key"])
    if space is None:
        rows = EmbeddingSpace.objects.filter(
            embedder=identity["embedder"], model_id=identity["model_id"]
        ).order_by("-id")
        space = next((r for r in rows if r.weights == identity["weights"]), None)
        if space is not None:
            cache.set(identity["cache_key"], space, SPACE_CACHE_SECONDS)
    return space


NOT_BUILT = (
    "No search index is built yet: run `python manage.py build_index` (or rebuild it "
    "from the admin)."
)

_stores: dict[str, object] = {}
_parser_cache: dict[str, object] = {"key": None, "parser": None}
_lock = threading.Lock()


def index_store(space: EmbeddingSpace):
    """The per-process index store for a space (loads the current version lazily)."""
    from retrieval.ml.index import IndexStore

    root = str(index_root(space))
    with _lock:
        if root not in _stores:
            _stores[root] = IndexStore(index_root(space))
        return _stores[root]


REBUILD = "rebuild it: `python manage.py build_index` (or the admin's index rebuild)"


def index_served(space: EmbeddingSpace):
    """The index version to answer from: the current one of this catalog's folder, or None
    when none is built. Raises `IndexOfAnotherCatalog` when the version was built from
    another catalog than this database's (a folder copied or shared by hand): its rows are
    other artworks, and serving it would answer with unrelated ones."""
    loaded = index_store(space).current()
    if loaded is None:
        return None
    built = (getattr(loaded, "meta", None) or {}).get("user", {})
    ours = catalog_id()
    if built.get("catalog_id") != ours:
        theirs = built.get("catalog_id") or "unknown (built before catalogs were identified)"
        raise IndexOfAnotherCatalog(
            f"The search index (version {loaded.version}) was built from "
            f"another catalog ({theirs}, {built.get('catalog_rows', '?')} artworks), not this "
            f"database's ({ours}); {REBUILD}."
        )
    return loaded


def mirror_served(space: EmbeddingSpace) -> MirrorBuild:
    """The pgvector mirror's build record, checked like `index_served` (cached a minute).
    Raises when it was never completed for this catalog or belongs to another one."""
    from django.core.cache import cache

    key = f"retrieval:mirror:{space.pk}"
    build = cache.get(key)
    if build is None:
        build = MirrorBuild.objects.filter(space=space).first()
        if build is None:
            raise RetrievalUnavailable(f"The pgvector mirror is not built yet; {REBUILD}.")
        cache.set(key, build, 60)
    ours = catalog_id()
    if str(build.catalog_id) != ours:
        raise IndexOfAnotherCatalog(
            f"The pgvector mirror was built from another catalog ({build.catalog_id}, "
            f"{build.rows} rows), not this database's ({ours}); {REBUILD}."
        )
    return build


def prompt_parser() -> PromptParser:
    """A parser for the catalog's vocabulary, rebuilt when the labels change (see
    `catalog.selectors.label_snapshot`)."""
    labels = label_snapshot()
    with _lock:
        if _parser_cache["key"] is not labels:
            _parser_cache["parser"] = PromptParser(
                Vocabulary(
                    artists=[(a.pk, a.name) for a in labels.artists.values()],
                    styles=[(s.pk, s.name) for s in labels.styles.values()],
                    genres=[(g.pk, g.name) for g in labels.genres.values()],
                )
            )
            _parser_cache["key"] = labels
        return _parser_cache["parser"]


def allowed_ids_for(filters: dict | None) -> np.ndarray | None:
    """Artwork ids of a sub-collection (any catalog filter set), or None for all."""
    data = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    if not data:
        return None
    artwork_filter = ArtworkFilter(data, queryset=Artwork.objects.all())
    if not artwork_filter.is_valid():
        raise SearchInputError("invalid filter", errors=dict(artwork_filter.errors))
    return np.fromiter(artwork_filter.qs.values_list("id", flat=True), dtype=np.int64)


_slot_cache: dict = {"version": None, "vectors": {}}


def _slot_vectors(space, parsed: ParsedPrompt, version: str | None = None) -> dict[str, np.ndarray]:
    """The stored label embeddings of the names a prompt matched, by slot.

    With an index `version`, vectors are cached per process until the served index
    changes (a renamed label reaches search through a re-embed and a rebuild anyway).
    """
    wanted = {m.slot: m.label_id for m in parsed.matches}
    with _lock:
        if version is None or _slot_cache["version"] != version:
            _slot_cache.update(version=version, vectors={})
        cache = _slot_cache["vectors"]
        out = {
            slot: cache[(space.pk, slot, i)]
            for slot, i in wanted.items()
            if (space.pk, slot, i) in cache
        }
    missing = {slot: i for slot, i in wanted.items() if slot not in out}
    if missing:
        match = Q(pk__in=[])
        for slot, label_id in missing.items():
            match |= Q(kind=slot, label_id=label_id)
        rows = LabelEmbedding.objects.filter(match, space=space).values_list(
            "kind", "label_id", "vector"
        )
        found = {(kind, label_id): vector for kind, label_id, vector in rows}
        for slot, label_id in missing.items():
            if (slot, label_id) not in found:
                raise RetrievalUnavailable(
                    f"No embedding for {slot} {label_id}: run `python manage.py embed_catalog`."
                )
            out[slot] = np.frombuffer(bytes(found[(slot, label_id)]), dtype=np.float32)
        if version is not None:
            with _lock:
                if _slot_cache["version"] == version and len(cache) < 10_000:
                    cache.update({(space.pk, s, missing[s]): out[s] for s in missing})
    return out


def image_search_available() -> bool:
    """Whether the configured embedder can search by image (decided without loading it)."""
    from retrieval.ml.embedders import embedder_has_image

    return embedder_has_image(settings.RETRIEVAL_EMBEDDER)


def image_search_cost() -> str:
    """What the first image search costs the serving process (the page says it)."""
    from retrieval.ml.embedders import embedder_image_cost

    return embedder_image_cost(settings.RETRIEVAL_EMBEDDER)


def artwork_search_by_labels(
    content: str, labels: dict[str, int], *, k: int, filters: dict | None = None
) -> SearchResult:
    """Top-k artworks for content words and catalog labels given by id (`{slot: label id}`,
    slots artist / style / genre), ranked as `artwork_search` ranks a prompt it read as
    these. For callers that parsed the prompt already (generation's retrieval sets): the
    labels are never written back into text to be read again."""
    from retrieval.query import Match, ParsedPrompt

    wanted = ParsedPrompt(
        content, content, matches=[Match(s, int(i), "", "") for s, i in labels.items()]
    )
    return artwork_search(k=k, filters=filters, parsed=wanted)


def artwork_search(
    prompt: str = "",
    *,
    k: int = 20,
    filters: dict | None = None,
    image=None,
    parsed=None,
) -> SearchResult:
    """Top-k artworks for a prompt (and/or an image), optionally within a sub-collection.
    `parsed`: a prompt read already (`artwork_search_by_labels`), instead of `prompt`."""
    from retrieval.ml.fusion import query_vector, slot_scores

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prompt = (prompt or "").strip()
    if not prompt and image is None and parsed is None:
        raise SearchInputError("Give a prompt or an image to search with.")
    if len(prompt) > 500:
        raise SearchInputError("The prompt is longer than 500 characters.")
    if not 1 <= k <= settings.RETRIEVAL_MAX_K:
        raise SearchInputError(f"k must be between 1 and {settings.RETRIEVAL_MAX_K}.")
    embedder = embedder_get()
    space = space_configured()
    if space is None:
        raise RetrievalUnavailable(NOT_BUILT)  # nothing embedded with this model yet
    if space.dim != embedder.dim:
        raise RetrievalUnavailable(
            f"The model {space.model_id} now gives {embedder.dim}-d vectors, the catalog was "
            f"embedded at {space.dim}-d; {REBUILD}."
        )
    if image is not None and not embedder.has_image:
        raise SearchInputError(
            f"The retrieval model ({space.model_id}) has no image side: set "
            "MYTHRAGEN_EMBEDDER=blip2 to search by image."
        )
    loaded = index_served(space)
    if loaded is None:
        raise RetrievalUnavailable(NOT_BUILT)
    allowed = allowed_ids_for(filters)
    timings["prepare"] = (time.perf_counter() - t0) * 1000

    t1 = time.perf_counter()
    if parsed is None and prompt:
        parsed = prompt_parser().parse(prompt).reconcile(artist_label_ids)
    content = None
    if parsed and parsed.content:
        content = embedder.embed_texts([parsed.content], threads=settings.RETRIEVAL_QUERY_THREADS)[
            0
        ]
    if image is not None:
        image_vec = embedder.embed_images([image], threads=settings.RETRIEVAL_QUERY_THREADS)[0]
        content = image_vec if content is None else content + image_vec
    slots = _slot_vectors(space, parsed, loaded.version) if parsed else {}
    if content is None and not slots:
        raise SearchInputError("The prompt has no words to search with.")
    query = query_vector(
        content,
        genre=slots.get("genre"),
        artist=slots.get("artist"),
        style=slots.get("style"),
        dim=space.dim,
    )
    timings["encode"] = (time.perf_counter() - t1) * 1000

    t2 = time.perf_counter()
    scores, ids = loaded.search(query[None, :], k, allowed_ids=allowed)
    timings["search"] = (time.perf_counter() - t2) * 1000

    t3 = time.perf_counter()
    ids_list = [int(i) for i in ids[0] if i >= 0]
    objects = with_labels(Artwork.objects.all()).in_bulk(ids_list)
    vectors = loaded.vectors_of(ids_list) if ids_list else None
    per_slot = slot_scores(query, vectors) if vectors is not None else np.zeros((0, 4))
    hits = [
        SearchHit(
            artwork=objects[i],
            score=float(s),
            slots={n: float(v) for n, v in zip(SLOT_NAMES, row, strict=True)},
        )
        for i, s, row in zip(ids_list, scores[0], per_slot, strict=False)
        if i in objects
    ]
    timings["load"] = (time.perf_counter() - t3) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    return SearchResult(
        parsed=parsed,
        hits=hits,
        index_version=loaded.version,
        model_id=space.model_id,
        is_tiny=space.is_tiny,
        timings_ms=timings,
        restricted_to=None if allowed is None else int(len(allowed)),
    )


def artwork_similar(
    artwork: Artwork,
    *,
    k: int = 12,
    filters: dict | None = None,
    space: EmbeddingSpace | None = None,
) -> list[tuple[Artwork, float]]:
    """Nearest artworks by fused vector: pgvector on PostgreSQL, FAISS elsewhere; none
    before the catalog is embedded (`space` defaults to `space_configured()`).

    Filtered queries on PostgreSQL use HNSW iterative scans (relaxed order), so they
    return k rows whenever k exist, not fewer.
    """
    space = space or space_configured()
    if space is None:
        return []
    allowed = allowed_ids_for(filters)
    if connection.vendor == "postgresql":
        mirror_served(space)
        ids_scores = _similar_pgvector(space, artwork.pk, k, allowed)
    else:
        loaded = index_served(space)
        vector = loaded.vector_of(artwork.pk) if loaded else None
        if vector is None:
            return []
        scores, ids = loaded.search(vector[None, :], k + 1, allowed_ids=allowed)
        ids_scores = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and i != artwork.pk
        ][:k]
    objects = with_labels(Artwork.objects.all()).in_bulk([i for i, _ in ids_scores])
    return [(objects[i], s) for i, s in ids_scores if i in objects]


def _similar_pgvector(space, artwork_id: int, k: int, allowed) -> list[tuple[int, float]]:
    row = ArtworkVectorMirror.objects.filter(space=space, artwork_id=artwork_id).first()
    if row is None:
        return []
    table = ArtworkVectorMirror._meta.db_table
    sql, params = similar_sql(
        table, space.pk, space.fused_dim, row.embedding, artwork_id, k, allowed
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # Without iterative scans a filtered HNSW query can return fewer rows than asked.
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # set_config(..., true) is SET LOCAL that takes a bound parameter.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)", [str(settings.RETRIEVAL_PG_EF_SEARCH)]
        )
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # relaxed_order may return rows slightly out of order: sort them.
    return sorted(((int(i), float(s)) for i, s in rows), key=lambda p: -p[1])


def index_status() -> dict:
    """What the configured space's search index holds and whether the catalog has moved on
    since (`built` False before anything is embedded with the configured model)."""
    try:
        space = space_configured()
    except RetrievalUnavailable as exc:  # an unknown MYTHRAGEN_EMBEDDER
        return {"built": False, "problem": str(exc)}
    if space is None:
        return {"built": False}
    problem = ""
    try:
        loaded = index_served(space)
    except IndexOfAnotherCatalog as exc:
        loaded, problem = None, str(exc)
    from retrieval.models import ArtworkEmbedding

    embedded = ArtworkEmbedding.objects.filter(space=space).exclude(fused_hash="").count()
    status = {
        "built": loaded is not None,
        "space": str(space),
        "model_id": space.model_id,
        "is_tiny": space.is_tiny,
        "artworks": Artwork.objects.count(),
        "embedded": embedded,
        "pgvector_index": pgvector_index_name(space) if connection.vendor == "postgresql" else None,
        "catalog_id": catalog_id(),
    }
    if problem:
        status["problem"] = problem
    if loaded is not None:
        status.update(
            version=loaded.version,
            kind=loaded.kind,
            indexed=loaded.n,
            meta=getattr(loaded, "meta", {}),
        )
    return status


__all__ = ["artwork_search", "artwork_similar", "index_status", "label_text", "space_configured"]


def search_warm_up() -> dict:
    """Load what a first search needs (the prompt encoder and its ONNX session, the served
    index, the prompt parser and label snapshot) by running one search, so that the first
    visitor's search is as fast as any. Serving processes call it when they start
    (`config.warm`); with no index yet the encoder is still loaded."""
    started = time.perf_counter()
    embedder = embedder_get()
    try:
        result = artwork_search("a painting", k=1)
        index = result.index_version
    except RetrievalUnavailable:
        embedder.embed_texts(["a painting"], threads=settings.RETRIEVAL_QUERY_THREADS)
        index = "none yet"
    return {
        "seconds": time.perf_counter() - started,
        "model_id": embedder.model_id,
        "index": index,
    }
