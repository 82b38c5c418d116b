"""Reads for generation: galleries, one generation with its references, the LoRA cache."""

from __future__ import annotations

import re

from django.conf import settings
from django.db.models import Q, QuerySet, Sum

from catalog.models import Artwork
from generation.models import Generation, LoraCacheEntry, LoraStatus
from jobs.models import ACTIVE_STATUSES, JobStatus


def _with_related(queryset: QuerySet[Generation]) -> QuerySet[Generation]:
    return queryset.select_related("job", "user", "lora_artist_style", "lora_genre_style")


def gallery_list(user=None) -> QuerySet[Generation]:
    """Finished results with an image, newest first: what the gallery shows to everyone,
    less results whose image the safety checker flagged (those only for their owner and
    staff, as `generation_withheld` says)."""
    queryset = Generation.objects.filter(job__status=JobStatus.SUCCEEDED).exclude(image="")
    if not (user and user.is_authenticated and user.is_staff):
        mine = Q(user=user) if user and user.is_authenticated else Q(pk__in=[])
        queryset = queryset.filter(Q(image_flagged=False) | mine)
    return _with_related(queryset)


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


WITHHELD = "flagged by the safety checker"


def generation_withheld(user, generation: Generation) -> dict[str, str]:
    """The images of `generation` that `user` may not see, with why ({} when none).

    The one visibility rule for flagged images (pages, gallery cards and the API): an image
    the safety checker flagged is shown only to the generation's owner and staff; to anyone
    else neither the image nor its URL is given. (Every request for a generation file goes
    through `generation_image_for`; a flagged file's name also carries a random token,
    `services.rendering.image_name`, so a copy served by anything else is not guessable.)
    """
    if generation_can_control(user, generation):
        return {}
    withheld = {}
    if generation.image_flagged:
        withheld["image"] = WITHHELD
    if generation.baseline_flagged:
        withheld["baseline_image"] = WITHHELD
    return withheld


def generation_flag_notice(user, generation: Generation) -> str:
    """What the owner (or staff) is told beside a flagged image they can see ("" if none)."""
    if not generation.nsfw_flagged or not generation_can_control(user, generation):
        return ""
    if generation.user_id == getattr(user, "pk", None):
        return f"{WITHHELD}: only you can see it"
    return f"{WITHHELD}: only its owner and staff can see it"


def generation_safety_note(generation: Generation | None = None) -> str:
    """What pages and the API say about the safety checker: a rendered generation's record
    ("safety checker off: tiny stand-in model"), else the rule for new renders now."""
    from generation.services.rendering import SafetyState, safety_checker_state

    if generation is None or not generation.safety_checker:
        if generation is not None and generation.phase == Generation.Phase.DONE:
            return "safety checker not recorded (rendered before it was added)"
        return safety_checker_state().note
    return SafetyState.from_recorded(generation.safety_checker).note


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


SET_NAMES = {"artist_style": "Artist + style", "genre_style": "Genre + style"}


def generation_reading(generation: Generation) -> dict:
    """How the prompt was read, for the page: what the parser said (unknown names, dropped
    contradictions), the evidence of each name, and each retrieval set whose attributes the
    prompt did not name (an "artist + style" set with no artist is only a style set)."""
    retrieval = generation.retrieval or {}
    parsed = retrieval.get("parsed") or {}
    notes = []
    for kind, data in (retrieval.get("sets") or {}).items():
        missing = data.get("missing") or []
        if missing:
            named = ", ".join(str(v).replace("_", " ") for v in data.get("attributes", {}).values())
            notes.append(
                f"{SET_NAMES.get(kind, kind)} set: the prompt names no {' or '.join(missing)}, "
                + (
                    f"so it holds the works closest to {named} and the prompt's words."
                    if named
                    else "so it holds the works closest to the whole prompt."
                )
            )
    return {
        "messages": parsed.get("messages") or [],
        "evidence": parsed.get("evidence") or {},
        "set_notes": notes,
    }


def generation_provenance_text(generation: Generation) -> str:
    """The provenance record as people and tools read it: indented JSON."""
    import json

    return json.dumps(generation.provenance or {}, indent=2, ensure_ascii=False, sort_keys=False)


def lora_cache_list() -> QuerySet[LoraCacheEntry]:
    return LoraCacheEntry.objects.all()


def lora_visible(user) -> QuerySet[LoraCacheEntry]:
    """The LoRAs `user` may list, read and download: staff all; others those of finished,
    public results (the gallery's: not flagged) and of their own requests. A LoRA names
    its artist and style, so a LoRA of another user's unfinished, failed or flagged
    request would tell what they are generating."""
    if user and user.is_authenticated and user.is_staff:
        return lora_cache_list()
    shown = Q(job__status=JobStatus.SUCCEEDED, image_flagged=False) & ~Q(image="")
    if user and user.is_authenticated:
        shown |= Q(user=user)
    generations = Generation.objects.filter(shown)
    return lora_cache_list().filter(
        Q(pk__in=generations.values("lora_artist_style"))
        | Q(pk__in=generations.values("lora_genre_style"))
    )


def generation_image_for(user, name: str) -> Generation | None:
    """The generation whose image (or baseline) is the media file `name`, if `user` may
    see that image; None otherwise (no such file, or not theirs to see).

    The one rule for generation files: the owner and staff see them in any state; anyone
    else once the generation is finished and public (`generation_visible`) and the image
    is not withheld (`generation_withheld`: flagged by the safety checker). File names
    start with the generation's id (`services.rendering.image_name`), so this is one lookup.
    """
    match = re.match(r"generations/(\d{1,18})-", name)
    if not match:
        return None
    generation = generation_visible(user).filter(pk=int(match.group(1))).first()
    if generation is None:
        return None
    for field in ("image", "baseline_image"):
        if getattr(generation, field).name == name:
            return None if field in generation_withheld(user, generation) else generation
    return None


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
    """Which base model renders, and whether it is a stand-in (the UI must say so)."""
    from config.public import public_model_id
    from generation.services.rendering import safety_checker_state
    from mlcore.stand_in import stand_in_info

    info = stand_in_info(settings.SD_MODEL)
    safety = safety_checker_state()
    return {
        "base_model": public_model_id(settings.SD_MODEL),  # pages show no server path
        "is_tiny": info is not None,
        "stand_in": info["size"] if info else None,
        "safety_on": safety.on,
        "safety_note": safety.note,
    }
