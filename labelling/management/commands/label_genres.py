"""python manage.py label_genres: zero-shot VQA genre labels for artworks without one."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labelling import services
from labelling.tasks import LABEL_GENRES


class Command(BaseCommand):
    help = (
        "Label the genre of every artwork that has an image but no genre, with the VQA "
        "model (MYTHRAGEN_VQA_MODEL), in batches; resumable. Curator labels always win."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--genres", default="", help="comma-separated candidate genres")
        parser.add_argument("--queue", action="store_true", help="run as a Celery job")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["queue"]:
            job = services.labelling_request(LABEL_GENRES, limit=opts["limit"])
            self.stdout.write(f"Queued genre labelling as job #{job.pk}.")
            return
        bar = tqdm(total=0, disable=opts["no_progress"] or None, file=sys.stderr)

        def progress(done, total, stage=""):
            bar.total, bar.n = total, done
            bar.refresh()

        genres = [g for g in opts["genres"].split(",") if g.strip()]
        try:
            report = services.genres_label(
                limit=opts["limit"],
                batch_size=opts["batch_size"],
                genres=genres or None,
                progress=progress,
            )
        except (services.LabellingUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        tiny = (
            " (stand-in model, random weights: these labels are random)" if report.is_tiny else ""
        )
        self.stdout.write(
            f"Labelled {report.labelled} artworks with {report.model_id}{tiny} in "
            f"{report.seconds:.1f} s; {report.remaining} with an image still lack a genre; "
            f"{report.without_image} without an image cannot be labelled.\n"
            f"  by genre: {report.by_genre}"
        )
