"""python manage.py train_genre_model: train, calibrate and publish a genre model."""

from django.core.management.base import BaseCommand, CommandError

from jobs.console import progress_bar
from labelling import genre_services, services


class Command(BaseCommand):
    help = (
        "Train the metadata genre model on WikiArt's genre train split (a held-out part "
        "calibrates it), fit its fusion with the VQA model where training artworks have "
        "images, publish it under MYTHRAGEN_MODELS_DIR/genre-model and assess every artwork for "
        "the review queue."
    )

    def add_arguments(self, parser):
        parser.add_argument("--queue", action="store_true", help="run as a Celery job")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if opts["queue"]:
            job = genre_services.genre_model_train_request()
            self.stdout.write(f"Queued genre model training as job #{job.pk}.")
            return
        with progress_bar(disabled=opts["no_progress"], stage_width=60, total=100) as progress:
            try:
                row = genre_services.genre_model_train(progress=progress, seed=opts["seed"])
            except services.LabellingUnavailable as exc:
                raise CommandError(str(exc)) from exc
        metrics = row.metrics
        fusion = row.fusion or {}
        self.stdout.write(
            f"Trained genre model {row.version} on {row.trained:,} works, calibrated on "
            f"{row.calibration:,} (temperature {metrics.get('temperature', 0):.3f}, accuracy "
            f"there {metrics.get('calibration_accuracy', 0):.3f}) in {row.seconds:.0f} s."
        )
        if "weights" in fusion:
            weights = dict(zip(fusion["sources"], fusion["weights"], strict=True))
            self.stdout.write(f"  fusion fitted on {fusion['fitted_on']} artworks: {weights}")
        else:
            self.stdout.write(f"  no fusion: {fusion.get('skipped', '')}")
