"""REST API for retrieval: search, similar artworks, index status and rebuilds."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import (
    ERROR_400,
    ArtworkFilterParamsSerializer,
    ArtworkSerializer,
    DetailSerializer,
)
from catalog.filters import ArtworkFilter
from catalog.selectors import artwork_get
from catalog.uploads import ImageRefused, image_upload_check
from config.parsers import JSONParser
from jobs.api import JobSerializer
from retrieval import selectors, services

# Every catalog filter restricts a search to a sub-collection, except `q`, which is the
# search prompt here (the catalog's title filter).
FILTER_NAMES = [name for name in ArtworkFilter.base_filters if name != "q"]


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

    def to_representation(self, instance):
        """The declared fields' output, built directly (a test compares it with DRF's
        field walk): 50 hits per response made the walk ~1-2 ms of every search."""
        return {
            "score": float(instance.score),
            "slots": {str(name): float(value) for name, value in instance.slots.items()},
            "artwork": self.fields["artwork"].to_representation(instance.artwork),
        }


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
    return {n: data.get(n) for n in FILTER_NAMES if data.get(n) not in (None, "")}


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


class SimilarQuerySerializer(ArtworkFilterParamsSerializer):
    k = serializers.IntegerField(required=False, default=12, min_value=1, max_value=100)


class SimilarHitSerializer(serializers.Serializer):
    score = serializers.FloatField()
    artwork = ArtworkSerializer()


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
