"""python manage.py make_demo_catalog DIR: write a synthetic WikiArt-layout catalog."""

from pathlib import Path

from django.core.management.base import BaseCommand

from catalog.demo import write_demo_catalog


class Command(BaseCommand):
    help = (
        "Write a small synthetic catalog (procedurally drawn 'paintings', clearly marked "
        "as synthetic) in the ArtGAN WikiArt layout, ready for import_wikiart."
    )

    def add_arguments(self, parser):
        parser.add_argument("dir", type=Path)
        parser.add_argument("--per-artist", type=int, default=20)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--no-images", action="store_true", help="metadata only")
        parser.add_argument(
            "--no-hint", action="store_true", help="no import hint (setup_demo imports it)"
        )

    def handle(self, *args, **opts):
        works = write_demo_catalog(
            opts["dir"],
            per_artist=opts["per_artist"],
            seed=opts["seed"],
            images=not opts["no_images"],
        )
        missing = sum(1 for w in works if w.genre is None)
        hint = (
            ""
            if opts["no_hint"]
            else (f" Import them with: python manage.py import_wikiart {opts['dir']}")
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {len(works)} synthetic artworks ({missing} without a genre) "
                f"to {opts['dir']}.{hint}"
            )
        )
