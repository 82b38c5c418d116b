"""python manage.py import_wikiart PATH [--images DIR]: import the ArtGAN WikiArt layout."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog import services
from catalog.wikiart import LayoutError
from jobs.console import progress_bar


class Command(BaseCommand):
    help = (
        "Import (or re-import) WikiArt in the ArtGAN layout: class lists, train/val CSVs "
        "and, optionally, style folders of images. Idempotent; bad rows are reported "
        "with file and line and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="folder with *_class.txt and *_train/_val CSVs")
        parser.add_argument(
            "--images",
            type=Path,
            default=None,
            help="folder holding <Style>/<file>.jpg (default: PATH)",
        )
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--show-errors",
            type=int,
            default=20,
            help="how many skipped rows to print (all go to --errors-file)",
        )
        parser.add_argument(
            "--errors-file",
            type=Path,
            default=None,
            help="write every skipped row and warning to this file",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        with progress_bar(disabled=opts["no_progress"], unit="artwork") as progress:
            try:
                report = services.wikiart_import(
                    opts["path"],
                    images_root=opts["images"],
                    batch_size=opts["batch_size"],
                    progress=progress,
                )
            except LayoutError as exc:
                raise CommandError(str(exc)) from exc

        for line in report.summary():
            self.stdout.write(line)
        for change in report.kept[: opts["show_errors"]]:
            self.stdout.write(f"kept: {change}")
        if len(report.kept) > opts["show_errors"]:
            self.stdout.write(f"... and {len(report.kept) - opts['show_errors']} more kept")
        shown = report.errors[: opts["show_errors"]]
        for problem in shown:
            self.stderr.write(f"skipped: {problem}")
        if len(report.errors) > len(shown):
            self.stderr.write(f"... and {len(report.errors) - len(shown)} more skipped rows")
        for problem in report.warnings[: opts["show_errors"]]:
            self.stderr.write(f"warning: {problem}")
        if opts["errors_file"]:
            lines = (
                [f"skipped: {p}" for p in report.errors]
                + [f"warning: {p}" for p in report.warnings]
                + [f"kept: {k}" for k in report.kept]
            )
            opts["errors_file"].write_text("\n".join(lines) + "\n")
        self.stdout.write(self.style.SUCCESS("Import finished."))
