"""python manage.py generate "PROMPT" --out DIR: request a generation, wait, write the PNGs.

By default the request goes to the Celery workers (training and rendering queues) and the
command follows the job's progress; `--inline` runs every step in this process instead
(no worker needed). `--from-png FILE` re-runs the generation a MythraGen PNG records.
"""

import shutil
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from generation import services
from jobs.models import ACTIVE_STATUSES, JobStatus


class Command(BaseCommand):
    help = "Generate an image with retrieval-trained LoRAs; waits and writes the PNG(s)."

    def add_arguments(self, parser):
        parser.add_argument("prompt", nargs="?", default="")
        parser.add_argument("--out", type=Path, required=True, help="folder for the PNG(s)")
        parser.add_argument("--negative-prompt", default="")
        parser.add_argument("--seed", type=int, default=None, help="default: random")
        parser.add_argument("--steps", type=int, default=None)
        parser.add_argument("--guidance", type=float, default=None)
        parser.add_argument("--size", type=int, default=None, help="width and height")
        parser.add_argument("--width", type=int, default=None)
        parser.add_argument("--height", type=int, default=None)
        parser.add_argument("--sampler", default=None)
        parser.add_argument("--k", type=int, default=None, help="retrieved paintings per LoRA")
        parser.add_argument("--weight-artist-style", type=float, default=None)
        parser.add_argument("--weight-genre-style", type=float, default=None)
        for name in ("artist", "style", "genre"):
            parser.add_argument(f"--{name}", default=None, help=f"retrieve only this {name}")
        parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
        parser.add_argument(
            "--allow-unknown-names",
            action="store_true",
            help="generate even if the prompt names an artist the catalog lacks",
        )
        parser.add_argument("--user", default=None, help="request as this user (queue limit)")
        parser.add_argument("--inline", action="store_true", help="run here, not on workers")
        parser.add_argument("--from-png", type=Path, default=None, help="re-run this PNG")
        parser.add_argument("--timeout", type=float, default=24 * 3600)

    def handle(self, *args, **opts):
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"no user {opts['user']!r}")
        if opts["inline"]:
            from celery_app import app

            app.conf.task_always_eager = True
        try:
            generation = self._request(user, opts)
        except services.GenerationRequestError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"generation #{generation.pk}: job #{generation.job_id}")
        job = self._wait(generation, opts["timeout"])
        generation.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            reason = (job.error or job.status).split("\n\n")[0]
            raise CommandError(f"generation #{generation.pk} {job.status}: {reason}")
        out = opts["out"]
        out.mkdir(parents=True, exist_ok=True)
        for field in (generation.image, generation.baseline_image):
            if field:
                target = out / Path(field.name).name
                with default_storage.open(field.name, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                self.stdout.write(f"wrote {target}")
        if generation.is_tiny:
            self.stdout.write("note: a tiny stand-in model rendered this (noise-like image)")

    def _request(self, user, opts):
        if opts["from_png"]:
            from generation.ml.provenance import read_png_provenance

            provenance = read_png_provenance(opts["from_png"])
            if not provenance:
                raise CommandError(f"{opts['from_png']} carries no MythraGen provenance")
            return services.generation_from_provenance(provenance, user)
        if not opts["prompt"]:
            raise CommandError("give a PROMPT (or --from-png FILE)")
        # Options left out take the form's defaults (services.generation_defaults: the
        # settings that `make run` writes to .env), like the page and the API.
        given = {
            "steps": opts["steps"],
            "guidance": opts["guidance"],
            "width": opts["width"] or opts["size"],
            "height": opts["height"] or opts["size"],
            "sampler": opts["sampler"],
            "k": opts["k"],
            "weight_artist_style": opts["weight_artist_style"],
            "weight_genre_style": opts["weight_genre_style"],
        }
        params = services.GenerationParams(
            prompt=opts["prompt"],
            negative_prompt=opts["negative_prompt"],
            seed=opts["seed"],
            filters={n: opts[n] for n in ("artist", "style", "genre") if opts[n]},
            with_baseline=not opts["no_baseline"],
            allow_unknown_names=opts["allow_unknown_names"],
            **{
                name: default if given[name] is None else given[name]
                for name, default in services.generation_defaults().items()
                if name in given
            },
        )
        return services.generation_request(user, params)

    def _wait(self, generation, timeout: float):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            job = type(generation.job).objects.get(pk=generation.job_id)
            line = f"{job.status}: {job.stage} {job.progress:.0%}"
            if line != last:
                self.stdout.write(line)
                last = line
            if job.status not in ACTIVE_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise CommandError(f"no result within {timeout:g} s (job #{job.pk} goes on)")
            time.sleep(0.5)
