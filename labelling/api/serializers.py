"""Serializers of the curators' API: corrections, the review queue, bulk changes."""

from rest_framework import serializers

from catalog.api.filters import filter_params_serializer
from catalog.api.serializers import ArtworkSerializer, GenreLabelSerializer
from catalog.models import Genre
from labelling.filters import REVIEW_FILTERS, ReviewFilter
from labelling.models import BulkOperation
from labelling.services import BULK_MAX


class GenreNameField(serializers.SlugRelatedField):
    """A genre by name. A NUL character is refused as not found (PostgreSQL cannot even
    compare text holding one: it would be a 500)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", ""))
        return super().to_internal_value(data)


def _genre_field(**kwargs):
    return GenreNameField(slug_field="name", queryset=Genre.objects.all(), **kwargs)


# Ids are 64-bit; label versions are PostgreSQL integers. Larger numbers are refused
# (400) before they reach the database, which cannot even compare with them.
ID_MAX = 2**63 - 1
VERSION_MAX = 2**31 - 1
QUEUE_LIMIT_MAX = 500


class CorrectSerializer(serializers.Serializer):
    genre = _genre_field(allow_null=True)
    expected_version = serializers.IntegerField(min_value=0, max_value=VERSION_MAX)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class VersionSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(min_value=0, max_value=VERSION_MAX)


class RevertSerializer(VersionSerializer):
    label_id = serializers.IntegerField(min_value=1, max_value=ID_MAX)


class BulkSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=BulkOperation.Action.choices)
    genre = _genre_field(required=False, allow_null=True)
    artwork_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        required=False,
        max_length=BULK_MAX,
    )
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=200),
        required=False,
        help_text=f"any of {', '.join(REVIEW_FILTERS)}",
    )
    preview = serializers.BooleanField(default=True)
    expected_versions = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=VERSION_MAX),
        required=False,
        help_text="artwork id -> its label_version in the preview: an artwork changed "
        "since (or not previewed) is left alone and listed in `conflicts`",
    )

    def validate_expected_versions(self, versions):
        try:
            out = {int(k): v for k, v in versions.items()}
        except ValueError:
            raise serializers.ValidationError("keys must be artwork ids") from None
        if len(out) > BULK_MAX or any(not 1 <= k <= ID_MAX for k in out):
            raise serializers.ValidationError(f"at most {BULK_MAX} artwork ids")
        return out

    def validate_filters(self, filters):
        unknown = sorted(set(filters) - set(REVIEW_FILTERS))
        if unknown:
            # An ignored misspelt filter would widen a bulk change to everything.
            raise serializers.ValidationError(
                f"unknown filter(s) {', '.join(unknown)}; use {', '.join(REVIEW_FILTERS)}"
            )
        return filters

    def validate(self, attrs):
        if attrs["action"] == BulkOperation.Action.RELABEL and "genre" not in attrs:
            raise serializers.ValidationError({"genre": "relabel needs a genre (or null)"})
        if not attrs.get("artwork_ids") and not attrs.get("filters"):
            raise serializers.ValidationError("Give artwork_ids or filters.")
        return attrs


class ReviewLimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, default=50, min_value=1, max_value=QUEUE_LIMIT_MAX
    )


ReviewFilterParamsSerializer = filter_params_serializer(
    ReviewFilter,
    "ReviewFilterParamsSerializer",
    exclude=("q",),
    doc="The review filters: the catalog's plus the label's confidence range.",
)


class ReviewQuerySerializer(ReviewLimitSerializer, ReviewFilterParamsSerializer):
    """The review queue's query parameters (schema); `selectors.review_candidates`
    validates the filters (`labelling.filters.ReviewFilter`)."""


class ReviewItemSerializer(serializers.Serializer):
    artwork = ArtworkSerializer()
    confidence = serializers.FloatField(allow_null=True)
    neighbour_disagreement = serializers.FloatField(allow_null=True)
    neighbour_genre = serializers.CharField(allow_null=True)
    model_probability = serializers.FloatField(
        allow_null=True,
        help_text="the genre model's calibrated probability of the current genre",
    )
    model_genre = serializers.CharField(
        allow_null=True, help_text="the genre model's own pick, when it differs"
    )
    priority = serializers.FloatField()


class LabelResultSerializer(serializers.Serializer):
    artwork = ArtworkSerializer()
    label = GenreLabelSerializer()


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    current_version = serializers.IntegerField()
    current_genre = serializers.CharField(allow_null=True)


class BulkChangeSerializer(serializers.Serializer):
    artwork_id = serializers.IntegerField()
    title = serializers.CharField()
    old = serializers.CharField(allow_null=True)
    new = serializers.CharField(allow_null=True)
    changes_genre = serializers.BooleanField(
        help_text="false: the genre stays, the label becomes a curator's"
    )
    label_version = serializers.IntegerField(
        help_text="send it back in expected_versions when applying"
    )


class BulkPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="artworks that would get a curator label")
    genre_changes = serializers.IntegerField(help_text="of them, artworks whose genre changes")
    confirmations = serializers.IntegerField(
        help_text="of them, artworks whose genre stays (confirmed as a curator's)"
    )
    changes = BulkChangeSerializer(many=True)


class BulkConflictSerializer(serializers.Serializer):
    artwork_id = serializers.IntegerField()
    title = serializers.CharField()
    expected_version = serializers.IntegerField(allow_null=True)
    current_version = serializers.IntegerField()
    current_genre = serializers.CharField(allow_null=True)
    detail = serializers.CharField()


class BulkAppliedSerializer(serializers.Serializer):
    operation = serializers.UUIDField()
    count = serializers.IntegerField()
    conflicts = BulkConflictSerializer(many=True)


class BulkUndoneSerializer(serializers.Serializer):
    operation = serializers.UUIDField()
    restored = serializers.IntegerField()
