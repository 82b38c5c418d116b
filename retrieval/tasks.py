"""Celery tasks for retrieval: thin wrappers that run one service under a Job."""

from celery import shared_task
from django.conf import settings

from jobs.services import job_running, job_succeed
from retrieval import services

INDEX_REBUILD = "index_rebuild"


@shared_task(
    bind=True,
    name="retrieval.index_rebuild",
    time_limit=settings.TASK_TIME_LIMITS["retrieval.index_rebuild"],
    acks_late=True,
)
def index_rebuild_task(self, job_id: int) -> dict:
    """Embed what is stale and build a new index version; searches stay up throughout."""
    with job_running(job_id, task_id=self.request.id or "", task_name=self.name) as report:
        result = services.index_rebuild(progress=report)
        summary = {
            "version": result.version,
            "kind": result.kind,
            "n": result.n,
            "d": result.d,
            "seconds": round(result.seconds, 2),
            "pgvector_index": result.pgvector_index,
            "is_tiny": result.is_tiny,
        }
        job_succeed(job_id, summary)
    return summary
