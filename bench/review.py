"""Genre labelling on the full real WikiArt metadata, and how well the review queue finds
wrong labels, side by side with baseline rankings.

    .venv/bin/python bench/review.py [--reuse] [--planted 300] [--sqlite]

1. A fresh database (embedded PostgreSQL+pgvector in var/bench-review/pg, or SQLite with
   --sqlite): migrate, import the 81,446 real artworks (metadata only), then
   `label_genres` with the defaults (no genre model yet: it trains one, then labels the
   16,452 genre-less artworks; timed, target < 5 min), then `build_index` (the neighbours
   of the queue's disagreement signal).
2. Plants wrong WikiArt labels on `--planted` artworks of the genre val split (never
   trained on): each gets a new WikiArt label naming another genre its artist painted
   (a plausible mistake, not a random one), as a re-import of a wrong WikiArt row would.
3. Ranks the review queue (every labelled artwork a curator has not confirmed) four ways
   and reports the share of the planted labels found in its first 5%: the queue as it
   was (model confidence, WikiArt's labels counting as certain), neighbour disagreement
   alone, the genre model's doubt alone, and the queue as it is now
   (`labelling.selectors.review_queue`).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import manage, pgserver_stop  # noqa: E402 - the root is importable now

DATA = ROOT.parent / "shared" / "data" / "wikiart" / "artgan"
WORK = ROOT / "var" / "bench-review"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="store_true", help="keep an already built database")
    parser.add_argument("--planted", type=int, default=300)
    parser.add_argument("--share", type=float, default=0.05, help="head of the queue to read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split",
        choices=["val", "train"],
        default="val",
        help="plant on this genre split (train: to choose the queue's weights on)",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} is missing (the real metadata lives in ../shared/data)")
    work = WORK / ("sqlite" if args.sqlite else "pg")
    url = f"sqlite:///{work / 'db.sqlite3'}" if args.sqlite else f"pgserver://{work / 'pg'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MYTHRAGEN_EMBEDDER": "minilm",
        "MYTHRAGEN_INDEX_DIR": str(work / "index"),
        "MYTHRAGEN_MODELS_DIR": str(work),  # the genre model: <models>/genre-model
        "MEDIA_ROOT": str(work / "media"),
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "WARNING",
    }
    fresh = not args.reuse or not (work / "index").exists()
    if fresh and work.exists():
        if not args.sqlite:
            pgserver_stop(work / "pg")
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--noinput", "-v0")
    if fresh:
        seconds, _ = manage(env, "import_wikiart", str(args.data), "--no-progress")
        print(f"import {seconds:.1f} s")
        seconds, out = manage(env, "label_genres", "--no-progress")
        print(out.strip())
        print(f"label_genres (trains the genre model, then labels): {seconds:.1f} s "
              f"({seconds / 60:.2f} min; target < 5 min)")  # fmt: skip
        seconds, _ = manage(env, "build_index", "--no-progress")
        print(f"build_index {seconds:.1f} s")

    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import transaction

    # Planted labels are rolled back at the end: --reuse starts from the same catalog.
    with transaction.atomic():
        _measure(args)
        transaction.set_rollback(True)


def _measure(args) -> None:
    from catalog.models import Artwork, GenreLabel, LabelSource
    from labelling import selectors
    from retrieval.services import artwork_labels_changed

    planted = _plant(Artwork, GenreLabel, LabelSource, args.planted, args.seed, args.split)
    artwork_labels_changed(list(planted))
    candidates = selectors.review_candidates()
    total = candidates.count()
    head = int(round(args.share * total))
    print(
        f"\nplanted {len(planted)} wrong WikiArt labels on {args.split} artworks; the queue holds "
        f"{total:,} labelled artworks; its first {args.share:.0%}: {head:,}"
    )

    started = time.perf_counter()
    queue = selectors.review_queue(limit=head)
    queue_seconds = time.perf_counter() - started
    rows = list(
        candidates.order_by("id").values_list(
            "id", "genre__name", "genre_source", "genre_confidence", "genre_id"
        )
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    old_doubt = np.array(
        [1 - r[3] if r[2] != LabelSource.WIKIART and r[3] is not None else 0.0 for r in rows]
    )
    p_model, _picks = selectors.genre_assessments().lookup(ids, [r[1] for r in rows])
    own = np.array(
        [r[3] if r[2] != LabelSource.WIKIART and r[3] is not None else np.nan for r in rows]
    )
    p = np.where(np.isnan(own), p_model, own)
    model_doubt = np.where(np.isnan(p), 0.0, 1 - p)
    started = time.perf_counter()
    stored = selectors._stored_disagreement(ids, np.array([r[4] for r in rows]))
    if stored is not None:
        neighbours = np.nan_to_num(stored[0])
        how = "from the index build's neighbour table"
    else:  # an index built before neighbour tables: search every candidate
        arts = list(candidates.select_related("genre"))
        share = selectors._neighbour_disagreement(arts)
        neighbours = np.array([share.get(int(i), (0.0, None))[0] for i in ids])
        how = "searched live"
    neighbour_seconds = time.perf_counter() - started

    def found(order) -> int:
        return len(planted & {int(i) for i in ids[order[:head]]})

    def ranking(score) -> np.ndarray:
        return np.lexsort((ids, -score))

    results = [
        ("confidence only (the queue before)", found(ranking(old_doubt))),
        ("neighbour disagreement only", found(ranking(neighbours))),
        ("genre model doubt only", found(ranking(model_doubt))),
        *[
            (
                f"doubt + {w} x neighbours, every candidate",
                found(ranking(model_doubt + w * neighbours)),
            )
            for w in (0.5, 1.0, 2.0)
        ],
        ("review queue now (doubt + neighbours)", len(planted & {it.artwork.pk for it in queue})),
        ("random order (expected)", round(len(planted) * head / total)),
    ]
    print(f"\n{'ranking':42}{'found':>8}{'share':>9}")
    for name, n in results:
        print(f"{name:42}{n:>8}{n / len(planted):>9.1%}")
    print(
        f"\nreview_queue(limit={head}) took {queue_seconds:.1f} s; neighbour disagreement "
        f"of all {total:,} candidates ({how}) {neighbour_seconds:.1f} s"
    )


def _plant(Artwork, GenreLabel, LabelSource, n: int, seed: int, split: str) -> set[int]:
    """Give `n` artworks of the split a wrong WikiArt label: another genre their artist
    painted."""
    from catalog.services import artwork_genre_refresh

    rng = random.Random(seed)
    painted: dict[int, set[int]] = {}
    for artist, genre in Artwork.objects.exclude(genre=None).values_list("artist_id", "genre_id"):
        painted.setdefault(artist, set()).add(genre)
    all_genres = sorted({g for gs in painted.values() for g in gs})
    pool = list(
        Artwork.objects.filter(genre_split=split, genre_source=LabelSource.WIKIART)
        .order_by("id")
        .values_list("id", "artist_id", "genre_id")
    )
    chosen = rng.sample(pool, n)
    labels = []
    for artwork_id, artist, genre in chosen:
        options = sorted(painted.get(artist, set()) - {genre}) or [
            g for g in all_genres if g != genre
        ]
        labels.append(
            GenreLabel(
                artwork_id=artwork_id,
                genre_id=rng.choice(options),
                source=LabelSource.WIKIART,
                model_id="wikiart",
                note="planted by bench/review.py",
            )
        )
    GenreLabel.objects.bulk_create(labels)
    artwork_genre_refresh([a for a, _x, _g in chosen])
    return {a for a, _x, _g in chosen}


if __name__ == "__main__":
    main()
