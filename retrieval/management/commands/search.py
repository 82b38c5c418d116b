"""python manage.py search "PROMPT" [--k N] [--json] [--style X ...]: ranked artworks."""

import json

from django.core.management.base import BaseCommand, CommandError

from retrieval.selectors import SearchInputError, artwork_search
from retrieval.services import RetrievalUnavailable


class Command(BaseCommand):
    help = "Search the catalog with a prompt; prints the ranked artworks (or JSON with --json)."

    def add_arguments(self, parser):
        parser.add_argument("prompt")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", action="store_true")
        for name in ("style", "genre", "artist", "has_genre", "label_source", "split"):
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                default=None,
                help=f"restrict to this {name} (catalog filter)",
            )

    def handle(self, *args, **opts):
        filters = {
            n: opts[n]
            for n in ("style", "genre", "artist", "has_genre", "label_source", "split")
            if opts[n] is not None
        }
        try:
            result = artwork_search(opts["prompt"], k=opts["k"], filters=filters)
        except (SearchInputError, RetrievalUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        rows = [
            {
                "rank": n,
                "id": h.artwork.pk,
                "path": h.artwork.path,
                "title": h.artwork.title,
                "artist": h.artwork.artist.name,
                "style": h.artwork.style.name,
                "genre": h.artwork.genre.name if h.artwork.genre else None,
                "score": round(h.score, 4),
                "slots": {k: round(v, 4) for k, v in h.slots.items()},
            }
            for n, h in enumerate(result.hits, start=1)
        ]
        if opts["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "prompt": opts["prompt"],
                        "model_id": result.model_id,
                        "is_tiny": result.is_tiny,
                        "index_version": result.index_version,
                        "recognised": [
                            {"slot": m.slot, "name": m.name, "evidence": m.evidence}
                            for m in result.parsed.matches
                        ]
                        if result.parsed
                        else [],
                        "messages": result.parsed.messages if result.parsed else [],
                        "results": rows,
                    },
                    indent=2,
                )
            )
            return
        if result.parsed:
            for m in result.parsed.matches:
                self.stdout.write(f"{m.slot}: {m.display_name} ({m.evidence})")
            for message in result.parsed.messages:
                self.stdout.write(self.style.WARNING(f"note: {message}"))
        for r in rows:
            self.stdout.write(
                f"{r['rank']:>3}. {r['score']:.3f}  {r['title']} - {r['artist']} "
                f"[{r['style']}, {r['genre'] or 'no genre'}]  {r['path']}"
            )
