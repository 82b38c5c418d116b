"""REST API for retrieval: search, similar artworks, index status and rebuilds."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import ArtworkSerializer
from catalog.filters import ArtworkFilter
from catalog.selectors import artwork_get
from catalog.services import ImageRefused, image_check
from jobs.api import JobSerializer
from retrieval import selectors, services

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Every catalog filter restricts a search to a sub-collection, except `q`, which is the
# search prompt here (the catalog's title filter).
FILTER_NAMES = [name for name in ArtworkFilter.base_filters if name != "q"]


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, max_length=500)
    k = serializers.IntegerField(required=False, default=20, min_value=1, max_value=200)
    image = serializers.ImageField(required=False)

    def validate_image(self, upload):
        if upload.size > MAX_UPLOAD_BYTES:
            raise serializers.ValidationError("The image is larger than 10 MB.")
        try:
            return image_check(upload.read())
        except ImageRefused as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs):
        if not attrs.get("q", "").strip() and attrs.get("image") is None:
            raise serializers.ValidationError("Give a prompt (q) or an image.")
        return attrs


class SearchHitSerializer(serializers.Serializer):
    score = serializers.FloatField()
    slots = serializers.DictField(child=serializers.FloatField())
    artwork = ArtworkSerializer()


def search_payload(result, request) -> dict:
    parsed = result.parsed
    return {
        "prompt": parsed.prompt if parsed else "",
        "content": parsed.content if parsed else "",
        "recognised": [{"slot": m.slot, "name": m.name, "text": m.text} for m in parsed.matches]
        if parsed
        else [],
        "model_id": result.model_id,
        "is_tiny": result.is_tiny,
        "index_version": result.index_version,
        "restricted_to": result.restricted_to,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "results": SearchHitSerializer(result.hits, many=True, context={"request": request}).data,
    }


def _run_search(request, data):
    query = SearchQuerySerializer(data=data)
    query.is_valid(raise_exception=True)
    filters = {n: data.get(n) for n in FILTER_NAMES if data.get(n) not in (None, "")}
    try:
        result = selectors.artwork_search(
            query.validated_data.get("q", ""),
            k=query.validated_data["k"],
            filters=filters,
            image=query.validated_data.get("image"),
        )
    except selectors.SearchInputError as exc:
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    except services.RetrievalUnavailable as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response(search_payload(result, request))


FILTER_PARAMS = [
    OpenApiParameter(n, str, description="catalog filter (sub-collection)") for n in FILTER_NAMES
]


class SearchView(APIView):
    """Text-to-artwork search over the fused index (GET), or by image upload (POST)."""

    permission_classes = [permissions.AllowAny]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        parameters=[OpenApiParameter("q", str), OpenApiParameter("k", int), *FILTER_PARAMS]
    )
    def get(self, request):
        return _run_search(request, request.query_params)

    @extend_schema(request={"multipart/form-data": SearchQuerySerializer})
    def post(self, request):
        data = request.data.copy() if hasattr(request.data, "copy") else dict(request.data)
        return _run_search(request, data)


class SimilarView(APIView):
    """Artworks nearest to one artwork (pgvector on PostgreSQL, FAISS elsewhere)."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(parameters=[OpenApiParameter("k", int), *FILTER_PARAMS])
    def get(self, request, pk: int):
        from django.shortcuts import get_object_or_404

        artwork = get_object_or_404(selectors.Artwork, pk=pk)
        try:
            k = int(request.query_params.get("k", 12))
        except ValueError:
            return Response({"k": ["must be an integer"]}, status=400)
        if not 1 <= k <= 100:
            return Response({"k": ["must be between 1 and 100"]}, status=400)
        filters = {
            n: request.query_params.get(n) for n in FILTER_NAMES if request.query_params.get(n)
        }
        try:
            pairs = selectors.artwork_similar(artwork_get(artwork.pk), k=k, filters=filters)
        except selectors.SearchInputError as exc:
            return Response(exc.errors, status=400)
        return Response(
            [
                {"score": s, "artwork": ArtworkSerializer(a, context={"request": request}).data}
                for a, s in pairs
            ]
        )


class IndexView(APIView):
    """The search index's status (GET); an admin queues a rebuild (POST)."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [permissions.IsAdminUser()]
        return [permissions.AllowAny()]

    def get(self, request):
        return Response(selectors.index_status())

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request):
        job = services.index_rebuild_request(user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
