"""Generation: cached LoRAs and generation requests with their results and provenance.

Only `generation.services` writes these rows (job state itself lives in `jobs.Job` and is
written by `jobs.services`).
"""

from django.conf import settings
from django.db import models

from jobs.models import Job, JobStatus


class LoraKind(models.TextChoices):
    """The two retrieval sets of the paper's Fig. 5, one LoRA each."""

    ARTIST_STYLE = "artist_style", "artist + style"
    GENRE_STYLE = "genre_style", "genre + style"


class LoraStatus(models.TextChoices):
    PENDING = "pending", "pending"
    TRAINING = "training", "training"
    READY = "ready", "ready"
    FAILED = "failed", "failed"
    EVICTED = "evicted", "evicted"


class LoraCacheEntry(models.Model):
    """One LoRA in the cache, keyed by everything that determines its weights.

    `key` hashes the sorted artwork ids (with each artwork's image and caption), the
    training settings, the base model's fingerprint and the code version: a request whose
    sets hash to an existing READY key reuses the file and trains nothing. The file is
    `<MYTHRAGEN_LORA_DIR>/loras/<key>.safetensors`, written atomically, carrying the
    settings and adapter config in its metadata. An evicted entry keeps its row (results
    and re-runs refer to it) and is trained again when asked for.
    """

    key = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=20, choices=LoraKind.choices)
    label = models.CharField(max_length=300, blank=True, help_text="the attributes it learns")
    artwork_ids = models.JSONField(default=list)
    training_settings = models.JSONField(default=dict)
    base_model = models.CharField(max_length=500)
    base_model_fingerprint = models.CharField(max_length=600)
    code_version = models.CharField(max_length=100)
    status = models.CharField(
        max_length=10, choices=LoraStatus.choices, default=LoraStatus.PENDING, db_index=True
    )
    file = models.CharField(max_length=300, blank=True, help_text="relative to LORA_DIR")
    size_bytes = models.BigIntegerField(default=0)
    uses = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    trained_at = models.DateTimeField(null=True, blank=True)
    # Training claim: the job training it and its last sign of life (stale claims are taken).
    training_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    train_info = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    is_tiny = models.BooleanField(default=False)

    class Meta:
        ordering = ["-last_used_at", "-created_at"]
        verbose_name = "LoRA cache entry"
        verbose_name_plural = "LoRA cache"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.label or ''} [{self.key[:12]}]".strip()

    @property
    def adapter_name(self) -> str:
        """The adapter's name in a pipeline (letters, digits and _ only)."""
        return f"lora_{self.key[:16]}"


class Generation(models.Model):
    """One generation request: its parameters, retrieval sets, LoRAs, images, provenance.

    `job` is the current job (a retry attaches a new one; the old stays in jobs' history).
    `phase` is where the chain of tasks stands (retrieve -> train -> render -> done), so a
    redelivered task knows whether its work is already done. `retrieval` holds the two
    retrieval sets with their artwork ids and scores; a re-run copies them (pinned), so it
    trains and renders exactly the same thing.
    """

    class Phase(models.TextChoices):
        RETRIEVE = "retrieve", "retrieve"
        TRAIN = "train", "train"
        RENDER = "render", "render"
        DONE = "done", "done"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations"
    )
    prompt = models.CharField(max_length=500)
    negative_prompt = models.CharField(max_length=500, blank=True)
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField()
    guidance = models.FloatField()
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()
    sampler = models.CharField(max_length=20)
    k = models.PositiveSmallIntegerField(help_text="retrieved paintings per LoRA")
    weight_artist_style = models.FloatField()
    weight_genre_style = models.FloatField()
    filters = models.JSONField(
        default=dict, blank=True, help_text="sub-collection to retrieve from"
    )
    with_baseline = models.BooleanField(default=True)

    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.RETRIEVE)
    phase_attempts = models.PositiveSmallIntegerField(default=0)
    retrieval = models.JSONField(default=dict, blank=True)
    lora_artist_style = models.ForeignKey(
        LoraCacheEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lora_genre_style = models.ForeignKey(
        LoraCacheEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    image = models.ImageField(upload_to="generations/", blank=True, max_length=300)
    baseline_image = models.ImageField(upload_to="generations/", blank=True, max_length=300)
    baseline_prompt = models.CharField(max_length=800, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    base_model = models.CharField(max_length=500, blank=True)
    is_tiny = models.BooleanField(default=False)
    # Stable Diffusion's safety checker (generation.services.rendering.safety_checker_state): what
    # judged the images (its model id, or "off: <reason>"), each image's verdict, and the
    # checker's scores. A flagged image is shown only to its owner and staff.
    safety_checker = models.CharField(max_length=600, blank=True)
    image_flagged = models.BooleanField(default=False)
    baseline_flagged = models.BooleanField(default=False)
    safety = models.JSONField(default=dict, blank=True)
    render_seconds = models.FloatField(null=True, blank=True)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prompt[:60]}"

    @property
    def status(self) -> str:
        return self.job.status if self.job_id else JobStatus.FAILED

    @property
    def nsfw_flagged(self) -> bool:
        """Whether the safety checker flagged the result or its baseline."""
        return self.image_flagged or self.baseline_flagged
