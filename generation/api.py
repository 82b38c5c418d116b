"""REST API for generation: requests, their live state and results, the LoRA cache."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from catalog.api import ERROR_400, RefusalSerializer
from catalog.models import LabelSource, Split
from generation import selectors, services
from generation.models import Generation, LoraCacheEntry
from jobs.api import JobSerializer
from jobs.models import JobStatus


class _BoundsDocumented:
    """A number field whose bounds are in the schema (generated clients see them) but not
    checked here: `services.generation_params_check` is the one validator, and says all
    that is wrong at once in its own words."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, MinValueValidator | MaxValueValidator)
        ]


class BoundedInteger(_BoundsDocumented, serializers.IntegerField):
    pass


class BoundedFloat(_BoundsDocumented, serializers.FloatField):
    pass


@extend_schema_field({"type": "string", "enum": services.samplers(), "default": "ddim"})
class SamplerField(serializers.CharField):
    """A sampler name (`generation.ml.render.SAMPLERS`), checked by the service."""


class GenerationFiltersSerializer(serializers.Serializer):
    """The sub-collection to retrieve from (catalog filters: `catalog.filters.ArtworkFilter`).

    For the schema only: the request reads `filters` as a plain object and the service
    refuses unknown names and values (400, per filter)."""

    artist = serializers.CharField(required=False, help_text="artist slug")
    style = serializers.CharField(required=False, help_text="style name, e.g. Ukiyo_e")
    genre = serializers.CharField(required=False, help_text="genre name, e.g. landscape")
    has_genre = serializers.BooleanField(required=False)
    label_source = serializers.ChoiceField(choices=LabelSource.choices, required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    year_min = serializers.IntegerField(required=False)
    year_max = serializers.IntegerField(required=False)


@extend_schema_field(GenerationFiltersSerializer)
class FiltersField(serializers.DictField):
    """A JSON object of catalog filters (see GenerationFiltersSerializer)."""


class GenerationCreateSerializer(serializers.Serializer):
    """Types only; `services.generation_params_check` holds the rules (one validator). The
    bounds are in the schema; omitted fields take the form's defaults (the server's
    settings: `MYTHRAGEN_GEN_SIZE`, `_STEPS`, `_K`)."""

    prompt = serializers.CharField(max_length=services.MAX_PROMPT, allow_blank=True)
    negative_prompt = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_PROMPT
    )
    seed = BoundedInteger(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=services.SEED_MAX,
        help_text="null or omitted: random",
    )
    steps = BoundedInteger(required=False, min_value=1, max_value=services.STEPS_MAX)
    guidance = BoundedFloat(
        required=False, default=7.5, min_value=0, max_value=services.GUIDANCE_MAX
    )
    width = BoundedInteger(
        required=False,
        min_value=services.SIZE_MIN,
        max_value=services.SIZE_MAX,
        help_text="a multiple of 8",
    )
    height = BoundedInteger(
        required=False,
        min_value=services.SIZE_MIN,
        max_value=services.SIZE_MAX,
        help_text="a multiple of 8",
    )
    sampler = SamplerField(required=False, default="ddim")
    k = BoundedInteger(
        required=False,
        min_value=1,
        max_value=services.K_MAX,
        help_text="retrieved paintings per LoRA",
    )
    weight_artist_style = BoundedFloat(
        required=False,
        default=0.6,
        min_value=services.WEIGHT_MIN,
        max_value=services.WEIGHT_MAX,
    )
    weight_genre_style = BoundedFloat(
        required=False,
        default=0.4,
        min_value=services.WEIGHT_MIN,
        max_value=services.WEIGHT_MAX,
    )
    filters = FiltersField(
        child=serializers.CharField(),
        required=False,
        default=dict,
        help_text=f"sub-collection: any of {', '.join(services.FILTER_NAMES)}",
    )
    with_baseline = serializers.BooleanField(required=False, default=True)
    allow_unknown_names = serializers.BooleanField(
        required=False,
        default=False,
        help_text="generate even if the prompt names an artist the catalog lacks (by "
        "default that is a 400 naming it: the artist + style LoRA would be trained "
        "without the artist)",
    )

    def to_params(self) -> services.GenerationParams:
        return services.GenerationParams(**self.validated_data)


class LoraSerializer(serializers.ModelSerializer):
    downloads = serializers.SerializerMethodField()

    class Meta:
        model = LoraCacheEntry
        fields = [
            "key",
            "kind",
            "label",
            "status",
            "artwork_ids",
            "training_settings",
            "base_model",
            "code_version",
            "size_bytes",
            "uses",
            "last_used_at",
            "created_at",
            "trained_at",
            "train_info",
            "is_tiny",
            "downloads",
        ]

    def get_downloads(self, entry) -> dict:
        url = reverse("generation:lora-download", args=[entry.key])
        return {fmt: f"{url}?as={fmt}" for fmt in ("diffusers", "kohya")}


class GenerationSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, read_only=True)
    filters = FiltersField(child=serializers.CharField(), read_only=True)
    job = JobSerializer(read_only=True, allow_null=True)
    image = serializers.ImageField(read_only=True, use_url=True, allow_null=True)
    baseline_image = serializers.ImageField(read_only=True, use_url=True, allow_null=True)
    lora_artist_style = LoraSerializer(read_only=True, allow_null=True)
    lora_genre_style = LoraSerializer(read_only=True, allow_null=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    page = serializers.SerializerMethodField()
    withheld = serializers.SerializerMethodField(
        help_text="images you may not see, with why (their URLs are null): a flagged image "
        "is shown only to its owner and staff"
    )
    safety = serializers.SerializerMethodField(help_text="the safety checker's record")

    class Meta:
        model = Generation
        fields = [
            "id",
            "status",
            "phase",
            "job",
            "user",
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "guidance",
            "width",
            "height",
            "sampler",
            "k",
            "weight_artist_style",
            "weight_genre_style",
            "filters",
            "with_baseline",
            "retrieval",
            "lora_artist_style",
            "lora_genre_style",
            "image",
            "baseline_image",
            "withheld",
            "safety",
            "baseline_prompt",
            "provenance",
            "base_model",
            "is_tiny",
            "render_seconds",
            "rerun_of",
            "created_at",
            "finished_at",
            "page",
        ]

    def get_page(self, generation) -> str:
        return reverse("generation:detail", args=[generation.pk])

    def _user(self):
        return getattr(self.context.get("request"), "user", None)

    def get_withheld(self, generation) -> dict[str, str]:
        return selectors.generation_withheld(self._user(), generation)

    def get_safety(self, generation) -> dict:
        return {
            "checker": generation.safety_checker or None,
            "note": selectors.generation_safety_note(generation),
            "image_flagged": generation.image_flagged,
            "baseline_flagged": generation.baseline_flagged,
            "notice": selectors.generation_flag_notice(self._user(), generation),
        }

    def to_representation(self, generation):
        data = super().to_representation(generation)
        # A withheld image's URL (and its file name in the job's result) never leaves.
        result = (data.get("job") or {}).get("result")
        for name in data["withheld"]:
            data[name] = None
            if isinstance(result, dict) and name in result:
                result[name] = None
        return data


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
