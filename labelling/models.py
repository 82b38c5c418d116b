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

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} x{self.count} ({self.created_at:%Y-%m-%d %H:%M})"
