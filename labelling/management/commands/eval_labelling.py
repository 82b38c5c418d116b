"""python manage.py eval_labelling: the genre model, each source and the baseline, on the
genre val split."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelling import genre_evaluation, services


class Command(BaseCommand):
    help = (
        "Evaluate on WikiArt's genre val split (never trained or calibrated on): the "
        "metadata model, the simple TF-IDF + logistic regression baseline, and on val "
        "artworks with an image the VQA model and the fusion: top-1, macro-F1, per-genre "
        "precision and recall, the confusion matrix, ECE and the precision/coverage curve."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sample", type=int, default=500, help="val artworks with an image for the VQA"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-baseline", action="store_true")
        parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")

    def handle(self, *args, **opts):
        def progress(done, total, stage=""):
            if stage:
                print(f"[{done}/{total}] {stage}", file=sys.stderr, flush=True)

        try:
            report = genre_evaluation.labelling_evaluate(
                sample=opts["sample"],
                seed=opts["seed"],
                baseline=not opts["no_baseline"],
                progress=progress,
            )
        except services.LabellingUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if report["n"] == 0:
            raise CommandError("No artwork of the genre val split has a WikiArt genre.")
        vqa = report["sections"].get("vqa")
        if vqa and vqa.get("is_stand_in"):
            self.stdout.write("NOTE: the VQA model is a stand-in with random weights.")
        self.stdout.write(genre_evaluation.evaluation_markdown(report))
        if opts["out"]:
            opts["out"].write_text(json.dumps(report, indent=2))
            self.stdout.write(f"Wrote {opts['out']}")
