"""python manage.py caption_artworks: model captions for artworks with an image."""

from django.core.management.base import BaseCommand, CommandError

from jobs.console import progress_bar
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
        with progress_bar(disabled=opts["no_progress"]) as progress:
            try:
                report = services.captions_generate(
                    overwrite=opts["overwrite"], limit=opts["limit"], progress=progress
                )
            except services.LabellingUnavailable as exc:
                raise CommandError(str(exc)) from exc
        tiny = (
            " (stand-in model, random weights: captions are random words)" if report.is_tiny else ""
        )
        self.stdout.write(
            f"Captioned {report.captioned} artworks with {report.model_id}{tiny}; "
            f"{report.without_image} without an image keep their title."
        )
