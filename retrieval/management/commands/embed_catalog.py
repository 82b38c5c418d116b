"""python manage.py embed_catalog: embed artworks whose vectors are missing or stale."""

from django.core.management.base import BaseCommand, CommandError

from jobs.console import progress_bar
from retrieval import catalog_embedding, services


class Command(BaseCommand):
    help = "Embed the catalog (missing or stale vectors only), in batches; resumable."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--limit", type=int, default=None, help="only the first N artworks")
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=None,
            help="more stale artworks than this are split into chunk jobs that idle Celery "
            "workers embed alongside this command (default RETRIEVAL_EMBED_CHUNK; 0: never)",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        with progress_bar(
            disabled=opts["no_progress"], unit="artwork", stage_width=None
        ) as progress:
            try:
                report = catalog_embedding.embed_catalog(
                    batch_size=opts["batch_size"],
                    progress=progress,
                    limit=opts["limit"],
                    chunk_size=opts["chunk_size"],
                )
            except (
                services.RetrievalUnavailable,
                catalog_embedding.EmbedChunkFailed,
                ValueError,
            ) as exc:
                raise CommandError(str(exc)) from exc
        tiny = (
            " (stand-in model, random weights: vectors are for tests/demo only)"
            if report.is_tiny
            else ""
        )
        self.stdout.write(
            f"Embedding space: {report.space}{tiny}\n"
            f"  artworks: {report.artworks:,}; up to date: {report.up_to_date:,}; "
            f"re-assembled: {report.reassembled:,}\n"
            f"  embedded: {report.captions_embedded:,} captions, {report.images_embedded:,} "
            f"images, {report.labels_embedded:,} labels; time: {report.seconds:.1f} s"
            + (
                f"\n  in {report.chunks} chunk jobs, embedded by {report.workers} "
                f"process{'es' if report.workers > 1 else ''}"
                if report.chunks
                else ""
            )
        )
