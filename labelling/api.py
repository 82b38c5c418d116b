"""REST API for curators: the review queue, corrections, accept, revert, bulk with undo."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import ArtworkSerializer, GenreLabelSerializer
from catalog.models import Artwork, Genre
from labelling import selectors, services
from labelling.models import BulkOperation


class IsCurator(permissions.BasePermission):
    message = "Only curators may change genre labels."

    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("catalog.curate_genre"))


def _genre_field(**kwargs):
    return serializers.SlugRelatedField(slug_field="name", queryset=Genre.objects.all(), **kwargs)


class CorrectSerializer(serializers.Serializer):
    genre = _genre_field(allow_null=True)
    expected_version = serializers.IntegerField(min_value=0)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class VersionSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(min_value=0)


class RevertSerializer(VersionSerializer):
    label_id = serializers.IntegerField()


class BulkSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=BulkOperation.Action.choices)
    genre = _genre_field(required=False, allow_null=True)
    artwork_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=5000
    )
    filters = serializers.DictField(required=False)
    preview = serializers.BooleanField(default=True)

    def validate(self, attrs):
        if attrs["action"] == BulkOperation.Action.RELABEL and "genre" not in attrs:
            raise serializers.ValidationError({"genre": "relabel needs a genre (or null)"})
        if not attrs.get("artwork_ids") and not attrs.get("filters"):
            raise serializers.ValidationError("Give artwork_ids or filters.")
        return attrs


def _result(artwork_id: int, label, request) -> Response:
    artwork = Artwork.objects.select_related("artist", "style", "genre").get(pk=artwork_id)
    return Response(
        {
            "artwork": ArtworkSerializer(artwork, context={"request": request}).data,
            "label": GenreLabelSerializer(label).data,
        }
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

    def get(self, request):
        params = request.query_params.dict()
        try:
            limit = min(max(int(params.pop("limit", 50)), 1), 500)
        except ValueError:
            return Response({"limit": ["must be an integer"]}, status=400)
        try:
            items = selectors.review_queue(params, limit=limit)
        except selectors.ReviewFilterError as exc:
            return Response(exc.errors, status=400)
        return Response(
            [
                {
                    "artwork": ArtworkSerializer(it.artwork, context={"request": request}).data,
                    "confidence": it.confidence,
                    "neighbour_disagreement": it.disagreement,
                    "neighbour_genre": it.neighbour_genre,
                    "priority": round(it.priority, 4),
                }
                for it in items
            ]
        )


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


@extend_schema(request=CorrectSerializer)
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


@extend_schema(request=VersionSerializer)
class GenreAcceptView(_CuratorLabelWrite):
    """Confirm the current suggestion as a curator."""

    body_serializer = VersionSerializer

    def write(self, request, pk, data):
        return services.genre_suggestion_accept(
            pk, user=request.user, expected_version=data["expected_version"]
        )


@extend_schema(request=RevertSerializer)
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

    @extend_schema(request=BulkSerializer)
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
        artworks = list(artworks.select_related("genre")[:5000])
        changes = services.bulk_plan(artworks, data["action"], data.get("genre"))
        if data["preview"]:
            return Response(
                {
                    "count": len(changes),
                    "changes": [
                        {
                            "artwork_id": c.artwork.pk,
                            "title": c.artwork.title,
                            "old": c.old.name if c.old else None,
                            "new": c.new.name if c.new else None,
                        }
                        for c in changes
                    ],
                }
            )
        op = services.bulk_apply(
            [c.artwork.pk for c in changes],
            data["action"],
            user=request.user,
            genre=data.get("genre"),
        )
        return Response(
            {"operation": str(op.pk), "count": op.count}, status=status.HTTP_201_CREATED
        )


class BulkUndoView(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None)
    def post(self, request, op_id):
        op = get_object_or_404(BulkOperation, pk=op_id)
        try:
            restored = services.bulk_undo(op, user=request.user)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response({"operation": str(op.pk), "restored": restored})
