"""python manage.py build_tiny_models [DIR]: tiny stand-ins for every model, built offline.

Each is built from a config with the real classes (BLIP-2 retrieval, BLIP-2 OPT for
captions/VQA, Stable Diffusion 1.5-shaped pipeline, CLIP, SD's safety checker), saved
with save_pretrained and marked MYTHRAGEN_TINY_MODEL.json, so the real loading code
reloads it from disk and the UI says a tiny model stands in. Random weights: outputs
are not meaningful.
"""

import importlib
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

# (folder, module, builder, variable that points a setting at it)
TINY_MODELS = [
    (
        "tiny-blip2-retrieval",
        "retrieval.ml.tiny",
        "build_tiny_blip2_retrieval",
        "MYTHRAGEN_BLIP2_RETRIEVAL_MODEL",
    ),
    (
        "tiny-blip2-vqa",
        "labelling.ml.tiny",
        "build_tiny_blip2_vqa",
        "MYTHRAGEN_VQA_MODEL",
    ),
    ("tiny-sd15", "generation.ml.tiny", "build_tiny_sd", "MYTHRAGEN_SD_MODEL"),
    ("tiny-clip", "generation.ml.tiny", "build_tiny_clip", "MYTHRAGEN_CLIP_MODEL"),
    (
        "tiny-safety-checker",
        "generation.ml.tiny",
        "build_tiny_safety_checker",
        "MYTHRAGEN_SAFETY_CHECKER_MODEL",
    ),
]


def tiny_model_paths(root: Path | None = None) -> dict[str, Path]:
    """Where each tiny model lives, keyed by the variable(s) that select it."""
    root = Path(root or settings.MODELS_DIR)
    out = {}
    for folder, _module, _builder, variables in TINY_MODELS:
        for variable in variables.split():
            out[variable] = root / folder
    return out


class Command(BaseCommand):
    help = "Build tiny offline stand-ins of every model (for tests and the offline demo)."

    def add_arguments(self, parser):
        parser.add_argument(
            "dir",
            nargs="?",
            type=Path,
            default=None,
            help="target folder (default MYTHRAGEN_MODELS_DIR)",
        )

    def handle(self, *args, **opts):
        root = Path(opts["dir"] or settings.MODELS_DIR)
        root.mkdir(parents=True, exist_ok=True)
        for folder, module, builder, _variables in TINY_MODELS:
            build = getattr(importlib.import_module(module), builder)
            path = build(root / folder)
            self.stdout.write(f"built {folder}: {path}")
        # The hint only where it applies: variables that do not point at these models yet
        # (`make run` sets them all, through .env).
        unset = {
            variable: path
            for variable, path in tiny_model_paths(root).items()
            if os.environ.get(variable) != str(path)
        }
        if unset:
            self.stdout.write("To use them, set:")
            for variable, path in unset.items():
                self.stdout.write(f"  {variable}={path}")
