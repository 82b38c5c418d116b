"""Labelling: bulk review operations (the label history itself is catalog.GenreLabel)."""

import uuid

from django.conf import settings
from django.db import models


class BulkOperation(models.Model):
    """A curator's bulk relabel or accept; its labels share `id` as their batch id."""

    class Action(models.TextChoices):
        RELABEL = "relabel", "relabel to one genre"
        ACCEPT = "accept", "accept the model's suggestions"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=10, choices=Action.choices)
    genre = models.ForeignKey("catalog.Genre", null=True, blank=True, on_delete=models.PROTECT)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    count = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Artworks left alone because their label changed since the curator's preview:
    # [{artwork_id, title, expected_version, current_version, current_genre}].
    conflicts = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} x{self.count} ({self.created_at:%Y-%m-%d %H:%M})"


class GenreModelVersion(models.Model):
    """One trained genre model: its artifact lives in MYTHRAGEN_MODELS_DIR/genre-model under
    `versions/<version>` (the folder's CURRENT file names the one labelling uses); this
    row is its record for people: the digest of its training data, sizes, held-out figures
    on the calibration part of the train split, and the fusion with the VQA model if one
    was fitted."""

    version = models.CharField(max_length=100, unique=True)
    data_digest = models.CharField(max_length=64)
    trained = models.PositiveIntegerField(default=0)
    calibration = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    fusion = models.JSONField(null=True, blank=True)
    seconds = models.FloatField(default=0)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.version


class GenreAssessment(models.Model):
    """The genre model's probabilities for one artwork, for the review queue: held out
    wherever the model was trained on the artwork (out of fold), so it can disagree with
    WikiArt's own label. Replaced whenever a model is trained."""

    artwork = models.OneToOneField(
        "catalog.Artwork", primary_key=True, on_delete=models.CASCADE, related_name="assessment"
    )
    model_version = models.CharField(max_length=100)
    scores = models.JSONField()
    # Out of fold: the model that scored it never saw its label.
    held_out = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"assessment of artwork {self.artwork_id} by {self.model_version}"
