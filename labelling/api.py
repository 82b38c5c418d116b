"""REST API for curators: the review queue, corrections, accept, revert, bulk with undo."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import (
    ERROR_400,
    ArtworkFilterParamsSerializer,
    ArtworkSerializer,
    DetailSerializer,
    GenreLabelSerializer,
)
from catalog.filters import ArtworkFilter
from catalog.models import Artwork, Genre
from labelling import selectors, services
from labelling.models import BulkOperation


class IsCurator(permissions.BasePermission):
    message = "Only curators may change genre labels."

    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("catalog.curate_genre"))


def _genre_field(**kwargs):
    return serializers.SlugRelatedField(slug_field="name", queryset=Genre.objects.all(), **kwargs)


# Ids are 64-bit; label versions are PostgreSQL integers. Larger numbers are refused
# (400) before they reach the database, which cannot even compare with them.
ID_MAX = 2**63 - 1
VERSION_MAX = 2**31 - 1
BULK_MAX = 5000
QUEUE_LIMIT_MAX = 500
# What a bulk change or the queue may be restricted by: the catalog filters plus the
# model's confidence range (see `selectors.review_candidates`).
REVIEW_FILTERS = (*ArtworkFilter.base_filters, "confidence_min", "confidence_max")


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


class ReviewQuerySerializer(ReviewLimitSerializer, ArtworkFilterParamsSerializer):
    """The review queue's query parameters (schema); `selectors.review_candidates`
    validates the filters and the confidence range."""

    confidence_min = serializers.FloatField(required=False, min_value=0, max_value=1)
    confidence_max = serializers.FloatField(required=False, min_value=0, max_value=1)


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


def _result(artwork_id: int, label, request) -> Response:
    artwork = Artwork.objects.select_related("artist", "style", "genre").get(pk=artwork_id)
    return Response(
        LabelResultSerializer(
            {"artwork": artwork, "label": label}, context={"request": request}
        ).data
    )


def _label_write_schema(body: type[serializers.Serializer]):
    return extend_schema(
        request=body,
        responses={
            200: LabelResultSerializer,
            400: ERROR_400,
            404: None,
            409: OpenApiResponse(ConflictSerializer, description="The artwork changed since."),
        },
    )


def _conflict(exc: services.GenreConflict) -> Response:
    return Response(
        {
            "detail": str(exc),
            "current_version": exc.current_version,
            "current_genre": exc.current_genre,
        },
        status=status.HTTP_409_CONFLICT,
    )


class ReviewQueueView(APIView):
    """Artworks most likely mislabelled first (low confidence, neighbours disagree)."""

    permission_classes = [IsCurator]

    @extend_schema(
        parameters=[ReviewQuerySerializer],
        responses={200: ReviewItemSerializer(many=True), 400: ERROR_400},
    )
    def get(self, request):
        params = request.query_params.dict()
        query = ReviewLimitSerializer(
            data={"limit": params.pop("limit")} if "limit" in params else {}
        )
        query.is_valid(raise_exception=True)
        try:
            items = selectors.review_queue(params, limit=query.validated_data["limit"])
        except selectors.ReviewFilterError as exc:
            return Response(exc.errors, status=400)
        rows = [
            {
                "artwork": it.artwork,
                "confidence": it.confidence,
                "neighbour_disagreement": it.disagreement,
                "neighbour_genre": it.neighbour_genre,
                "model_probability": it.model_probability,
                "model_genre": it.model_genre,
                "priority": round(it.priority, 4),
            }
            for it in items
        ]
        return Response(ReviewItemSerializer(rows, many=True, context={"request": request}).data)


class _CuratorLabelWrite(APIView):
    """One curator write on one artwork: validate, call the service, answer alike.

    A concurrent change is a 409 with the current version and genre; an impossible
    request (nothing to accept, a label of another artwork) is a 400 with the reason.
    """

    permission_classes = [IsCurator]
    body_serializer: type[serializers.Serializer]

    def write(self, request, pk: int, data: dict):
        raise NotImplementedError

    def post(self, request, pk: int):
        get_object_or_404(Artwork, pk=pk)
        body = self.body_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            label = self.write(request, pk, body.validated_data)
        except services.GenreConflict as exc:
            return _conflict(exc)
        except services.GenreLabel.DoesNotExist:
            return Response({"label_id": ["not a label of this artwork"]}, status=400)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        return _result(pk, label, request)


@_label_write_schema(CorrectSerializer)
class GenreCorrectView(_CuratorLabelWrite):
    """Set an artwork's genre as a curator (null clears it); 409 on a concurrent change."""

    body_serializer = CorrectSerializer

    def write(self, request, pk, data):
        return services.genre_label_correct(
            pk,
            data["genre"],
            user=request.user,
            expected_version=data["expected_version"],
            note=data["note"],
        )


@_label_write_schema(VersionSerializer)
class GenreAcceptView(_CuratorLabelWrite):
    """Confirm the current suggestion as a curator."""

    body_serializer = VersionSerializer

    def write(self, request, pk, data):
        return services.genre_suggestion_accept(
            pk, user=request.user, expected_version=data["expected_version"]
        )


@_label_write_schema(RevertSerializer)
class GenreRevertView(_CuratorLabelWrite):
    """Make an earlier label of the artwork current again (recorded as a new label)."""

    body_serializer = RevertSerializer

    def write(self, request, pk, data):
        return services.genre_label_revert(
            pk, data["label_id"], user=request.user, expected_version=data["expected_version"]
        )


class BulkView(APIView):
    """Bulk relabel / accept over ids or a filter: preview first, then apply (undoable)."""

    permission_classes = [IsCurator]

    @extend_schema(
        request=BulkSerializer,
        responses={
            200: OpenApiResponse(BulkPreviewSerializer, description="The preview."),
            201: OpenApiResponse(BulkAppliedSerializer, description="Applied (undoable)."),
            400: ERROR_400,
        },
    )
    def post(self, request):
        body = BulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data.get("artwork_ids"):
            artworks = Artwork.objects.filter(pk__in=data["artwork_ids"])
        else:
            try:
                artworks = selectors.review_candidates(data["filters"])
            except selectors.ReviewFilterError as exc:
                return Response({"filters": exc.errors}, status=400)
        artworks = list(artworks.select_related("genre")[: BULK_MAX + 1])
        if len(artworks) > BULK_MAX:
            return Response(
                {"filters": [f"more than {BULK_MAX} artworks match; narrow the filters"]},
                status=400,
            )
        changes = services.bulk_plan(artworks, data["action"], data.get("genre"))
        if data["preview"]:
            counts = services.bulk_plan_counts(changes)
            preview = {
                "count": counts["total"],
                "genre_changes": counts["genre"],
                "confirmations": counts["confirm"],
                "changes": [
                    {
                        "artwork_id": c.artwork.pk,
                        "title": c.artwork.title,
                        "old": c.old.name if c.old else None,
                        "new": c.new.name if c.new else None,
                        "changes_genre": c.changes_genre,
                        "label_version": c.artwork.label_version,
                    }
                    for c in changes
                ],
            }
            return Response(BulkPreviewSerializer(preview).data)
        expected = data.get("expected_versions")
        targets = [c.artwork.pk for c in changes]
        if expected is not None:  # previewed ones changed since are conflicts, not skipped
            targets = sorted(set(targets) | set(expected))
        op = services.bulk_apply(
            targets,
            data["action"],
            user=request.user,
            genre=data.get("genre"),
            expected_versions=expected,
        )
        return Response(
            BulkAppliedSerializer(
                {"operation": op.pk, "count": op.count, "conflicts": op.conflicts}
            ).data,
            status=status.HTTP_201_CREATED,
        )


class BulkUndoView(APIView):
    """Undo a bulk change: its labels are retracted, the previous genres come back."""

    permission_classes = [IsCurator]

    @extend_schema(
        request=None,
        responses={
            200: BulkUndoneSerializer,
            404: None,
            409: OpenApiResponse(DetailSerializer, description="Already undone, or superseded."),
        },
    )
    def post(self, request, op_id):
        op = get_object_or_404(BulkOperation, pk=op_id)
        try:
            restored = services.bulk_undo(op, user=request.user)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(BulkUndoneSerializer({"operation": op.pk, "restored": restored}).data)
