"""Celery tasks for labelling: thin wrappers that run one service under a Job."""

from celery import shared_task
from django.conf import settings

from jobs.models import Job
from jobs.services import job_running, job_succeed
from labelling import genre_services, services

LABEL_GENRES = "label_genres"
CAPTION_ARTWORKS = "caption_artworks"
TRAIN_GENRE_MODEL = "train_genre_model"


@shared_task(
    bind=True,
    name="labelling.label_genres",
    time_limit=settings.TASK_TIME_LIMITS["labelling.label_genres"],
    acks_late=True,
)
def label_genres_task(self, job_id: int, limit: int | None = None) -> dict:
    with job_running(job_id, task_id=self.request.id or "", task_name=self.name) as report:
        result = genre_services.genres_label(limit=limit, progress=report)
        summary = {
            "labelled": result.labelled,
            "fused": result.fused,
            "labeller": result.labeller,
            "trained": result.trained,
            "remaining": result.remaining,
            "without_image": result.without_image,
            "by_genre": result.by_genre,
            "model_id": result.model_id,
            "is_tiny": result.is_tiny,
        }
        job_succeed(job_id, summary)
    return summary


@shared_task(
    bind=True,
    name="labelling.caption_artworks",
    time_limit=settings.TASK_TIME_LIMITS["labelling.caption_artworks"],
    acks_late=True,
)
def caption_artworks_task(self, job_id: int, overwrite: bool = False) -> dict:
    with job_running(job_id, task_id=self.request.id or "", task_name=self.name) as report:
        result = services.captions_generate(overwrite=overwrite, progress=report)
        summary = {
            "captioned": result.captioned,
            "model_id": result.model_id,
            "is_tiny": result.is_tiny,
        }
        job_succeed(job_id, summary)
    return summary


@shared_task(
    bind=True,
    name="labelling.train_genre_model",
    time_limit=settings.TASK_TIME_LIMITS["labelling.train_genre_model"],
    acks_late=True,
)
def train_genre_model_task(self, job_id: int) -> dict:
    """Train, calibrate and publish a genre model (and its fusion), reporting progress."""
    with job_running(job_id, task_id=self.request.id or "", task_name=self.name) as report:
        user = Job.objects.only("user").get(pk=job_id).user
        row = genre_services.genre_model_train(user=user, progress=report)
        summary = {
            "version": row.version,
            "trained": row.trained,
            "calibration": row.calibration,
            "fusion": bool(row.fusion and "weights" in row.fusion),
            "seconds": row.seconds,
        }
        job_succeed(job_id, summary)
    return summary
