"""python manage.py setup_demo: the embedded demo's data, created once, idempotently."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalog import selectors


class Command(BaseCommand):
    help = (
        "Prepare the embedded demo: draw and import the synthetic demo catalog if the "
        "catalog is empty, build the tiny offline models, build the search index if there is "
        "none, and create a local admin account if there are no users."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo-dir", type=Path, default=Path(settings.BASE_DIR) / "var" / "demo"
        )
        parser.add_argument(
            "--admin-password",
            default="admin",
            help="password of the local 'admin' account created on first run",
        )

    def handle(self, *args, **opts):
        if selectors.catalog_counts()["artworks"] == 0:
            call_command("make_demo_catalog", str(opts["demo_dir"]), stdout=self.stdout)
            call_command(
                "import_wikiart",
                str(opts["demo_dir"]),
                "--no-progress",
                stdout=self.stdout,
                stderr=self.stderr,
            )
        else:
            self.stdout.write("Catalog already has artworks; not importing the demo catalog.")
        call_command("build_tiny_models", stdout=self.stdout)
        from retrieval.selectors import index_status

        if not index_status().get("built"):
            call_command("build_index", "--no-progress", stdout=self.stdout)
        user_model = get_user_model()
        if not user_model.objects.exists():
            user_model.objects.create_superuser("admin", "", opts["admin_password"])
            self.stdout.write(
                self.style.WARNING(
                    f"Created the local superuser 'admin' with password {opts['admin_password']!r} "
                    "(for this local demo only; change it in the admin)."
                )
            )
