"""Reads for labelling: the review queue ordered by how likely a label is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import F, QuerySet

from catalog.filters import ArtworkFilter
from catalog.models import Artwork, GenreLabel, LabelSource
from labelling.models import BulkOperation


class ReviewFilterError(ValueError):
    def __init__(self, errors: dict) -> None:
        super().__init__("invalid filter")
        self.errors = errors


@dataclass
class ReviewItem:
    artwork: Artwork
    confidence: float | None
    disagreement: float | None  # share of nearest neighbours with another genre
    neighbour_genre: str | None  # their most common genre, when it differs
    priority: float


def review_candidates(filters: dict | None = None) -> QuerySet[Artwork]:
    """Artworks a curator may want to review: labelled, not yet confirmed by a curator.

    `filters` takes the catalog filters (genre, style, artist, label_source, ...) plus
    `confidence_min` / `confidence_max`. An explicit label_source=curator shows
    curator-confirmed artworks too.
    """
    data = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    errors = {}
    bounds = {}
    for key in ("confidence_min", "confidence_max"):
        if key in data:
            try:
                bounds[key] = float(data.pop(key))
                if not 0 <= bounds[key] <= 1:
                    raise ValueError
            except (TypeError, ValueError):
                errors[key] = ["a number between 0 and 1"]
    artwork_filter = ArtworkFilter(data, queryset=Artwork.objects.all())
    if not artwork_filter.is_valid():
        errors.update(artwork_filter.errors)
    if errors:
        raise ReviewFilterError(errors)
    qs = artwork_filter.qs.filter(genre__isnull=False).select_related("artist", "style", "genre")
    if "label_source" not in data:
        qs = qs.exclude(genre_source=LabelSource.CURATOR)
    if "confidence_min" in bounds:
        qs = qs.filter(genre_confidence__gte=bounds["confidence_min"])
    if "confidence_max" in bounds:
        qs = qs.filter(genre_confidence__lte=bounds["confidence_max"])
    return qs.order_by(F("genre_confidence").asc(nulls_last=True), "id")


def _neighbour_disagreement(artworks: list[Artwork], k: int = 10) -> dict[int, tuple[float, str]]:
    """For each artwork, the share of its k nearest neighbours (fused vectors, the
    retrieval index) whose genre differs, and their most common genre."""
    from retrieval.models import EmbeddingSpace
    from retrieval.selectors import index_store

    space = EmbeddingSpace.objects.order_by("-id").first()
    loaded = index_store(space).current() if space else None
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


def review_queue(filters: dict | None = None, *, limit: int = 50) -> list[ReviewItem]:
    """The review queue, most likely wrong first.

    Priority = (1 - model confidence; WikiArt labels count as confidence 1) + the share of
    the artwork's nearest neighbours that carry another genre. The lowest-confidence
    `REVIEW_CANDIDATES` artworks are re-ranked by that priority.
    """
    candidates = list(review_candidates(filters)[: max(limit, settings.REVIEW_CANDIDATES)])
    disagreement = _neighbour_disagreement(candidates)
    items = []
    for art in candidates:
        confidence = art.genre_confidence
        share, top = disagreement.get(art.pk, (None, None))
        priority = (1 - (confidence if confidence is not None else 1.0)) + (share or 0.0)
        items.append(
            ReviewItem(
                art, confidence, share, top if top and top != art.genre.name else None, priority
            )
        )
    items.sort(key=lambda it: (-it.priority, it.artwork.pk))
    return items[:limit]


def artwork_history(artwork: Artwork) -> QuerySet[GenreLabel]:
    return artwork.genre_labels.select_related("genre", "user").order_by("created_at", "id")


def bulk_operations(limit: int = 20) -> QuerySet[BulkOperation]:
    return BulkOperation.objects.select_related("genre", "user")[:limit]
