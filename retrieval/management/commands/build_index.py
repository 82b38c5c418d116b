"""python manage.py build_index: embed what is stale, build and switch to a new index."""

from django.core.management.base import BaseCommand, CommandError

from jobs.console import progress_bar
from retrieval import services


class Command(BaseCommand):
    help = (
        "Build a new FAISS index version from the catalog's fused vectors and switch to it "
        "atomically (searches keep using the old one meanwhile). Embeds stale vectors first."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind",
            default="auto",
            choices=["auto", "flat", "slots", "compressed"],
            help=(
                "auto: exact (flat) up to RETRIEVAL_EXACT_MAX artworks (a tuning constant), "
                "slots above, compressed above 500,000"
            ),
        )
        parser.add_argument(
            "--queue", action="store_true", help="run it as a Celery job instead of in this process"
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["queue"]:
            job = services.index_rebuild_request()
            self.stdout.write(f"Queued index rebuild as job #{job.pk}.")
            return
        with progress_bar(disabled=opts["no_progress"], stage_width=40) as progress:
            try:
                report = services.index_rebuild(progress=progress, kind=opts["kind"])
            except services.RetrievalUnavailable as exc:
                raise CommandError(str(exc)) from exc
        tiny = " (stand-in model, random weights)" if report.is_tiny else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Index {report.version}: {report.kind}, {report.n:,} vectors x {report.d}-d "
                f"in {report.seconds:.1f} s{tiny}"
                + ("; pgvector HNSW index ensured" if report.pgvector_index else "")
            )
        )
