"""REST API for curators: the review queue, corrections, accept, revert, bulk with undo."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import ERROR_400, DetailSerializer
from catalog.models import Artwork
from labelling import selectors, services
from labelling.api.serializers import (
    BulkAppliedSerializer,
    BulkPreviewSerializer,
    BulkSerializer,
    BulkUndoneSerializer,
    ConflictSerializer,
    CorrectSerializer,
    LabelResultSerializer,
    RevertSerializer,
    ReviewItemSerializer,
    ReviewLimitSerializer,
    ReviewQuerySerializer,
    VersionSerializer,
)
from labelling.models import BulkOperation


class IsCurator(permissions.BasePermission):
    message = "Only curators may change genre labels."

    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("catalog.curate_genre"))


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
        try:
            changes = services.bulk_plan_select(
                data["action"],
                data.get("genre"),
                artwork_ids=data.get("artwork_ids"),
                filters=data.get("filters"),
            )
        except selectors.ReviewFilterError as exc:
            return Response({"filters": exc.errors}, status=400)
        except services.BulkTooLarge as exc:
            return Response({"filters": [str(exc)]}, status=400)
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
