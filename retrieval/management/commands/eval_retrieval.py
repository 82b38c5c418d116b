"""python manage.py eval_retrieval --out FILE.json: mAP@5..50 and a content benchmark."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from retrieval import evaluation, services


class Command(BaseCommand):
    help = (
        "Evaluate retrieval on the current index: the paper's label protocol (mAP@5, 15, "
        "25, 40, 50), the image-only ablation where images exist, and a content benchmark."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True, help="JSON report path")
        parser.add_argument(
            "--markdown",
            type=Path,
            default=None,
            help="Markdown table path (default: --out with .md)",
        )
        parser.add_argument("--content-sample", type=int, default=500)
        parser.add_argument("--max-combos", type=int, default=200)
        parser.add_argument("--min-combo", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--natural-only",
            action="store_true",
            help="only the natural-prompt benchmark (possessives, style adjectives, "
            "contradictions, surnames that are English words): precision@10",
        )

    def handle(self, *args, **opts):
        if opts["natural_only"]:
            natural = evaluation.natural_benchmark()
            opts["out"].parent.mkdir(parents=True, exist_ok=True)
            opts["out"].write_text(json.dumps(natural, indent=2))
            self.stdout.write(evaluation.natural_markdown(natural))
            self.stdout.write(f"Wrote {opts['out']}")
            return
        try:
            report = evaluation.evaluate(
                min_combo=opts["min_combo"],
                max_combos=opts["max_combos"],
                content_sample=opts["content_sample"],
                seed=opts["seed"],
            )
        except services.RetrievalUnavailable as exc:
            raise CommandError(str(exc)) from exc
        opts["out"].parent.mkdir(parents=True, exist_ok=True)
        opts["out"].write_text(json.dumps(report, indent=2))
        markdown = evaluation.report_markdown(report)
        md_path = opts["markdown"] or opts["out"].with_suffix(".md")
        md_path.write_text(markdown)
        self.stdout.write(markdown)
        self.stdout.write(f"Wrote {opts['out']} and {md_path}")
