"""REST API for generation: requests, their live state and results, the LoRA cache."""

from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from catalog.api.serializers import ERROR_400, RefusalSerializer
from generation import selectors, services
from generation.api.serializers import (
    GenerationCreateSerializer,
    GenerationSerializer,
    LoraSerializer,
)
from generation.models import Generation

# What `_error` answers: 400 refused (reasons per field), 409 wrong state, 429 queue full.
REFUSALS = {
    400: ERROR_400,
    409: OpenApiResponse(
        RefusalSerializer, description="Not in a state that allows this (reason in detail)."
    ),
    429: OpenApiResponse(RefusalSerializer, description="Your queue is full (GEN_MAX_QUEUED)."),
}


def _error(exc: services.GenerationRequestError) -> Response:
    if isinstance(exc, services.GenerationLimitError):
        code = status.HTTP_429_TOO_MANY_REQUESTS
    elif isinstance(exc, services.GenerationStateError):
        code = status.HTTP_409_CONFLICT
    else:
        code = status.HTTP_400_BAD_REQUEST
    return Response(exc.errors, status=code)


class GenerationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Request a generation (signed-in users), follow its job, read its result.

    Lists show every finished result plus your own requests (staff see all).
    """

    serializer_class = GenerationSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly]
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.generation_visible(self.request.user)

    @extend_schema(
        request=GenerationCreateSerializer, responses={202: GenerationSerializer, **REFUSALS}
    )
    def create(self, request, *args, **kwargs):
        query = GenerationCreateSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        try:
            generation = services.generation_request(request.user, query.to_params())
        except services.GenerationRequestError as exc:
            return _error(exc)
        data = GenerationSerializer(generation, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    def _controlled(self, request, pk) -> Generation:
        # DRF's get_object_or_404: a malformed id is a 404, not a ValueError.
        generation = get_object_or_404(self.get_queryset(), pk=pk)
        if not selectors.generation_can_control(request.user, generation):
            raise Http404
        return generation

    def _respond(self, request, call, pk, code=status.HTTP_200_OK) -> Response:
        try:
            generation = call(self._controlled(request, pk))
        except services.GenerationRequestError as exc:
            return _error(exc)
        return Response(GenerationSerializer(generation, context={"request": request}).data, code)

    @extend_schema(request=None, responses={200: GenerationSerializer, 404: None, **REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def cancel(self, request, pk=None):
        """Cancel: a queued job at once, a running one at its next step."""
        return self._respond(request, services.generation_cancel, pk)

    @extend_schema(request=None, responses={202: GenerationSerializer, 404: None, **REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def retry(self, request, pk=None):
        """Run a failed or cancelled generation again (training resumes from checkpoints)."""
        return self._respond(
            request,
            lambda g: services.generation_retry(g, request.user),
            pk,
            status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=None, responses={202: GenerationSerializer, 404: None, **REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def rerun(self, request, pk=None):
        """A new generation with exactly the same parameters, seed and retrieval sets."""
        return self._respond(
            request,
            lambda g: services.generation_rerun(g, request.user),
            pk,
            status.HTTP_202_ACCEPTED,
        )


class LoraViewSet(viewsets.ReadOnlyModelViewSet):
    """The LoRA cache: entries with size, uses and last use; downloads for signed-in users.

    Lists the LoRAs of finished, public results and your own requests (staff: all). The
    kohya download is named `<name>.safetensors`, the name the PNGs' `<lora:name:w>` tags
    and "Lora hashes" use; its `ss_output_name` is that name too.
    """

    serializer_class = LoraSerializer
    lookup_field = "key"
    lookup_value_regex = "[0-9a-f]{64}"  # a SHA-256 (`services.lora_key`)
    permission_classes = [permissions.IsAuthenticatedOrReadOnly]

    def get_queryset(self):
        return selectors.lora_visible(self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("as", str, enum=["diffusers", "kohya"])],
        responses={(200, "application/octet-stream"): bytes, 404: None, **REFUSALS},
    )
    @action(detail=True, methods=["get"], permission_classes=[permissions.IsAuthenticated])
    def download(self, request, key=None):
        """The LoRA as safetensors: diffusers (as trained) or kohya (A1111/ComfyUI names)."""
        entry = self.get_object()
        fmt = request.query_params.get("as", "diffusers")
        try:
            path = services.lora_export(entry, fmt)
        except services.GenerationRequestError as exc:
            return _error(exc)
        return FileResponse(
            open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
            as_attachment=True,
            filename=services.lora_download_name(entry, fmt),
        )
