"""Serializers of the catalog API, and the error shapes every app's API answers with."""

from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from catalog.api.filters import filter_params_serializer
from catalog.filters import ArtworkFilter
from catalog.models import Artist, Artwork, Genre, GenreLabel, Style


class DetailSerializer(serializers.Serializer):
    """An error (or a note) in one sentence: `{"detail": "..."}`."""

    detail = serializers.CharField()


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


# The catalog filters other endpoints accept to restrict themselves to a sub-collection,
# for the schema only: `catalog.filters.ArtworkFilter` validates them.
ArtworkFilterParamsSerializer = filter_params_serializer(
    ArtworkFilter,
    "ArtworkFilterParamsSerializer",
    exclude=("q",),
    doc="The catalog filters that restrict an endpoint to a sub-collection.",
)


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
