"""Celery tasks for labelling: thin wrappers that run one service under a Job."""

from celery import shared_task

from jobs.services import job_running, job_succeed
from labelling import services

LABEL_GENRES = "label_genres"
CAPTION_ARTWORKS = "caption_artworks"


@shared_task(bind=True, name="labelling.label_genres", time_limit=12 * 3600, acks_late=True)
def label_genres_task(self, job_id: int, limit: int | None = None) -> dict:
    with job_running(job_id, task_id=self.request.id or "") as report:
        result = services.genres_label(limit=limit, progress=report)
        summary = {
            "labelled": result.labelled,
            "remaining": result.remaining,
            "without_image": result.without_image,
            "by_genre": result.by_genre,
            "model_id": result.model_id,
            "is_tiny": result.is_tiny,
        }
        job_succeed(job_id, summary)
    return summary


@shared_task(bind=True, name="labelling.caption_artworks", time_limit=12 * 3600, acks_late=True)
def caption_artworks_task(self, job_id: int, overwrite: bool = False) -> dict:
    with job_running(job_id, task_id=self.request.id or "") as report:
        result = services.captions_generate(overwrite=overwrite, progress=report)
        summary = {
            "captioned": result.captioned,
            "model_id": result.model_id,
            "is_tiny": result.is_tiny,
        }
        job_succeed(job_id, summary)
    return summary
