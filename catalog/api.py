"""REST API for the catalog (read-only here; writes go through labelling/generation)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog import selectors
from catalog.filters import ArtworkFilter
from catalog.models import Artist, Artwork, Genre, GenreLabel, LabelSource, Split, Style


class DetailSerializer(serializers.Serializer):
    """An error (or a note) in one sentence: `{"detail": "..."}`."""

    detail = serializers.CharField()


# Lookups by name or slug: anything but a slash or a control character (a NUL byte cannot
# even be sent to PostgreSQL: it would be a 500, this makes it a 404).
NAME_LOOKUP = r"[^/\x00-\x1f\x7f]+"


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
)
class _ReasonField(serializers.JSONField):
    """One sentence, or a list of them."""


class RefusalSerializer(serializers.Serializer):
    """A refusal: `detail` says why (a sentence or a list), and each refused field of the
    request maps to its reasons (`config.openapi` adds that map to the schema)."""

    detail = _ReasonField(required=False)


# Refusals name the field (or "detail"/"non_field_errors") with a list of reasons.
ERROR_400 = OpenApiResponse(RefusalSerializer, description="Refused, with the reason per field.")


class ArtworkFilterParamsSerializer(serializers.Serializer):
    """The catalog filters other endpoints accept to restrict themselves to a
    sub-collection, for the schema only: `catalog.filters.ArtworkFilter` (the one filter
    set of the pages and the API) validates them."""

    artist = serializers.CharField(required=False, help_text="artist slug")
    style = serializers.CharField(required=False, help_text="style name")
    genre = serializers.CharField(required=False, help_text="genre name")
    has_genre = serializers.BooleanField(required=False, allow_null=True, default=None)
    label_source = serializers.ChoiceField(choices=LabelSource.choices, required=False)
    has_image = serializers.BooleanField(required=False, allow_null=True, default=None)
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    year_min = serializers.IntegerField(required=False)
    year_max = serializers.IntegerField(required=False)


class ArtistSerializer(serializers.ModelSerializer):
    artwork_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Artist
        fields = ["id", "slug", "name", "class_index", "artwork_count"]


class StyleSerializer(serializers.ModelSerializer):
    artwork_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Style
        fields = ["id", "name", "display_name", "folder", "class_index", "artwork_count"]


class GenreSerializer(serializers.ModelSerializer):
    artwork_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Genre
        fields = ["id", "name", "display_name", "class_index", "artwork_count"]


class ArtworkSerializer(serializers.ModelSerializer):
    artist = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    artist_name = serializers.CharField(source="artist.name", read_only=True)
    style = serializers.SlugRelatedField(slug_field="name", read_only=True)
    genre = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    image = serializers.ImageField(read_only=True, use_url=True, allow_null=True)
    thumbnail = serializers.ImageField(read_only=True, use_url=True, allow_null=True)

    class Meta:
        model = Artwork
        fields = [
            "id",
            "path",
            "title",
            "year",
            "artist",
            "artist_name",
            "style",
            "genre",
            "genre_source",
            "genre_confidence",
            "label_version",
            "caption",
            "caption_source",
            "image",
            "thumbnail",
            "image_width",
            "image_height",
            "style_split",
            "genre_split",
            "artist_split",
            "is_synthetic",
        ]

    def to_representation(self, instance):
        """The declared fields' output, built directly (tests compare the two).

        A search or a catalog page serialises 50 artworks per request, and DRF's field by
        field walk cost ~4 ms of a ~30 ms search request here; this takes a fraction.
        `artist`, `style` and `genre` should come with the artwork (`with_labels`).
        """
        request = self.context.get("request")

        def url(file):
            if not file:
                return None
            return request.build_absolute_uri(file.url) if request is not None else file.url

        genre = instance.genre
        confidence = instance.genre_confidence
        return {
            "id": instance.id,
            "path": instance.path,
            "title": instance.title,
            "year": instance.year,
            "artist": instance.artist.slug,
            "artist_name": instance.artist.name,
            "style": instance.style.name,
            "genre": None if genre is None else genre.name,
            "genre_source": instance.genre_source,
            "genre_confidence": None if confidence is None else float(confidence),
            "label_version": instance.label_version,
            "caption": instance.caption,
            "caption_source": instance.caption_source,
            "image": url(instance.image),
            "thumbnail": url(instance.thumbnail),
            "image_width": instance.image_width,
            "image_height": instance.image_height,
            "style_split": instance.style_split,
            "genre_split": instance.genre_split,
            "artist_split": instance.artist_split,
            "is_synthetic": instance.is_synthetic,
        }


class GenreLabelSerializer(serializers.ModelSerializer):
    """One label of the history. `undone` (with `retracted_at`) marks a label an undone
    bulk operation retracted, as the pages do: it stays in the history but no longer
    counts. Model labels say what made them: `sources`, `model_versions`, `scores` (the
    probability of every genre) and `source_scores` (each source's own)."""

    genre = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    user = serializers.CharField(
        source="user.username", read_only=True, default=None, allow_null=True
    )
    undone = serializers.BooleanField(source="is_undone", read_only=True)
    sources = serializers.ListField(child=serializers.CharField(), read_only=True)
    model_versions = serializers.DictField(child=serializers.CharField(), read_only=True)
    scores = serializers.DictField(child=serializers.FloatField(), read_only=True, allow_null=True)
    source_scores = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField()),
        read_only=True,
        allow_null=True,
    )

    class Meta:
        model = GenreLabel
        fields = [
            "id",
            "genre",
            "source",
            "confidence",
            "model_id",
            "user",
            "note",
            "created_at",
            "undone",
            "retracted_at",
            "batch_id",
            "sources",
            "model_versions",
            "scores",
            "source_scores",
        ]


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
