"""python manage.py eval_generation: MythraGen vs the prompt-only baseline (Table 3 columns).

Renders a prompt set both ways and reports CLIP-T, CLIP-I (naming the CLIP backbone), KID
(FID from 2,048 images on) and a style accuracy from a linear classifier on catalog
embeddings. Runs in this process (no worker); LoRAs come from / go to the LoRA cache.
"""

import json
from dataclasses import asdict
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation import evaluation, services
from retrieval.services import RetrievalUnavailable


class Command(BaseCommand):
    help = "Evaluate MythraGen against the prompt-only baseline on a prompt set."

    def add_arguments(self, parser):
        parser.add_argument("--prompts", type=int, default=6, help="prompts drawn from the catalog")
        parser.add_argument("--prompt-file", type=Path, default=None, help="one prompt a line")
        parser.add_argument("--k", type=int, default=None, help="retrieved paintings per LoRA")
        parser.add_argument("--steps", type=int, default=None, help="sampling steps")
        parser.add_argument("--size", type=int, default=None)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--lora-steps", type=int, default=None, help="training steps")
        parser.add_argument("--max-catalog", type=int, default=2000, help="classifier artworks")
        parser.add_argument("--out", type=Path, default=None, help="also write the PNGs here")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts):
        from django.conf import settings

        if opts["lora_steps"]:
            settings.LORA_STEPS = opts["lora_steps"]
        if opts["prompt_file"]:
            prompts = [p.strip() for p in opts["prompt_file"].read_text().splitlines() if p.strip()]
        else:
            prompts = evaluation.prompt_set(opts["prompts"])
        if len(prompts) < 2:
            raise CommandError("need at least 2 prompts (and a catalog with images)")
        try:
            result = evaluation.eval_generation(
                prompts,
                k=opts["k"],
                seed=opts["seed"],
                steps=opts["steps"],
                size=opts["size"],
                max_catalog=opts["max_catalog"],
                out_dir=opts["out"],
                progress=None if opts["json"] else lambda m: self.stderr.write(m),
            )
        except (services.GenerationRequestError, RetrievalUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(asdict(result), indent=2, default=str))
            return
        self._table(result)

    def _table(self, result):
        w = self.stdout.write
        d = result.distance
        w(f"{len(result.prompts)} prompts · base model {result.base_model}")
        if result.is_tiny:
            w("NOTE: tiny stand-in models (random weights): the numbers test the pipeline only.")
        w(f"{'method':<24}{'CLIP-T':>9}{'CLIP-I':>9}{d + ' x1e3':>12}{'style acc':>11}")
        for method, row in result.rows.items():
            dist = row.get("kid", row.get("fid"))
            dist_text = f"{dist * (1000 if d == 'KID' else 1):.2f}" if dist is not None else "-"
            acc = row["style_accuracy"]
            w(
                f"{method:<24}{row['clip_t']:>9.2f}{row['clip_i']:>9.3f}{dist_text:>12}"
                f"{(f'{acc:.2f}' if acc is not None else '-'):>11}"
            )
        c = result.classifier
        w(f"CLIP backbone: {result.backbone}")
        w(
            f"{d} on CLIP image features, {sum(r['n_images'] for r in result.rows.values()) // 2} "
            f"images per method vs {result.n_references} reference paintings "
            f"({'KID: fewer than 2,048 images' if d == 'KID' else 'FID'})"
        )
        val = (
            f", held-out accuracy {c['val_accuracy']:.2f} on {c['val_n']}"
            if "val_accuracy" in c
            else ""
        )
        w(
            f"style classifier: ridge on CLIP image embeddings of {c['artworks']} catalog "
            f"artworks, {c['styles']} styles{val}"
        )
        w(f"({result.seconds:.1f} s)")
