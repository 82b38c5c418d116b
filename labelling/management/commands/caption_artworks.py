"""python manage.py caption_artworks: model captions for artworks with an image."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labelling import services


class Command(BaseCommand):
    help = (
        "Caption artworks that have an image with the captioning model "
        "(MYTHRAGEN_VQA_MODEL); others keep their title as caption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--overwrite", action="store_true", help="re-caption everything")
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        bar = tqdm(total=0, disable=opts["no_progress"] or None, file=sys.stderr)

        def progress(done, total, stage=""):
            bar.total, bar.n = total, done
            bar.refresh()

        try:
            report = services.captions_generate(
                overwrite=opts["overwrite"], limit=opts["limit"], progress=progress
            )
        except services.LabellingUnavailable as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        tiny = (
            " (stand-in model, random weights: captions are random words)" if report.is_tiny else ""
        )
        self.stdout.write(
            f"Captioned {report.captioned} artworks with {report.model_id}{tiny}; "
            f"{report.without_image} without an image keep their title."
        )
