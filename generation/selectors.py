"""Reads for generation: galleries, one generation with its references, the LoRA cache."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q, QuerySet, Sum

from catalog.models import Artwork
from generation.models import Generation, LoraCacheEntry, LoraStatus
from jobs.models import ACTIVE_STATUSES, JobStatus


def _with_related(queryset: QuerySet[Generation]) -> QuerySet[Generation]:
    return queryset.select_related("job", "user", "lora_artist_style", "lora_genre_style")


def gallery_list() -> QuerySet[Generation]:
    """Finished results with an image, newest first: what the gallery shows to everyone."""
    return _with_related(
        Generation.objects.filter(job__status=JobStatus.SUCCEEDED).exclude(image="")
    )


def generation_visible(user) -> QuerySet[Generation]:
    """Generations `user` may look at: every finished result, their own, all for staff."""
    queryset = Generation.objects.all()
    if not (user and user.is_authenticated and user.is_staff):
        finished = Q(job__status=JobStatus.SUCCEEDED) & ~Q(image="")
        mine = Q(user=user) if user and user.is_authenticated else Q(pk__in=[])
        queryset = queryset.filter(finished | mine)
    return _with_related(queryset)


def generation_can_control(user, generation: Generation) -> bool:
    """Only the requester (or staff) may cancel, retry or re-run a generation."""
    if not (user and user.is_authenticated):
        return False
    return user.is_staff or generation.user_id == user.pk


def user_generations(user, limit: int = 12) -> list[Generation]:
    if not (user and user.is_authenticated):
        return []
    return list(_with_related(Generation.objects.filter(user=user))[:limit])


def user_active_count(user) -> int:
    return Generation.objects.filter(user=user, job__status__in=ACTIVE_STATUSES).count()


def generation_references(generation: Generation) -> dict[str, list[tuple[Artwork | None, float]]]:
    """Each retrieval set's artworks (in rank order) with their retrieval scores."""
    sets = (generation.retrieval or {}).get("sets") or {}
    ids = {int(a) for data in sets.values() for a, _s in data.get("artworks", [])}
    found = Artwork.objects.select_related("artist", "style", "genre").in_bulk(ids)
    return {
        kind: [(found.get(int(a)), float(s)) for a, s in data.get("artworks", [])]
        for kind, data in sets.items()
    }


def lora_cache_list() -> QuerySet[LoraCacheEntry]:
    return LoraCacheEntry.objects.all()


def lora_cache_stats() -> dict:
    ready = LoraCacheEntry.objects.filter(status=LoraStatus.READY)
    size = ready.aggregate(s=Sum("size_bytes"))["s"] or 0
    return {
        "ready": ready.count(),
        "size_bytes": size,
        "budget_bytes": settings.LORA_CACHE_BUDGET_MB * 1024 * 1024,
        "entries": LoraCacheEntry.objects.count(),
    }


def model_status() -> dict:
    """Which base model renders, and whether it is a tiny stand-in (the UI must say so)."""
    from generation.ml.tiny import is_tiny_model

    return {"base_model": str(settings.SD_MODEL), "is_tiny": is_tiny_model(settings.SD_MODEL)}
