"""python manage.py label_genres: genre labels for every artwork without one."""

from django.core.management.base import BaseCommand, CommandError

from jobs.console import progress_bar
from labelling import genre_services, services
from labelling.tasks import LABEL_GENRES


class Command(BaseCommand):
    help = (
        "Label the genre of every artwork that has none, in batches; resumable. By default "
        "(GENRE_LABELLER=auto) with the genre model, trained first if none is: "
        "the metadata model, fused with the VQA model for artworks with an image; "
        "--labeller vqa is the paper's zero-shot VQA. Curator labels always win."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--genres", default="", help="comma-separated candidate genres")
        parser.add_argument(
            "--labeller",
            choices=genre_services.LABELLERS,
            default=None,
            help="default: GENRE_LABELLER",
        )
        parser.add_argument("--queue", action="store_true", help="run as a Celery job")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["queue"]:
            job = services.labelling_request(LABEL_GENRES, limit=opts["limit"])
            self.stdout.write(f"Queued genre labelling as job #{job.pk}.")
            return
        genres = [g for g in opts["genres"].split(",") if g.strip()]
        with progress_bar(disabled=opts["no_progress"], stage_width=60) as progress:
            try:
                report = genre_services.genres_label(
                    limit=opts["limit"],
                    batch_size=opts["batch_size"],
                    genres=genres or None,
                    progress=progress,
                    labeller=opts["labeller"],
                )
            except (services.LabellingUnavailable, ValueError) as exc:
                raise CommandError(str(exc)) from exc
        if report.trained:
            self.stdout.write(f"No genre model was trained yet: trained {report.trained}.")
        tiny = " (a stand-in model, random weights)" if report.is_tiny else ""
        fused = f", {report.fused} of them fused with the VQA model" if report.fused else ""
        self.stdout.write(
            f"Labelled {report.labelled} artworks with {report.model_id}{tiny}{fused} in "
            f"{report.seconds:.1f} s; {report.remaining} still lack a genre."
        )
        if report.labeller == "vqa":
            self.stdout.write(f"  {report.without_image} without an image cannot be labelled.")
        self.stdout.write(f"  by genre: {dict(sorted(report.by_genre.items()))}")
        for note in report.notes:
            self.stdout.write(f"  note: {note}")
