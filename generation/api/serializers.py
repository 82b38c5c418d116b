"""Serializers of the generation API: requests, results, the LoRA cache."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.api.filters import filter_params_serializer
from catalog.filters import ArtworkFilter
from generation import selectors, services
from generation.models import Generation, LoraCacheEntry
from jobs.api.serializers import JobSerializer
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


# The sub-collection to retrieve from, for the schema only: the request reads `filters`
# as a plain object and the service refuses unknown names and values (400, per filter).
# Its fields are the catalog filters (`catalog.filters.ArtworkFilter`) the service takes.
GenerationFiltersSerializer = filter_params_serializer(
    ArtworkFilter,
    "GenerationFiltersSerializer",
    exclude=tuple(n for n in ArtworkFilter.base_filters if n not in services.FILTER_NAMES),
    doc="The sub-collection to retrieve from (catalog filters: "
    "`catalog.filters.ArtworkFilter`).\n\nFor the schema only: the request reads `filters` as "
    "a plain object and the service\nrefuses unknown names and values (400, per filter).",
)


@extend_schema_field(GenerationFiltersSerializer)
class FiltersField(serializers.DictField):
    """A JSON object of catalog filters (see GenerationFiltersSerializer)."""


class GenerationCreateSerializer(serializers.Serializer):
    """Types only; `services.generation_params_check` holds the rules (one validator). The
    bounds are in the schema; omitted fields take the form's defaults (the server's
    settings: `GEN_SIZE`, `GEN_STEPS`, `GEN_K`)."""

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
