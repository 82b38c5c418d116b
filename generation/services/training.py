"""Training a cache entry's LoRA: the claim, the heartbeat, `generation.ml.lora_train`,
and waking the jobs that wait for it."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from catalog.selectors import artwork_image_load
from generation.models import Generation, LoraCacheEntry, LoraStatus
from generation.services import lora_cache, rendering
from generation.services.lora_cache import artwork_caption, lora_dir, lora_is_ready, lora_path
from generation.services.requests import Report
from jobs import services as jobs
from jobs.models import JobStatus

logger = logging.getLogger(__name__)

# Without a job (a command) waiting for another's training polls this often.
LORA_WAIT_POLL_SECONDS = 2.0
# Training stamps its claim (`lora_claim_beat`) at most this often from its steps.
HEARTBEAT_SECONDS = 5.0


class LoraBusy(Exception):
    """Another job is training this LoRA (its claim is alive)."""

    def __init__(self, entry: LoraCacheEntry) -> None:
        self.entry = entry
        super().__init__(
            f"waiting for LoRA {entry.key[:12]} (being trained by job #{entry.training_job_id})"
        )


def lora_train(
    entry: LoraCacheEntry,
    *,
    job_id: int | None,
    report: Report | None = None,
    stage: str = "training",
    wait: bool = True,
) -> LoraCacheEntry:
    """Train the LoRA of a cache entry unless it is ready (or being trained by another job).

    Resumes from the newest checkpoint in `LORA_DIR/work/<key>`. Latents and text
    embeddings are cached in `LORA_DIR/features`, shared by every LoRA. Cancellation (the
    reporter raises `JobCancelled`) saves a checkpoint first. Raises `JobCancelled` or the
    training error; a failure marks the entry failed, so the next request retrains it.
    When another job is training it: waits for it, or with `wait=False` raises `LoraBusy`
    at once (a job then waits in the queue, see `generation_train`). However training
    ends, the jobs waiting for this LoRA are sent again at once.
    """
    from generation.ml.errors import TrainingCancelled
    from generation.ml.lora_config import LoraTrainingConfig, TrainingExample
    from generation.ml.lora_train import train_lora
    from retrieval.services import ml_device

    report = report or (lambda *a, **k: None)
    while True:
        if lora_is_ready(entry):
            return entry
        if lora_cache.lora_claim(entry, job_id):
            break
        entry.refresh_from_db()
        if not wait:
            raise LoraBusy(entry)
        report(0, 0, str(LoraBusy(entry)))
        time.sleep(LORA_WAIT_POLL_SECONDS)

    cancelled = False
    last_beat = [time.monotonic()]

    def progress(step: int, total: int) -> None:
        nonlocal cancelled
        loading.stop()  # the first step reports: steps keep the job and the claim alive
        now = time.monotonic()
        if now - last_beat[0] > HEARTBEAT_SECONDS:
            last_beat[0] = now
            lora_cache.lora_claim_beat(entry)
        try:
            report(step, total, f"{stage}: step {step}/{total}")
        except jobs.JobCancelled:
            cancelled = True

    # Until the first step: loading the model and caching latents report nothing.
    loading = jobs.job_heartbeat(
        job_id,
        f"{stage}: loading model {settings.SD_MODEL}, caching latents",
        on_beat=lambda: lora_cache.lora_claim_beat(entry),
    )
    try:
        loading.start()
        report(0, 0, f"caching: latents and text embeddings ({stage})")
        artworks = lora_cache.training_artworks(entry.artwork_ids)
        examples = [
            TrainingExample(
                artwork_image_load(a.image.name),
                artwork_caption(a),
                f"artwork-{a.pk}-{a.image.name}",
            )
            for a in artworks
        ]
        config = LoraTrainingConfig.from_dict(entry.training_settings)
        config.checkpoint_every = settings.LORA_CHECKPOINT_EVERY
        renderer = rendering.renderer_get()
        # Reuse the worker's loaded pipeline (no second copy of the model) when it is fp32.
        pipeline = renderer.load().pipe if renderer.precision == "float32" else None
        result = train_lora(
            settings.SD_MODEL,
            examples,
            lora_path(entry),
            config,
            work_dir=lora_dir() / "work" / entry.key,
            cache_dir=lora_dir() / "features",
            device=ml_device(),
            progress=progress,
            should_stop=lambda: cancelled,
            pipeline=pipeline,
            setting_name="MYTHRAGEN_SD_MODEL",
        )
    except TrainingCancelled as exc:
        LoraCacheEntry.objects.filter(pk=entry.pk).update(
            status=LoraStatus.PENDING, training_job=None, heartbeat_at=None
        )
        lora_waiters_wake(entry)  # one of them trains it now, from the checkpoint
        raise jobs.JobCancelled(str(exc)) from exc
    except BaseException as exc:
        LoraCacheEntry.objects.filter(pk=entry.pk).update(
            status=LoraStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000], heartbeat_at=None
        )
        lora_waiters_wake(entry)
        raise
    finally:
        loading.stop()
    info = asdict(result)
    info["output_path"] = str(result.output_path)
    info["checkpoints"] = len(result.checkpoints)
    LoraCacheEntry.objects.filter(pk=entry.pk).update(
        status=LoraStatus.READY,
        file=str(lora_path(entry).relative_to(lora_dir())),
        size_bytes=lora_path(entry).stat().st_size,
        trained_at=timezone.now(),
        heartbeat_at=None,
        train_info=info,
        error="",
    )
    shutil.rmtree(lora_dir() / "work" / entry.key, ignore_errors=True)  # checkpoints done
    lora_waiters_wake(entry)
    entry.refresh_from_db()
    lora_cache.lora_cache_evict()
    return entry


def lora_waiters_wake(entry: LoraCacheEntry) -> int:
    """Send at once the generations waiting in the queue for this LoRA's training."""
    try:
        waiting = Generation.objects.filter(
            Q(lora_artist_style=entry) | Q(lora_genre_style=entry),
            phase=Generation.Phase.TRAIN,
            job__status=JobStatus.QUEUED,
            job__wait_until__isnull=False,
        ).values_list("job_id", flat=True)
        return jobs.job_wake(list(waiting))
    except Exception:  # noqa: BLE001 - never mask training's outcome: they wake by time too
        logger.exception("could not wake the jobs waiting for LoRA %s", entry.key[:12])
        return 0
