"""Model rows tests make often, with the fields no test cares about filled in."""

from __future__ import annotations

from django.utils import timezone

from generation.models import Generation, LoraCacheEntry, LoraStatus

# A small, valid generation request (what the form sends for a tiny render).
GENERATION_REQUEST = {
    "prompt": "quiet hills",
    "seed": 7,
    "steps": 3,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "sampler": "ddim",
    "k": 4,
    "weight_artist_style": 0.6,
    "weight_genre_style": 0.4,
}


def generation_create(**fields) -> Generation:
    """A `Generation` row: `GENERATION_REQUEST` with `fields` over it (job, user, phase,
    images...). No job, no files: the caller adds what its test is about."""
    return Generation.objects.create(**{**GENERATION_REQUEST, **fields})


def generation_form(**fields) -> dict:
    """The generation form's POST data: `GENERATION_REQUEST` less the seed (the form draws
    one when none is given), with `fields` over it."""
    form = {k: v for k, v in GENERATION_REQUEST.items() if k != "seed"}
    return {**form, **fields}


def lora_entry_create(key: str, *, used_days_ago: int | None = None, **fields) -> LoraCacheEntry:
    """A ready `LoraCacheEntry` row keyed `key * 64`, last used `used_days_ago` days ago
    (None: never), with `fields` over the defaults. No file: the caller writes one."""
    last_used = (
        None if used_days_ago is None else timezone.now() - timezone.timedelta(days=used_days_ago)
    )
    return LoraCacheEntry.objects.create(
        **{
            "key": key * 64,
            "kind": "artist_style",
            "base_model": "m",
            "base_model_fingerprint": "m",
            "code_version": "v",
            "status": LoraStatus.READY,
            "last_used_at": last_used,
            **fields,
        }
    )
