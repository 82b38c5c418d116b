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
            call_command(
                "make_demo_catalog", str(opts["demo_dir"]), "--no-hint", stdout=self.stdout
            )
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
        from catalog.models import Artwork

        lacking = Artwork.objects.filter(genre__isnull=True).exclude(image="")
        if lacking.exists() and not lacking.filter(genre_labels__source="vqa").exists():
            call_command("label_genres", "--no-progress", stdout=self.stdout)
        self._demo_users(opts["admin_password"])

    def _demo_users(self, admin_password: str) -> None:
        from django.contrib.auth.models import Group

        user_model = get_user_model()
        if user_model.objects.exists():
            return
        user_model.objects.create_superuser("admin", "", admin_password)
        curator = user_model.objects.create_user("curator", "", "curator")
        curator.groups.add(Group.objects.get(name="curators"))
        user_model.objects.create_user("artist", "", "artist")
        self.stdout.write(
            self.style.WARNING(
                f"Created local demo accounts: admin / {admin_password} (superuser), "
                "curator / curator (reviews genre labels), artist / artist (requests "
                "generations). For this local demo only; change them in the admin."
            )
        )
