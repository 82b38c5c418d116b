"""REST API for the catalog (read-only here; writes go through labelling/generation)."""

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog import selectors
from catalog.api.serializers import (
    ArtistSerializer,
    ArtworkSerializer,
    GenreLabelSerializer,
    GenreSerializer,
    StyleSerializer,
)
from catalog.filters import ArtworkFilter

# Lookups by name or slug: anything but a slash or a control character (a NUL byte cannot
# even be sent to PostgreSQL: it would be a 500, this makes it a 404).
NAME_LOOKUP = r"[^/\x00-\x1f\x7f]+"


class ArtworkViewSet(viewsets.ReadOnlyModelViewSet):
    """Artworks with the catalog page's filters (artist, style, genre, has_genre, ...)."""

    serializer_class = ArtworkSerializer
    filterset_class = ArtworkFilter
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.artwork_list()

    @extend_schema(responses=GenreLabelSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def labels(self, request, pk=None):
        """The artwork's full genre-label history, oldest first."""
        history = selectors.artwork_label_history(self.get_object())
        return Response(GenreLabelSerializer(history, many=True).data)


class ArtistViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ArtistSerializer
    lookup_field = "slug"
    lookup_value_regex = NAME_LOOKUP

    def get_queryset(self):
        return selectors.artist_list()


class StyleViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = StyleSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_LOOKUP
    pagination_class = None

    def get_queryset(self):
        return selectors.style_list()


class GenreViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = GenreSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_LOOKUP
    pagination_class = None

    def get_queryset(self):
        return selectors.genre_list()
