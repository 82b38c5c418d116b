"""python manage.py eval_labelling: the VQA labeller's accuracy on known genres."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelling import services


class Command(BaseCommand):
    help = (
        "Run the zero-shot labeller on held-out artworks whose WikiArt genre is known and "
        "report accuracy, per-genre precision/recall, a confusion matrix and calibration."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sample", type=int, default=500)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")

    def handle(self, *args, **opts):
        from labelling.ml.evaluation import report_markdown

        try:
            report = services.labelling_evaluate(sample=opts["sample"], seed=opts["seed"])
        except services.LabellingUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if report["sample"] == 0:
            raise CommandError("No artwork has both an image and a WikiArt genre to test on.")
        if report["is_tiny"]:
            self.stdout.write("NOTE: stand-in model with random weights: expect chance level.")
        self.stdout.write(report_markdown(report))
        if opts["out"]:
            opts["out"].write_text(json.dumps(report, indent=2))
            self.stdout.write(f"Wrote {opts['out']}")
