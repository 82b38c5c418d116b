"""The LoRA cache: keys, entries, training claims, eviction and export.

A LoRA is keyed by what determines its weights (`lora_key`); its `LoraCacheEntry` row
outlives its file (evicted entries keep their row, results refer to it). A job takes a
claim on an entry before training it (`lora_claim`, kept alive by `lora_claim_beat`), so
two jobs never train one LoRA.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from catalog.models import Artwork
from generation.models import Generation, LoraCacheEntry, LoraKind, LoraStatus
from generation.services.requests import (
    WEIGHT_MAX,
    WEIGHT_MIN,
    GenerationRequestError,
    GenerationStateError,
)
from generation.services.retrieval_sets import label_phrase
from jobs.models import ACTIVE_STATUSES, Job, JobStatus

# Bump when a change to training or rendering code changes what a LoRA or image would be:
# it is part of every LoRA key and of every image's provenance.
GENERATION_CODE_VERSION = "gen-1"


def code_version() -> str:
    """The code version recorded in LoRA keys and provenance."""
    from generation.ml.lora_config import METADATA_FORMAT

    try:
        package = metadata.version("mythragen")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        package = "dev"
    return f"mythragen-{package}/{GENERATION_CODE_VERSION}/{METADATA_FORMAT}"


def lora_dir() -> Path:
    """Where LoRAs live: `loras/` (cache files), `work/<key>` (checkpoints), `features/`
    (latent and text-embedding cache), `exports/` (downloads); MYTHRAGEN_LORA_DIR."""
    return Path(settings.LORA_DIR)


def training_config_current():
    """Training settings from the environment (the paper's defaults)."""
    from generation.ml.lora_config import LoraTrainingConfig

    return LoraTrainingConfig(
        rank=settings.LORA_RANK,
        alpha=settings.LORA_ALPHA,
        max_train_steps=settings.LORA_STEPS,
        resolution=settings.LORA_RESOLUTION,
        train_text_encoder=settings.LORA_TRAIN_TEXT_ENCODER,
        optimizer=settings.LORA_OPTIMIZER,
        checkpoint_every=settings.LORA_CHECKPOINT_EVERY,
    )


def _key_settings(training: dict) -> dict:
    """Settings that change the weights (how often checkpoints are written does not)."""
    return {k: v for k, v in training.items() if k != "checkpoint_every"}


def artwork_caption(artwork: Artwork) -> str:
    """The caption an artwork trains with: its caption (or title) and its labels."""
    parts = [
        artwork.caption or artwork.title,
        f"by {artwork.artist.name}",
        artwork.style.display_name,
    ]
    if artwork.genre_id:
        parts.append(artwork.genre.display_name)
    return ", ".join(p for p in parts if p)


def _examples_digest(artworks: list[Artwork]) -> str:
    rows = [(a.pk, a.image.name, artwork_caption(a)) for a in sorted(artworks, key=lambda a: a.pk)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def lora_key(
    artwork_ids, examples_digest: str, training: dict, base_fingerprint: str, version: str
) -> str:
    """The cache key: sorted artwork ids (+ their images and captions), settings, model, code."""
    payload = {
        "artworks": sorted(int(i) for i in artwork_ids),
        "examples": examples_digest,
        "training": _key_settings(training),
        "base_model": base_fingerprint,
        "code": version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def training_artworks(ids) -> list[Artwork]:
    """The artworks `ids` name, in that order, with their labels; a request error when one
    has left the catalog or has no image to train on."""
    found = Artwork.objects.select_related("artist", "style", "genre").in_bulk(list(ids))
    missing = [i for i in ids if i not in found]
    if missing:
        raise GenerationRequestError(f"artworks {missing} are no longer in the catalog")
    without = [i for i in ids if not found[i].image]
    if without:
        raise GenerationRequestError(f"artworks {without} have no image to train on")
    return [found[i] for i in ids]


def base_model_fingerprint() -> str:
    """The base model's fingerprint (a local folder's weight-file stamps, else its id),
    part of every LoRA key."""
    from generation.ml._common import model_fingerprint

    return model_fingerprint(settings.SD_MODEL)


def sd_is_tiny() -> bool:
    """Whether the base model is the tiny stand-in the project builds."""
    from mlcore.stand_in import is_tiny

    return is_tiny(settings.SD_MODEL)


def lora_entry_for(kind: str, retrieval_set: dict, training: dict) -> LoraCacheEntry:
    """The cache entry for a retrieval set (created as pending when the key is new)."""
    ids = sorted(int(a) for a, _score in retrieval_set["artworks"])
    artworks = training_artworks(ids)
    version = code_version()
    key = lora_key(ids, _examples_digest(artworks), training, base_model_fingerprint(), version)
    attributes = retrieval_set.get("attributes") or {}
    entry, _created = LoraCacheEntry.objects.get_or_create(
        key=key,
        defaults={
            "kind": kind,
            "label": ", ".join(label_phrase(n) for n in attributes.values())[:300],
            "artwork_ids": ids,
            "training_settings": training,
            "base_model": str(settings.SD_MODEL),
            "base_model_fingerprint": base_model_fingerprint(),
            "code_version": version,
            "is_tiny": sd_is_tiny(),
        },
    )
    return entry


def lora_entries_for(retrieval: dict) -> dict[str, LoraCacheEntry]:
    """The cache entries of a retrieval's two sets by LoRA kind, trained with the settings
    `retrieval["training"]` records (`lora_entry_for`)."""
    return {
        kind: lora_entry_for(kind, retrieval["sets"][kind], retrieval["training"])
        for kind in (LoraKind.ARTIST_STYLE, LoraKind.GENRE_STYLE)
    }


def lora_path(entry: LoraCacheEntry) -> Path:
    """The entry's LoRA file (present only while it is READY)."""
    return lora_dir() / "loras" / f"{entry.key}.safetensors"


def lora_is_ready(entry: LoraCacheEntry) -> bool:
    """A cache hit: READY with its file on disk (a file removed by hand counts as evicted)."""
    entry.refresh_from_db()
    if entry.status != LoraStatus.READY:
        return False
    if lora_path(entry).is_file():
        return True
    lora_evict(entry)  # its exports go with it
    return False


def lora_claim(entry: LoraCacheEntry, job_id: int | None) -> bool:
    """Take the right to train `entry`: free, failed, evicted, ours, a stale claim, or the
    claim of a job that is over (cancelled or failed while its worker was gone)."""
    now = timezone.now()
    stale = now - timezone.timedelta(seconds=settings.GEN_STALE_SECONDS)
    free = Q(status__in=[LoraStatus.PENDING, LoraStatus.FAILED, LoraStatus.EVICTED])
    ours_or_stale = Q(status=LoraStatus.TRAINING) & (
        Q(training_job_id=job_id)
        | Q(heartbeat_at__lt=stale)
        | Q(heartbeat_at__isnull=True)
        | Q(training_job__status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
    )
    return bool(
        LoraCacheEntry.objects.filter(pk=entry.pk)
        .filter(free | ours_or_stale)
        .update(status=LoraStatus.TRAINING, training_job_id=job_id, heartbeat_at=now, error="")
    )


def lora_claimable(entry: LoraCacheEntry) -> bool:
    """Whether nobody holds a live training claim on `entry` now."""
    entry.refresh_from_db()
    return entry.status != LoraStatus.TRAINING or (
        entry.training_job_id is not None
        and not Job.objects.filter(pk=entry.training_job_id, status__in=ACTIVE_STATUSES).exists()
    )


def lora_claim_beat(entry: LoraCacheEntry) -> None:
    """Keep a training claim alive: one silent for GEN_STALE_SECONDS is taken over."""
    LoraCacheEntry.objects.filter(pk=entry.pk, status=LoraStatus.TRAINING).update(
        heartbeat_at=timezone.now()
    )


def lora_use(entries: list[LoraCacheEntry]) -> None:
    """Count a render's use of its LoRAs (least recently used go first on eviction)."""
    now = timezone.now()
    LoraCacheEntry.objects.filter(pk__in=[e.pk for e in entries]).update(
        uses=F("uses") + 1, last_used_at=now
    )


def lora_export_paths(entry: LoraCacheEntry) -> list[Path]:
    """The entry's export files on disk (diffusers and kohya downloads)."""
    return sorted((lora_dir() / "exports").glob(f"{entry.key}-*.safetensors"))


def lora_disk_bytes(entry: LoraCacheEntry) -> int:
    """What the entry takes on disk: its file and its exports (counted in the budget)."""
    files = [lora_path(entry), *lora_export_paths(entry)]
    return sum(f.stat().st_size for f in files if f.is_file())


def lora_evict(entry: LoraCacheEntry) -> int:
    """Delete an entry's file, exports and any checkpoints; the row stays, marked evicted."""
    freed = 0
    for path in [lora_path(entry), *lora_export_paths(entry)]:
        if path.is_file():
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    shutil.rmtree(lora_dir() / "work" / entry.key, ignore_errors=True)
    LoraCacheEntry.objects.filter(pk=entry.pk).update(status=LoraStatus.EVICTED, size_bytes=0)
    return freed


@dataclass
class EvictReport:
    """What `lora_cache_evict` did: sizes before and after, keys evicted, LoRAs kept in use."""

    budget_bytes: int
    before_bytes: int
    after_bytes: int
    evicted: list[str] = field(default_factory=list)
    kept_in_use: int = 0


def lora_cache_size() -> int:
    """Bytes the READY entries take (their files and exports)."""
    return (
        LoraCacheEntry.objects.filter(status=LoraStatus.READY).aggregate(s=Sum("size_bytes"))["s"]
        or 0
    )


def lora_cache_evict(budget_bytes: int | None = None, *, keep=()) -> EvictReport:
    """Evict least-recently-used LoRAs until the cache fits the budget.

    `budget_bytes=None` uses MYTHRAGEN_LORA_CACHE_BUDGET_MB (0 there means no limit).
    LoRAs of queued or running generations are never evicted, nor those in `keep` (ids).
    Sizes count each LoRA's exports too (`lora_disk_bytes`).
    """
    if budget_bytes is None:
        budget_bytes = settings.LORA_CACHE_BUDGET_MB * 1024 * 1024
        if budget_bytes <= 0:
            size = lora_cache_size()
            return EvictReport(0, size, size)
    before = total = lora_cache_size()
    report = EvictReport(budget_bytes, before, before)
    active = Generation.objects.filter(job__status__in=ACTIVE_STATUSES)
    in_use = (
        set(active.values_list("lora_artist_style_id", flat=True))
        | set(active.values_list("lora_genre_style_id", flat=True))
        | set(keep)
    )
    candidates = LoraCacheEntry.objects.filter(status=LoraStatus.READY).order_by(
        F("last_used_at").asc(nulls_first=True), "created_at"
    )
    for entry in candidates:
        if total <= budget_bytes:
            break
        if entry.pk in in_use:
            report.kept_in_use += 1
            continue
        total -= entry.size_bytes
        lora_evict(entry)
        report.evicted.append(entry.key)
    report.after_bytes = lora_cache_size()
    return report


def lora_public_name(entry: LoraCacheEntry) -> str:
    """The LoRA's name outside MythraGen: the stem of its kohya download, its kohya
    `ss_output_name`, and the name in `<lora:NAME:W>` of every PNG it rendered."""
    return f"mythragen-{entry.kind}-{entry.key[:12]}"


def lora_download_name(entry: LoraCacheEntry, fmt: str) -> str:
    """The download's file name: `<public name>.safetensors` for kohya (what A1111 and
    ComfyUI load, so the PNG's tags resolve), `<public name>-diffusers.safetensors`."""
    suffix = "" if fmt == "kohya" else f"-{fmt}"
    return f"{lora_public_name(entry)}{suffix}.safetensors"


def _export_current(out: Path, source: Path, fmt: str, name: str) -> bool:
    if not out.is_file() or out.stat().st_mtime < source.stat().st_mtime:
        return False
    if fmt != "kohya":
        return True
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:  # the header only
        meta = f.metadata() or {}
    return meta.get("ss_output_name") == name and bool(meta.get("sshs_model_hash"))


def lora_export(entry: LoraCacheEntry, fmt: str) -> Path:
    """The LoRA as a file other tools load: "diffusers" or "kohya" (A1111/ComfyUI names).

    Exports are cached in `LORA_DIR/exports`, count toward the cache budget (the entry's
    `size_bytes` is its file plus its exports) and are deleted with it.
    """
    from generation.ml.lora_files import export_lora

    if not lora_is_ready(entry):
        raise GenerationStateError("This LoRA is not in the cache (evicted or not trained).")
    if fmt not in ("diffusers", "kohya"):
        raise GenerationRequestError({"as": ["use diffusers or kohya"]})
    out = lora_dir() / "exports" / f"{entry.key}-{fmt}.safetensors"
    source = lora_path(entry)
    name = lora_public_name(entry)
    if not _export_current(out, source, fmt, name):
        export_lora(source, fmt, out, name=name)
        LoraCacheEntry.objects.filter(pk=entry.pk, status=LoraStatus.READY).update(
            size_bytes=lora_disk_bytes(entry)
        )
        lora_cache_evict(keep={entry.pk})
    return out


def lora_kohya_hash(entry: LoraCacheEntry) -> str:
    """A1111's short hash (12 hex, "AutoV3") of the LoRA's kohya download, as its PNGs'
    "Lora hashes" give it; the full hash is the file's `sshs_model_hash`."""
    from safetensors import safe_open

    from generation.ml.provenance import lora_short_hash

    with safe_open(str(lora_export(entry, "kohya")), framework="pt") as f:
        return lora_short_hash((f.metadata() or {})["sshs_model_hash"])


def lora_mix(
    loras: Iterable[tuple[LoraCacheEntry | None, float]],
) -> list[tuple[LoraCacheEntry, float]]:
    """(entry, weight) pairs as a render mixes them: no entry, no LoRA; the same LoRA twice
    is one LoRA with the summed weight (LoRA deltas add linearly, so this renders the
    same), clamped to the weights a request may ask for."""
    merged: dict[int, list] = {}
    for entry, weight in loras:
        if entry is None:
            continue
        if entry.pk in merged:
            merged[entry.pk][1] += weight
        else:
            merged[entry.pk] = [entry, weight]
    return [(e, max(WEIGHT_MIN, min(WEIGHT_MAX, w))) for e, w in merged.values()]


def generation_loras(generation: Generation) -> list[tuple[LoraCacheEntry, float]]:
    """The generation's two LoRAs with their weights, mixed (`lora_mix`)."""
    return lora_mix(
        [
            (generation.lora_artist_style, generation.weight_artist_style),
            (generation.lora_genre_style, generation.weight_genre_style),
        ]
    )


def lora_adapters(mixed: list[tuple[LoraCacheEntry, float]]) -> list[tuple[str, Path, float]]:
    """What the renderer loads for mixed LoRAs: (adapter name, file, weight)."""
    return [(entry.adapter_name, lora_path(entry), weight) for entry, weight in mixed]
