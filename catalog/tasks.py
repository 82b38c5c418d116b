"""Celery tasks for the catalog: thin wrappers that call one service."""

from celery import shared_task
from django.conf import settings

from catalog import services


@shared_task(
    bind=True,
    name="catalog.wikiart_import",
    time_limit=settings.TASK_TIME_LIMITS["catalog.wikiart_import"],
)
def wikiart_import_task(self, root: str, images_root: str | None = None) -> dict:
    """Import a WikiArt folder in a worker, reporting progress as task state."""

    def progress(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    report = services.wikiart_import(root, images_root=images_root, progress=progress)
    return {
        "created": report.artworks_created,
        "updated": report.artworks_updated,
        "unchanged": report.artworks_unchanged,
        "labels_created": report.labels_created,
        "images_attached": report.images_attached,
        "errors": [str(p) for p in report.errors[:100]],
        "error_count": len(report.errors),
        # Fields a person changed that the import kept (never overwritten).
        "kept": [str(k) for k in report.kept[:100]],
        "kept_count": len(report.kept),
    }
