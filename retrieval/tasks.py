"""Celery tasks for retrieval: thin wrappers that run one service under a Job."""

from celery import shared_task

from jobs.services import job_run, job_task_options
from retrieval import services

INDEX_REBUILD = "index_rebuild"


@shared_task(**job_task_options("retrieval.index_rebuild"))
def index_rebuild_task(self, job_id: int) -> dict:
    """Embed what is stale and build a new index version; searches stay up throughout."""

    def work(report) -> dict:
        result = services.index_rebuild(progress=report)
        return {
            "version": result.version,
            "kind": result.kind,
            "n": result.n,
            "d": result.d,
            "seconds": round(result.seconds, 2),
            "pgvector_index": result.pgvector_index,
            "is_tiny": result.is_tiny,
        }

    return job_run(self, job_id, work)
