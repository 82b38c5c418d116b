"""Reads from the catalog, shared by pages, the API and commands."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from catalog.models import Artist, Artwork, Genre, GenreLabel, Style


def artwork_list() -> QuerySet[Artwork]:
    """Artworks with what a list shows, newest import last."""
    return Artwork.objects.select_related("artist", "style", "genre").order_by("id")


def artwork_get(artwork_id: int) -> Artwork:
    return artwork_list().get(pk=artwork_id)


def artwork_label_history(artwork: Artwork) -> QuerySet[GenreLabel]:
    """Every genre label the artwork has had, oldest first."""
    return artwork.genre_labels.select_related("genre", "user").order_by("created_at", "id")


def artist_list() -> QuerySet[Artist]:
    return Artist.objects.annotate(artwork_count=Count("artworks")).order_by("name")


def style_list() -> QuerySet[Style]:
    return Style.objects.annotate(artwork_count=Count("artworks")).order_by("name")


def genre_list() -> QuerySet[Genre]:
    return Genre.objects.annotate(artwork_count=Count("artworks")).order_by("name")


def catalog_counts() -> dict[str, int]:
    return {
        "artworks": Artwork.objects.count(),
        "artists": Artist.objects.count(),
        "styles": Style.objects.count(),
        "genres": Genre.objects.count(),
        "without_genre": Artwork.objects.filter(genre__isnull=True).count(),
        "with_image": Artwork.objects.exclude(image="").count(),
    }


def catalog_has_synthetic() -> bool:
    return Artwork.objects.filter(is_synthetic=True).exists()
