"""Celery tasks for retrieval: thin wrappers that run one service under a Job."""

import logging

from celery import shared_task

from jobs.services import JobNotClaimed, job_run, job_task_options
from retrieval import catalog_embedding, services

logger = logging.getLogger(__name__)

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


@shared_task(**job_task_options(catalog_embedding.EMBED_CHUNK_TASK))
def embed_chunk_task(self, job_id: int) -> dict:
    """Embed one chunk of an `embed_catalog` run. The run claims chunks itself too: a
    chunk it (or another worker) claimed first is dropped here, quietly."""
    try:
        return job_run(
            self, job_id, lambda report: catalog_embedding.embed_chunk_run(job_id, report)
        )
    except JobNotClaimed as exc:
        logger.info("Embedding chunk job #%s not run here: %s", job_id, exc)
        return {"skipped": True, "reason": str(exc)}
