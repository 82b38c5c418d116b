"""Provenance: the record of everything needed to re-run an image exactly, stored with the
generation and written into its PNG (`generation.ml.provenance` writes the PNG chunks)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.utils import timezone

from generation.models import Generation, LoraCacheEntry
from generation.services.lora_cache import (
    base_model_fingerprint,
    code_version,
    lora_kohya_hash,
    lora_public_name,
)

_MODEL_HASHES: dict[str, str | None] = {}


def base_model_hash() -> str | None:
    """A1111's `Model hash` of the base model (see generation.ml.provenance.model_hash),
    once per process and version of its files; None when its files cannot be found."""
    from generation.ml.provenance import model_hash

    fingerprint = base_model_fingerprint()
    if fingerprint not in _MODEL_HASHES:
        path = Path(str(settings.SD_MODEL))
        if not path.exists():
            try:  # a hub id: its snapshot in the local cache, if there is one
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(str(settings.SD_MODEL), local_files_only=True))
            except Exception:  # noqa: BLE001 - no local copy: no hash, nothing else lost
                path = None
        _MODEL_HASHES[fingerprint] = model_hash(path) if path else None
    return _MODEL_HASHES[fingerprint]


def provenance_build(
    generation: Generation, loras: list[tuple[LoraCacheEntry, float]], **extra
) -> dict:
    """Everything needed to re-run an image exactly (stored in the DB and the PNG).

    Public: it is shown with the image and written into its PNG, so server paths read as
    their last component (`config.public.scrub`). LoRAs carry the name and hash of their
    kohya download (`lora_public_name`, `lora_kohya_hash`), the model its A1111 hash, so
    A1111 and ComfyUI resolve what the PNG's "parameters" name.
    """
    from config.public import scrub

    retrieval = generation.retrieval or {}
    return scrub(
        {
            "mythragen": 1,
            "generation_id": generation.pk,
            "prompt": generation.prompt,
            "negative_prompt": generation.negative_prompt,
            "seed": generation.seed,
            "sampler": generation.sampler,
            "steps": generation.steps,
            "guidance": generation.guidance,
            "width": generation.width,
            "height": generation.height,
            "k": generation.k,
            "weights": {
                "artist_style": generation.weight_artist_style,
                "genre_style": generation.weight_genre_style,
            },
            "filters": generation.filters,
            "base_model": str(settings.SD_MODEL),
            "base_model_fingerprint": base_model_fingerprint(),
            "base_model_hash": base_model_hash(),
            "loras": [
                {
                    "name": entry.adapter_name,
                    "file": lora_public_name(entry),
                    "hash": lora_kohya_hash(entry),
                    "key": entry.key,
                    "kind": entry.kind,
                    "label": entry.label,
                    "weight": weight,
                }
                for entry, weight in loras
            ],
            "retrieved": {
                kind: [{"artwork_id": a, "score": s} for a, s in data["artworks"]]
                for kind, data in (retrieval.get("sets") or {}).items()
            },
            "retrieval": retrieval,
            "code_version": code_version(),
            "created_at": timezone.now().isoformat(),
            **extra,
        }
    )
