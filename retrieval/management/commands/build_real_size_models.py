"""python manage.py build_real_size_models DIR [--role ROLE ...] [--dtype DTYPE]

Real-size stand-ins of every model role (`mlcore.real_size`): the published
configurations (SD 1.5, its safety checker, BLIP-2 ITM ViT-g, BLIP-2 OPT-2.7b, CLIP
ViT-L/14) with seeded random weights, saved in the hub checkpoints' layout under
DIR/<role> and marked "real-size", so the project's normal loading code reads them and the
UI says a stand-in is in use. For memory, precision and shape checks; outputs are
meaningless. All five take ~15 GB in half precision: put DIR outside the repository.
Builds are idempotent (a finished folder is kept) and atomic (temp folder, then rename).
"""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mlcore import real_size
from mlcore.errors import ModelInputError
from mlcore.stand_in import stand_in_info


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class Command(BaseCommand):
    help = (
        "Build real-size stand-ins (published configurations, random weights) of every "
        "model role into DIR/<role>. ~15 GB in all: put DIR outside the repository."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "dir",
            type=Path,
            help="target folder, OUTSIDE the repository (e.g. /data/mythragen-real-size)",
        )
        parser.add_argument(
            "--role",
            action="append",
            dest="roles",
            choices=real_size.ROLES,
            help=f"build only this role (repeatable; default: all of {', '.join(real_size.ROLES)})",
        )
        parser.add_argument(
            "--dtype",
            choices=("float32", "float16", "bfloat16"),
            default=None,
            help="on-disk dtype of every role built (default: half precision, float16 for "
            "sd15 and safety-checker, bfloat16 for blip2-itm, blip2-opt and clip-l14)",
        )

    def handle(self, *args, **opts):
        root = opts["dir"].expanduser().absolute()
        if _inside(root, Path(settings.BASE_DIR)):
            raise CommandError(
                f"{root} is inside the repository ({settings.BASE_DIR}); real-size models "
                "take ~15 GB: choose a folder outside it"
            )
        roles = list(dict.fromkeys(opts["roles"] or real_size.ROLES))
        root.mkdir(parents=True, exist_ok=True)
        built = {}
        for role in roles:
            folder = root / role
            kept = real_size.is_complete(folder, role)
            self.stdout.write(f"{role}: {'already built' if kept else 'building'} in {folder}")
            started = time.monotonic()
            try:
                path = real_size.build(role, folder, dtype=opts["dtype"])
            except (real_size.RealSizeError, ModelInputError) as exc:
                raise CommandError(f"{role}: {exc}") from exc
            seconds = time.monotonic() - started
            info = stand_in_info(path) or {}
            size = real_size.folder_bytes(path)
            params = info.get("params")
            params_text = f"{params:,}" if isinstance(params, int) else "?"
            self.stdout.write(
                f"  {path}\n"
                f"  {params_text} parameters (published {real_size.published_role_params(role):,}),"
                f" {info.get('dtype', '?')}, {size / 1e9:.2f} GB on disk, {seconds:.1f} s"
                + (" (kept)" if kept else "")
            )
            built[role] = path
        self.stdout.write("To use them, set:")
        for role, path in built.items():
            for variable in real_size.ENV_VARS[role]:
                self.stdout.write(f"  {variable}={path}")
