"""REST API for retrieval: search, similar artworks, index status and rebuilds."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import ERROR_400, DetailSerializer
from catalog.filters import SUBCOLLECTION_FILTERS
from catalog.selectors import artwork_get
from config.parsers import JSONParser
from jobs.api.serializers import JobSerializer
from retrieval import selectors, services
from retrieval.api.serializers import (
    IndexStatusSerializer,
    SearchHitSerializer,
    SearchQuerySerializer,
    SearchResponseSerializer,
    SearchTextSerializer,
    SearchUploadSerializer,
    SimilarHitSerializer,
    SimilarQuerySerializer,
)


def search_payload(result, request) -> dict:
    parsed = result.parsed
    return {
        "prompt": parsed.prompt if parsed else "",
        "content": parsed.content if parsed else "",
        "recognised": [
            {"slot": m.slot, "name": m.name, "text": m.text, "evidence": m.evidence}
            for m in parsed.matches
        ]
        if parsed
        else [],
        "unknown": [{"slot": u.slot, "text": u.text, "message": u.message} for u in parsed.unknown]
        if parsed
        else [],
        "notes": list(parsed.notes) if parsed else [],
        "model_id": result.model_id,
        "is_tiny": result.is_tiny,
        "index_version": result.index_version,
        "restricted_to": result.restricted_to,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "results": SearchHitSerializer(result.hits, many=True, context={"request": request}).data,
    }


def _filters(data) -> dict:
    return {n: data.get(n) for n in SUBCOLLECTION_FILTERS if data.get(n) not in (None, "")}


def _run_search(request, data):
    query = SearchQuerySerializer(data=data)
    query.is_valid(raise_exception=True)
    try:
        result = selectors.artwork_search(
            query.validated_data.get("q", ""),
            k=query.validated_data["k"],
            filters=_filters(data),
            image=query.validated_data.get("image"),
        )
    except selectors.SearchInputError as exc:
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    except services.RetrievalUnavailable as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response(search_payload(result, request))


SEARCH_RESPONSES = {
    200: SearchResponseSerializer,
    400: ERROR_400,
    503: OpenApiResponse(DetailSerializer, description="No search index yet."),
}


class SearchView(APIView):
    """Text-to-artwork search over the fused index (GET), or by image upload (POST)."""

    permission_classes = [permissions.AllowAny]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(parameters=[SearchTextSerializer], responses=SEARCH_RESPONSES)
    def get(self, request):
        return _run_search(request, request.query_params)

    @extend_schema(
        request={"multipart/form-data": SearchUploadSerializer}, responses=SEARCH_RESPONSES
    )
    def post(self, request):
        # Read, never copied: copying deep-copies an upload spooled to a temp file, which
        # cannot be pickled (a 500 for every image over FILE_UPLOAD_MAX_MEMORY_SIZE).
        return _run_search(request, request.data)


class SimilarView(APIView):
    """Artworks nearest to one artwork (pgvector on PostgreSQL, FAISS elsewhere)."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[SimilarQuerySerializer],
        responses={
            200: SimilarHitSerializer(many=True),
            400: ERROR_400,
            404: None,
            503: SEARCH_RESPONSES[503],
        },
    )
    def get(self, request, pk: int):
        artwork = get_object_or_404(selectors.Artwork, pk=pk)
        query = SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            pairs = selectors.artwork_similar(
                artwork_get(artwork.pk),
                k=query.validated_data["k"],
                filters=_filters(request.query_params),
            )
        except selectors.SearchInputError as exc:
            return Response(exc.errors, status=400)
        except services.RetrievalUnavailable as exc:  # e.g. an index of another catalog
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        hits = [{"score": s, "artwork": a} for a, s in pairs]
        return Response(SimilarHitSerializer(hits, many=True, context={"request": request}).data)


class IndexView(APIView):
    """The search index's status (GET); an admin queues a rebuild (POST)."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [permissions.IsAdminUser()]
        return [permissions.AllowAny()]

    @extend_schema(responses=IndexStatusSerializer)
    def get(self, request):
        return Response(selectors.index_status())

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request):
        job = services.index_rebuild_request(user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
