"""Celery tasks for labelling: thin wrappers that run one service under a Job."""

from celery import shared_task

from jobs.models import Job
from jobs.services import job_run, job_task_options
from labelling import genre_services, services

LABEL_GENRES = "label_genres"
CAPTION_ARTWORKS = "caption_artworks"
TRAIN_GENRE_MODEL = "train_genre_model"


@shared_task(**job_task_options("labelling.label_genres"))
def label_genres_task(self, job_id: int, limit: int | None = None) -> dict:
    def work(report) -> dict:
        result = genre_services.genres_label(limit=limit, progress=report)
        return {
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

    return job_run(self, job_id, work)


@shared_task(**job_task_options("labelling.caption_artworks"))
def caption_artworks_task(self, job_id: int, overwrite: bool = False) -> dict:
    def work(report) -> dict:
        result = services.captions_generate(overwrite=overwrite, progress=report)
        return {
            "captioned": result.captioned,
            "model_id": result.model_id,
            "is_tiny": result.is_tiny,
        }

    return job_run(self, job_id, work)


@shared_task(**job_task_options("labelling.train_genre_model"))
def train_genre_model_task(self, job_id: int) -> dict:
    """Train, calibrate and publish a genre model (and its fusion), reporting progress."""

    def work(report) -> dict:
        user = Job.objects.only("user").get(pk=job_id).user
        row = genre_services.genre_model_train(user=user, progress=report)
        return {
            "version": row.version,
            "trained": row.trained,
            "calibration": row.calibration,
            "fusion": bool(row.fusion and "weights" in row.fusion),
            "seconds": row.seconds,
        }

    return job_run(self, job_id, work)
