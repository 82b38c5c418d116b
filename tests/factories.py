"""Model rows tests make often, with the fields no test cares about filled in."""

from __future__ import annotations

from generation.models import Generation

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
