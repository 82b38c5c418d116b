"""Reads for labelling: the review queue ordered by how likely a label is wrong."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import F, QuerySet

from catalog.models import MACHINE_SOURCES, Artwork, Genre, GenreLabel, LabelSource
from labelling.filters import ReviewFilter
from labelling.models import BulkOperation, GenreAssessment, GenreModelVersion


class ReviewFilterError(ValueError):
    def __init__(self, errors: dict) -> None:
        super().__init__("invalid filter")
        self.errors = errors


@dataclass
class ReviewItem:
    artwork: Artwork
    confidence: float | None  # the label's own confidence (model labels)
    disagreement: float | None  # share of nearest neighbours with another genre
    neighbour_genre: str | None  # their most common genre, when it differs
    priority: float
    # The genre model's probability of the current genre (its doubt is 1 minus it): the
    # label's confidence for a model label, the held-out assessment for WikiArt's.
    model_probability: float | None = None
    model_genre: str | None = None  # the model's own pick, when it differs


def review_candidates(filters: dict | None = None) -> QuerySet[Artwork]:
    """Artworks a curator may want to review: labelled, not yet confirmed by a curator.

    `filters` takes the names of `labelling.filters.ReviewFilter` (the catalog filters
    plus `confidence_min` / `confidence_max`). An explicit label_source=curator shows
    curator-confirmed artworks too.
    """
    data = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    review_filter = ReviewFilter(data, queryset=Artwork.objects.all())
    if not review_filter.is_valid():
        raise ReviewFilterError(dict(review_filter.errors))
    qs = review_filter.qs.filter(genre__isnull=False).select_related("artist", "style", "genre")
    if "label_source" not in data:
        qs = qs.exclude(genre_source=LabelSource.CURATOR)
    return qs.order_by(F("genre_confidence").asc(nulls_last=True), "id")


def _neighbour_disagreement(artworks: list[Artwork], k: int = 10) -> dict[int, tuple[float, str]]:
    """For each artwork, the share of its k nearest neighbours (fused vectors, the
    retrieval index, corrections included) whose genre differs, and their most common
    genre."""
    loaded = _served_index()
    if loaded is None or not artworks:
        return {}
    vectors, owners = [], []
    for art in artworks:
        vector = loaded.vector_of(art.pk)
        if vector is not None:
            vectors.append(vector)
            owners.append(art)
    if not vectors:
        return {}
    queries = np.stack(vectors).copy()
    # Ask about content, artist and style only: the artwork's own genre block would pull
    # in neighbours that share its (possibly wrong) label.
    dim = queries.shape[1] // 4
    queries[:, dim : 2 * dim] = 0
    _scores, ids = loaded.search(queries, k + 1)
    neighbour_ids = {int(i) for row in ids for i in row if i >= 0}
    genre_of = dict(Artwork.objects.filter(pk__in=neighbour_ids).values_list("id", "genre__name"))
    out = {}
    for art, row in zip(owners, ids, strict=True):
        genres = [genre_of.get(int(i)) for i in row if i >= 0 and int(i) != art.pk][:k]
        genres = [g for g in genres if g]
        if not genres:
            continue
        top = max(set(genres), key=genres.count)
        differ = sum(g != art.genre.name for g in genres) / len(genres)
        out[art.pk] = (differ, top)
    return out


@dataclass(frozen=True)
class _Assessments:
    """The genre model's held-out probabilities of every assessed artwork, as arrays."""

    version: str | None
    ids: np.ndarray  # sorted artwork ids
    genres: dict[str, int]  # genre name -> column
    scores: np.ndarray  # float32 (n, n_genres)

    def lookup(self, artwork_ids: np.ndarray, genres: list[str]) -> tuple[np.ndarray, list]:
        """For each artwork: the model's probability of the given genre (NaN where it was
        not assessed) and the model's own pick (None where unassessed)."""
        names = list(self.genres)
        n = len(self.ids)
        p = np.full(len(artwork_ids), np.nan)
        picks: list[str | None] = [None] * len(artwork_ids)
        if n == 0 or not len(artwork_ids):
            return p, picks
        pos = np.clip(np.searchsorted(self.ids, artwork_ids), 0, n - 1)
        col = np.array([self.genres.get(g, -1) if g else -1 for g in genres], dtype=np.int64)
        found = self.ids[pos] == artwork_ids
        ok = found & (col >= 0)
        p[ok] = self.scores[pos[ok], col[ok]]
        best = self.scores.argmax(axis=1)
        for i in np.flatnonzero(found):
            picks[i] = names[int(best[pos[i]])]
        return p, picks


_assessments: dict[str, _Assessments | None] = {"cached": None}
_assessments_lock = threading.Lock()


def genre_assessments() -> _Assessments:
    """The assessments of the latest genre model, loaded once per process per model
    (81k artworks: ~3 MB as arrays), reloaded when a model is trained."""
    latest = GenreModelVersion.objects.order_by("-id").values_list("version", flat=True).first()
    cached = _assessments["cached"]
    if cached is not None and cached.version == latest:
        return cached
    with _assessments_lock:
        cached = _assessments["cached"]
        if cached is not None and cached.version == latest:
            return cached
        rows = GenreAssessment.objects.order_by("artwork_id").values_list("artwork_id", "scores")
        ids, matrix, genres = [], [], {}
        for artwork_id, scores in rows.iterator(chunk_size=5000):
            if not genres:
                genres = {name: i for i, name in enumerate(scores)}
            ids.append(artwork_id)
            matrix.append([scores.get(name, 0.0) for name in genres])
        cached = _Assessments(
            version=latest,
            ids=np.asarray(ids, dtype=np.int64),
            genres=genres,
            scores=np.asarray(matrix, dtype=np.float32).reshape(len(ids), len(genres)),
        )
        _assessments["cached"] = cached
        return cached


# How much the neighbours' disagreement adds to the model's doubt (see `review_queue`):
# both estimate the chance that the label is wrong. Chosen on wrong labels planted on the
# train split (bench/review.py --split train), never on the val split it reports.
NEIGHBOUR_WEIGHT = 1.0


def _served_index():
    from retrieval.selectors import index_served, space_configured
    from retrieval.services import RetrievalUnavailable

    try:
        space = space_configured()  # the space search uses
        return index_served(space) if space else None
    except RetrievalUnavailable:
        return None  # an index of another catalog: no neighbours rather than wrong ones


def _stored_disagreement(ids: np.ndarray, genre_ids: np.ndarray):
    """Every candidate's neighbour disagreement from the neighbour table the index build
    stored (neighbours found with the genre block blind, compared with the neighbours'
    *current* genres): (share with another genre, NaN where none is known; the neighbours'
    genre ids, -1 where unknown). None when the served version stores no table."""
    loaded = _served_index()
    table = loaded.neighbours_of(ids) if loaded is not None else None
    if table is None:
        return None
    pairs = np.array(
        [(i, g if g is not None else -1) for i, g in Artwork.objects.values_list("id", "genre_id")],
        dtype=np.int64,
    ).reshape(-1, 2)
    lookup = np.full(int(max(pairs[:, 0].max(initial=0), table.max(initial=0))) + 1, -1)
    lookup[pairs[:, 0]] = pairs[:, 1]
    neighbour_genres = np.where(table >= 0, lookup[np.clip(table, 0, None)], -1)
    known = neighbour_genres >= 0
    differ = (neighbour_genres != genre_ids[:, None]) & known
    counted = known.sum(axis=1)
    share = np.where(counted > 0, differ.sum(axis=1) / np.maximum(counted, 1), np.nan)
    return share, neighbour_genres


def review_queue(filters: dict | None = None, *, limit: int = 50) -> list[ReviewItem]:
    """The review queue, most likely wrong first.

    priority = doubt + NEIGHBOUR_WEIGHT x (share of the nearest neighbours with another
    genre). Doubt is 1 minus the genre model's calibrated probability of the artwork's
    current genre: for a model label its own (fused) confidence; for a WikiArt label the
    model's held-out assessment, so a WikiArt label the model disagrees with ranks high
    (WikiArt is sometimes wrong); an artwork nobody assessed has no doubt. Neighbours come
    from the table the index build stored, for every candidate; an index built without one
    is searched live for the most doubtful max(REVIEW_CANDIDATES, 3 x limit) only.
    """
    candidates = review_candidates(filters)
    rows = list(
        candidates.values_list(
            "id", "genre_id", "genre__name", "genre_source", "genre_confidence"
        ).iterator(chunk_size=5000)
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    genre_ids = np.array([r[1] for r in rows], dtype=np.int64)
    genres = [r[2] for r in rows]
    p_model, picks = genre_assessments().lookup(ids, genres)
    own = np.array(
        [r[4] if r[3] in MACHINE_SOURCES and r[4] is not None else np.nan for r in rows],
        dtype=np.float64,
    )
    p = np.where(np.isnan(own), p_model, own)
    doubt = np.where(np.isnan(p), 0.0, 1.0 - p)
    stored = _stored_disagreement(ids, genre_ids) if len(ids) else None
    if stored is not None:
        share, neighbour_genres = stored
        priority = doubt + NEIGHBOUR_WEIGHT * np.nan_to_num(share)
        order = np.lexsort((ids, -priority))[:limit]
        names = dict(Genre.objects.values_list("id", "name"))
        neighbours = {}
        for i in order:
            if np.isnan(share[i]):
                continue
            known = neighbour_genres[i][neighbour_genres[i] >= 0]
            common = int(np.bincount(known).argmax())
            neighbours[int(ids[i])] = (float(share[i]), names.get(common))
    else:
        order = np.lexsort((ids, -doubt))[: max(settings.REVIEW_CANDIDATES, 3 * limit)]
        neighbours = None
    artworks = candidates.filter(pk__in=[int(ids[i]) for i in order]).in_bulk()
    if neighbours is None:
        pool = [artworks[int(ids[i])] for i in order if int(ids[i]) in artworks]
        neighbours = _neighbour_disagreement(pool)
    items = []
    for i in order:
        art = artworks.get(int(ids[i]))
        if art is None:
            continue
        share_i, common = neighbours.get(art.pk, (None, None))
        items.append(
            ReviewItem(
                artwork=art,
                confidence=art.genre_confidence,
                disagreement=share_i,
                neighbour_genre=common if common and common != art.genre.name else None,
                priority=float(doubt[i]) + NEIGHBOUR_WEIGHT * (share_i or 0.0),
                model_probability=None if np.isnan(p[i]) else float(p[i]),
                model_genre=picks[i] if picks[i] != genres[i] else None,
            )
        )
    items.sort(key=lambda it: (-it.priority, it.artwork.pk))
    return items[:limit]


def artwork_history(artwork: Artwork) -> QuerySet[GenreLabel]:
    return artwork.genre_labels.select_related("genre", "user").order_by("created_at", "id")


def bulk_operations(limit: int = 20) -> QuerySet[BulkOperation]:
    return BulkOperation.objects.select_related("genre", "user")[:limit]
