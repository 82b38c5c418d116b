"""Retrieval evaluation: the paper's label protocol plus a content benchmark.

Protocol (label queries, as the MythraGen paper's Table 1/2):
- Corpus: every artwork in the current index (its fused vectors).
- A *genre* query fills only the genre slot with the genre's label embedding (the same
  text the catalog embeds); an artwork is relevant when its current genre is that genre.
  Likewise *artist* (the artists of ArtGAN's 23-artist list, else the 23 with most works)
  and *style* (all styles) queries.
- A *genre+artist+style* query fills the three slots for a combination that exists in
  the catalog with at least `min_combo` works (the most frequent `max_combos` among the
  queried artists); relevant = artworks with all three labels.
- AP@k = (1 / min(k, R)) * sum over ranks i <= k of P@i * rel_i, with R the number of
  relevant artworks in the corpus; mAP@k is its mean over the queries of a type.
- Ablation (only when the embedder has an image side and images exist): the same
  queries against image-only vectors (the image embedding alone, text-to-image) versus
  the fused vectors, exact search.

Content benchmark (beyond the paper): held-out artworks (the style task's val split)
with a title of at least two words; the prompt "<title> by <artist name>" should find
that exact work: recall@10 and MRR over the sample. Artist-intent prompts "in the style
of <surname>'s <their most common style>": precision@10 of that artist.

Natural prompts (`natural_benchmark`): the forms people write, per queried artist with a
surname of its own, each scored by precision@10 of its intent (the share of the top 10 by
the artist meant; for the controls, the share by the artist *not* meant) and by whether the
parser linked what a person would:
- possessive: "<Surname>'s <genre> of <content>";
- style adjective: "a <style adjective> <genre> by <Surname>" ("an impressionist landscape");
- contradiction: "<content>, captured with striking <a style the artist has no works in>,
  inspired by <Surname>": the search should follow the artist;
- surnames that are English words (COMMON_WORD_NAMES, artists of the catalog that have
  one): "by <Surname>" must link the artist, and the word alone in a sentence ("a portrait
  of a close friend") must not (its precision is the share of that artist's works, which
  should be near 0).
"""

from __future__ import annotations

import random
import time
from collections import Counter

import numpy as np
from django.db.models import Count

from catalog.models import Artist, Artwork, Genre, Style
from retrieval import selectors, services
from retrieval.models import LabelEmbedding
from retrieval.vectors import fused_matrix

KS = (5, 15, 25, 40, 50)


def _label_vec(space, kind: str, label_id: int) -> np.ndarray:
    row = LabelEmbedding.objects.get(space=space, kind=kind, label_id=label_id)
    return np.frombuffer(bytes(row.vector), dtype=np.float32)


def _map_table(loaded, queries, labels_of, kmax: int) -> dict:
    """queries: list of (query vector, predicate on an artwork's labels, n_relevant)."""
    from retrieval.ml.evaluation import average_precision_at_k

    if not queries:
        return {**{f"mAP@{k}": None for k in KS}, "queries": 0}
    matrix = np.stack([q for q, _p, _n in queries]).astype(np.float32)
    _scores, ids = loaded.search(matrix, kmax)
    out = {}
    for k in KS:
        aps = []
        for (_q, pred, n_rel), row in zip(queries, ids, strict=True):
            ranked = [bool(i >= 0 and pred(labels_of.get(int(i)))) for i in row[:k]]
            aps.append(average_precision_at_k(ranked, k, n_rel))
        out[f"mAP@{k}"] = float(np.mean(aps)) if aps else None
    out["queries"] = len(queries)
    return out


def _queried_artists(limit: int = 23) -> list[Artist]:
    listed = list(Artist.objects.filter(class_index__isnull=False))
    if listed:
        return listed
    return list(Artist.objects.annotate(n=Count("artworks")).order_by("-n")[:limit])


def evaluate(
    *, min_combo: int = 5, max_combos: int = 200, content_sample: int = 500, seed: int = 0
) -> dict:
    """Run the whole evaluation on the current index; returns a JSON-able dict."""
    from retrieval.ml.fusion import query_vector

    space = selectors.space_configured()
    loaded = selectors.index_store(space).current() if space is not None else None
    if loaded is None:
        raise services.RetrievalUnavailable("No index built: run `python manage.py build_index`.")
    started = time.monotonic()
    labels_of = {
        a: (g, ar, s)
        for a, g, ar, s in Artwork.objects.values_list("id", "genre_id", "artist_id", "style_id")
    }
    indexed = set(int(i) for i in getattr(loaded, "ids", labels_of.keys()))
    counts = Counter()
    for art_id, labels in labels_of.items():
        if art_id in indexed:
            counts[("g", labels[0])] += 1
            counts[("a", labels[1])] += 1
            counts[("s", labels[2])] += 1
            counts[("gas", labels)] += 1
    dim = space.dim
    kmax = max(KS)
    report: dict = {
        "space": str(space),
        "model_id": space.model_id,
        "is_tiny": space.is_tiny,
        "index": {"version": loaded.version, "kind": loaded.kind, "n": loaded.n},
        "protocol": "label queries fill their slots only; see retrieval/evaluation.py",
    }

    genre_q = [
        (
            query_vector(None, genre=_label_vec(space, "genre", g.pk), dim=dim),
            (lambda lab, gid=g.pk: lab is not None and lab[0] == gid),
            counts[("g", g.pk)],
        )
        for g in Genre.objects.all()
        if counts[("g", g.pk)]
    ]
    artists = [a for a in _queried_artists() if counts[("a", a.pk)]]
    artist_q = [
        (
            query_vector(None, artist=_label_vec(space, "artist", a.pk), dim=dim),
            (lambda lab, aid=a.pk: lab is not None and lab[1] == aid),
            counts[("a", a.pk)],
        )
        for a in artists
    ]
    style_q = [
        (
            query_vector(None, style=_label_vec(space, "style", s.pk), dim=dim),
            (lambda lab, sid=s.pk: lab is not None and lab[2] == sid),
            counts[("s", s.pk)],
        )
        for s in Style.objects.all()
        if counts[("s", s.pk)]
    ]
    artist_ids = {a.pk for a in artists}
    combos = sorted(
        (
            (key[1], n)
            for key, n in counts.items()
            if key[0] == "gas" and key[1][0] and key[1][1] in artist_ids and n >= min_combo
        ),
        key=lambda p: -p[1],
    )[:max_combos]
    gas_q = [
        (
            query_vector(
                None,
                genre=_label_vec(space, "genre", g),
                artist=_label_vec(space, "artist", a),
                style=_label_vec(space, "style", s),
                dim=dim,
            ),
            (lambda lab, c=(g, a, s): lab == c),
            n,
        )
        for (g, a, s), n in combos
    ]
    report["label_queries"] = {
        "genre": _map_table(loaded, genre_q, labels_of, kmax),
        "artist": _map_table(loaded, artist_q, labels_of, kmax),
        "style": _map_table(loaded, style_q, labels_of, kmax),
        "genre+artist+style": _map_table(loaded, gas_q, labels_of, kmax),
    }
    report["ablation"] = _ablation(space, genre_q, artist_q, style_q, gas_q, labels_of, kmax)
    report["content"] = _content_benchmark(space, loaded, content_sample, seed)
    report["content"]["natural"] = natural_benchmark()
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


def _ablation(space, genre_q, artist_q, style_q, gas_q, labels_of, kmax) -> dict:
    """Image-only versus fused vectors (needs an image embedder and images)."""
    if not space.has_image:
        return {"skipped": "the embedder has no image side (text-only MiniLM): no image term"}
    from retrieval.models import ArtworkEmbedding

    rows = list(
        ArtworkEmbedding.objects.filter(space=space, image_vector__isnull=False).values_list(
            "artwork_id", "image_vector"
        )
    )
    if not rows:
        return {"skipped": "no artwork has an image embedding"}
    from retrieval.ml.index import exact_search

    ids = np.array([r[0] for r in rows], dtype=np.int64)
    image_only = np.stack([np.frombuffer(bytes(r[1]), dtype=np.float32) for r in rows])

    class _Exact:
        def __init__(self, vectors):
            self.vectors = vectors

        def search(self, queries, k):
            return exact_search(self.vectors, ids, queries, k)

    def text_queries(queries):
        # The image-only corpus has one block: use the sum of the query's slot blocks.
        d = space.dim
        return [(sum(q[i * d : (i + 1) * d] for i in range(4)), p, n) for q, p, n in queries]

    fused_ids, fused = fused_matrix(space)[:2]
    keep = np.isin(fused_ids, ids)

    class _FusedExact:
        def search(self, queries, k):
            return exact_search(fused[keep], fused_ids[keep], queries, k)

    out = {}
    for name, queries in (
        ("genre", genre_q),
        ("artist", artist_q),
        ("style", style_q),
        ("genre+artist+style", gas_q),
    ):
        out[name] = {
            "image_only": _map_table(
                _Exact(image_only),
                [(q / (np.linalg.norm(q) or 1), p, n) for q, p, n in text_queries(queries)],
                labels_of,
                kmax,
            ),
            "fused": _map_table(_FusedExact(), queries, labels_of, kmax),
        }
    return out


def _content_benchmark(space, loaded, sample: int, seed: int) -> dict:
    rng = random.Random(seed)
    pool = list(
        Artwork.objects.filter(style_split="val")
        .exclude(title__iregex=r"^untitled")
        .select_related("artist", "style")
        .only("id", "title", "artist__name", "style__name")
    )
    pool = [a for a in pool if len(a.title.split()) >= 2 and not a.title.split()[0].isdigit()]
    picked = rng.sample(pool, min(sample, len(pool)))
    hits10, rr = [], []
    started = time.monotonic()
    for art in picked:
        prompt = f"{art.title} by {art.artist.name}"
        result = selectors.artwork_search(prompt, k=50)
        ranked = [h.artwork.pk for h in result.hits]
        hits10.append(art.pk in ranked[:10])
        rr.append(1.0 / (ranked.index(art.pk) + 1) if art.pk in ranked else 0.0)
    per_query_ms = (time.monotonic() - started) * 1000 / max(len(picked), 1)

    intents = []
    for artist in _queried_artists():
        top_style = (
            Artwork.objects.filter(artist=artist)
            .values("style__name")
            .annotate(n=Count("id"))
            .order_by("-n")
            .first()
        )
        if not top_style:
            continue
        surname = artist.name.split()[-1]
        prompt = f"in the style of {surname}'s {top_style['style__name'].replace('_', ' ')}"
        result = selectors.artwork_search(prompt, k=10)
        precision = sum(h.artwork.artist_id == artist.pk for h in result.hits) / 10
        intents.append(
            {
                "prompt": prompt,
                "artist": artist.name,
                "precision@10": precision,
                "recognised": [m.name for m in result.parsed.matches],
            }
        )
    return {
        "title_prompts": {
            "n": len(picked),
            "recall@10": float(np.mean(hits10)) if hits10 else None,
            "MRR": float(np.mean(rr)) if rr else None,
            "ms_per_query": round(per_query_ms, 2),
            "example": f"{picked[0].title} by {picked[0].artist.name}" if picked else None,
        },
        "artist_intent": {
            "n": len(intents),
            "mean_precision@10": float(np.mean([i["precision@10"] for i in intents]))
            if intents
            else None,
            "queries": intents,
        },
    }


# Everyday sentences holding each common-word surname (the word, not the painter).
COMMON_WORD_SENTENCES = {
    "close": "a portrait of a close friend",
    "church": "a small church on a hill at dusk",
    "rose": "a still life with a red rose in a vase",
    "still": "a still pond at night",
    "west": "a town in the west at sunset",
    "north": "a lighthouse on the north coast",
    "green": "a green meadow with cows",
    "brown": "a brown horse in a field",
    "cross": "a cross on a hill",
    "turner": "a wood turner at his lathe",
    "miller": "a miller at his mill",
    "smith": "a smith at the forge",
    "frost": "frost on a winter field",
    "hunt": "a fox hunt in the woods",
    "bell": "a church bell tower",
    "david": "david and goliath",
    "moses": "moses in the desert",
    "thomas": "saint thomas the apostle",
    "john": "saint john the baptist",
    "martin": "saint martin and the beggar",
    "homer": "homer reciting his poems",
    "fish": "a still life with fish",
    "dove": "a white dove in flight",
}
GENRE_WORDS = {
    "portrait": "portrait",
    "landscape": "landscape",
    "still_life": "still life",
    "cityscape": "cityscape",
    "religious_painting": "religious painting",
    "genre_painting": "genre scene",
    "nude_painting": "nude",
    "sketch_and_study": "sketch",
    "abstract_painting": "abstract painting",
    "illustration": "illustration",
}
CONTENT_WORDS = {
    "portrait": "a woman in a blue dress",
    "landscape": "a river in the hills",
    "still_life": "fruit on a table",
    "cityscape": "a street at night",
    "religious_painting": "a saint in prayer",
}


def _style_adjective(style_name: str) -> str:
    base = style_name.replace("_", " ").lower()
    if base.endswith("ism") and " " not in base:
        return base[:-3] + "ist"
    return base


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _precision(result, artist_id: int) -> float:
    hits = result.hits[:10]
    return sum(h.artwork.artist_id == artist_id for h in hits) / 10 if hits else 0.0


def natural_benchmark(limit: int = 23) -> dict:
    """Precision@10 of natural prompts (see the module's docstring), per form."""
    from retrieval.query import COMMON_WORD_NAMES, PARTICLES, normalise, surname_words

    def surname(artist: Artist) -> tuple[str, str]:
        """(the surname as a prompt writes it, its last word): "van Gogh", "gogh"."""
        words = surname_words(tuple(normalise(artist.name).split()))
        shown = " ".join(w if w in PARTICLES else w.capitalize() for w in words)
        return shown, words[-1]

    owners: Counter = Counter()
    for artist in Artist.objects.all():
        if len(normalise(artist.name).split()) > 1:
            owners[surname(artist)[0].lower()] += 1

    started = time.monotonic()
    queried = _queried_artists(limit)
    forms: dict[str, list[dict]] = {
        "possessive": [],
        "style adjective": [],
        "contradiction (follows the artist)": [],
        "common-word surname after by": [],
        "common-word surname alone (control)": [],
        "shared surname after by (asks for the full name)": [],
    }

    def run(form: str, prompt: str, artist: Artist, *, expect_link: bool) -> None:
        result = selectors.artwork_search(prompt, k=10)
        linked = result.parsed.artist is not None and result.parsed.artist.label_id == artist.pk
        expected = linked == expect_link
        if form.startswith("shared"):  # not linked, and the page asks which one
            expected = not linked and any("could be any" in m for m in result.parsed.messages)
        forms[form].append(
            {
                "prompt": prompt,
                "artist": artist.name,
                "precision@10": _precision(result, artist.pk),
                "linked": linked,
                "as_expected": expected,
                "recognised": [f"{m.slot}: {m.name}" for m in result.parsed.matches],
                "notes": result.parsed.messages,
            }
        )

    styles = list(Style.objects.order_by("name"))
    for artist in queried:
        if len(normalise(artist.name).split()) < 2:
            continue
        name, _last = surname(artist)
        if owners[name.lower()] > 1:
            continue  # a shared surname: its own form below
        works = Artwork.objects.filter(artist=artist)
        top_genre = (
            works.exclude(genre=None)
            .values("genre__name")
            .annotate(n=Count("id"))
            .order_by("-n", "genre__name")
            .first()
        )
        top_style = (
            works.values("style__name", "style_id")
            .annotate(n=Count("id"))
            .order_by("-n", "style__name")
            .first()
        )
        if not top_genre or not top_style:
            continue
        genre = top_genre["genre__name"]
        content = CONTENT_WORDS.get(genre, "a quiet scene")
        run(
            "possessive",
            f"{name}'s {GENRE_WORDS.get(genre, 'painting')} of {content}",
            artist,
            expect_link=True,
        )
        run(
            "style adjective",
            f"{_article(_style_adjective(top_style['style__name']))} "
            f"{GENRE_WORDS.get(genre, 'painting')} by {name}",
            artist,
            expect_link=True,
        )
        painted = set(works.values_list("style_id", flat=True))
        absent = next((st for st in styles if st.pk not in painted and st.name == "Realism"), None)
        absent = absent or next((st for st in styles if st.pk not in painted), None)
        if absent is not None:
            run(
                "contradiction (follows the artist)",
                f"{content}, captured with striking {absent.name.replace('_', ' ').lower()}, "
                f"dramatic light, inspired by {name}",
                artist,
                expect_link=True,
            )
    common = [
        a
        for a in Artist.objects.annotate(n=Count("artworks")).filter(n__gte=10)
        if len(normalise(a.name).split()) > 1 and surname(a)[1] in COMMON_WORD_NAMES
    ]
    for artist in common:
        name, word = surname(artist)
        if owners[name.lower()] > 1:
            run(
                "shared surname after by (asks for the full name)",
                f"a painting by {name}",
                artist,
                expect_link=False,
            )
        else:
            run("common-word surname after by", f"a painting by {name}", artist, expect_link=True)
        sentence = COMMON_WORD_SENTENCES.get(word, f"a {word} in the evening light")
        run("common-word surname alone (control)", sentence, artist, expect_link=False)
    summary = {
        form: {
            "n": len(rows),
            "mean_precision@10": float(np.mean([r["precision@10"] for r in rows]))
            if rows
            else None,
            "read_as_a_person_would": float(np.mean([r["as_expected"] for r in rows]))
            if rows
            else None,
            "queries": rows,
        }
        for form, rows in forms.items()
    }
    summary["seconds"] = round(time.monotonic() - started, 2)
    return summary


def report_markdown(report: dict) -> str:
    tiny = ", TINY model" if report["is_tiny"] else ""
    index = report["index"]
    lines = [
        f"# Retrieval evaluation ({report['model_id']}{tiny})",
        "",
        f"Index {index['version']} ({index['kind']}, {index['n']:,} artworks)",
        "",
        "| query type | queries | " + " | ".join(f"mAP@{k}" for k in KS) + " |",
        "|---|---|" + "---|" * len(KS),
    ]
    for name, row in report["label_queries"].items():
        cells = " | ".join(
            "-" if row[f"mAP@{k}"] is None else f"{100 * row[f'mAP@{k}']:.1f}%" for k in KS
        )
        lines.append(f"| {name} | {row['queries']} | {cells} |")
    ab = report["ablation"]
    lines += ["", "## Image-only versus fused"]
    if "skipped" in ab:
        lines.append(f"Skipped: {ab['skipped']}.")
    else:
        lines += ["| query type | image-only mAP@50 | fused mAP@50 |", "|---|---|---|"]
        for name, row in ab.items():
            lines.append(
                f"| {name} | {100 * (row['image_only']['mAP@50'] or 0):.1f}% | "
                f"{100 * (row['fused']['mAP@50'] or 0):.1f}% |"
            )
    c = report["content"]
    t = c["title_prompts"]
    lines += [
        "",
        "## Content benchmark",
        "",
        f'- Title prompts of held-out works (n={t["n"]}, e.g. "{t["example"]}"): '
        f"recall@10 {t['recall@10']:.3f}, MRR {t['MRR']:.3f}, {t['ms_per_query']} ms/query"
        if t["n"]
        else "- Title prompts: no held-out artworks",
        f"- Artist-intent prompts (n={c['artist_intent']['n']}): mean precision@10 "
        f"{c['artist_intent']['mean_precision@10']:.3f}"
        if c["artist_intent"]["n"]
        else "- Artist-intent prompts: none",
    ]
    if c.get("natural"):
        lines += ["", natural_markdown(c["natural"])]
    return "\n".join(lines) + "\n"


def natural_markdown(natural: dict) -> str:
    lines = [
        "## Natural prompts (precision@10 of the intent)",
        "",
        "| form | prompts | precision@10 | read as a person would | example |",
        "|---|---|---|---|---|",
    ]
    for form, row in natural.items():
        if not isinstance(row, dict) or not row["n"]:
            continue
        lines.append(
            f"| {form} | {row['n']} | {row['mean_precision@10']:.3f} | "
            f"{100 * row['read_as_a_person_would']:.0f}% | {row['queries'][0]['prompt']} |"
        )
    lines.append(
        "\nControls: the share of the top 10 by the artist whose surname is the word "
        "(lower is better)."
    )
    return "\n".join(lines) + "\n"
