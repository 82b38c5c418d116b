"""Serializers of the retrieval API: search, similar artworks, the index's status."""

from django.conf import settings
from rest_framework import serializers

from catalog.api.serializers import ArtworkFilterParamsSerializer, ArtworkSerializer
from catalog.uploads import ImageRefused, image_upload_check


class SearchPromptSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, max_length=500)
    k = serializers.IntegerField(
        required=False, default=20, min_value=1, max_value=settings.RETRIEVAL_MAX_K
    )


class SearchQuerySerializer(SearchPromptSerializer):
    """What a search validates: the prompt and/or an image, and k (the catalog filters are
    validated by `ArtworkFilter` in the selector)."""

    # A FileField: `image_upload_check` sniffs the content and says why a file is refused.
    image = serializers.FileField(required=False, help_text="JPEG, PNG, WebP, GIF or BMP")

    def validate_image(self, upload):
        try:
            return image_upload_check(upload)
        except ImageRefused as exc:
            raise serializers.ValidationError(f"Image refused: {exc}.") from exc

    def validate(self, attrs):
        if not attrs.get("q", "").strip() and attrs.get("image") is None:
            raise serializers.ValidationError("Give a prompt (q) or an image.")
        return attrs


class SearchTextSerializer(SearchPromptSerializer, ArtworkFilterParamsSerializer):
    """The query parameters of a text search (schema)."""


class SearchUploadSerializer(SearchQuerySerializer, ArtworkFilterParamsSerializer):
    """The search-by-image form (schema): prompt, image, k and the catalog filters."""


class SearchHitSerializer(serializers.Serializer):
    score = serializers.FloatField()
    slots = serializers.DictField(child=serializers.FloatField())
    artwork = ArtworkSerializer()


SLOT_CHOICES = [("artist", "artist"), ("style", "style"), ("genre", "genre")]


class RecognisedSerializer(serializers.Serializer):
    slot = serializers.ChoiceField(choices=SLOT_CHOICES)
    name = serializers.CharField()
    text = serializers.CharField()
    evidence = serializers.CharField(help_text="why these words were read as this name")


class UnknownNameSerializer(serializers.Serializer):
    slot = serializers.ChoiceField(choices=SLOT_CHOICES)
    text = serializers.CharField(help_text="the words of the prompt")
    message = serializers.CharField()


class SearchResponseSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    content = serializers.CharField(help_text="the prompt less the names it recognised")
    recognised = RecognisedSerializer(many=True)
    unknown = UnknownNameSerializer(
        many=True,
        help_text="names the prompt gives that the catalog lacks (searched as words)",
    )
    notes = serializers.ListField(
        child=serializers.CharField(),
        help_text="what the search did about the prompt (e.g. a style the named artist "
        "never painted in, dropped to follow the artist)",
    )
    model_id = serializers.CharField()
    is_tiny = serializers.BooleanField()
    index_version = serializers.CharField()
    restricted_to = serializers.IntegerField(
        allow_null=True, help_text="size of the sub-collection searched, if filtered"
    )
    timings_ms = serializers.DictField(child=serializers.FloatField())
    results = SearchHitSerializer(many=True)


class SimilarQuerySerializer(ArtworkFilterParamsSerializer):
    k = serializers.IntegerField(required=False, default=12, min_value=1, max_value=100)


class SimilarHitSerializer(serializers.Serializer):
    score = serializers.FloatField()
    artwork = ArtworkSerializer()


class IndexStatusSerializer(serializers.Serializer):
    built = serializers.BooleanField()
    space = serializers.CharField(required=False)
    model_id = serializers.CharField(required=False)
    is_tiny = serializers.BooleanField(required=False)
    artworks = serializers.IntegerField(required=False)
    embedded = serializers.IntegerField(required=False)
    pgvector_index = serializers.CharField(required=False, allow_null=True)
    version = serializers.CharField(required=False)
    kind = serializers.CharField(required=False)
    indexed = serializers.IntegerField(required=False)
    meta = serializers.DictField(required=False)
    catalog_id = serializers.CharField(required=False)
    problem = serializers.CharField(
        required=False, help_text="why the index on disk is not served (another catalog's)"
    )
