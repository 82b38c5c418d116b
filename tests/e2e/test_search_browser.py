"""A visitor searches the catalog by prompt in a real browser."""

import pytest

from catalog.models import Artwork
from tests.e2e.conftest import broken_images, cards, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e"


def _hits(page) -> list[dict]:
    """Each result card: artwork id, the labels line, its score and per-slot scores."""
    shown = cards(page)
    slots = page.eval_on_selector_all(
        ".results .card .slots",
        """boxes => boxes.map(b => Object.fromEntries([...b.querySelectorAll('.slot')]
            .map(s => s.title.split(': ')).map(([n, v]) => [n, Number(v)])))""",
    )
    assert len(slots) == len(shown)
    hits = []
    for card, slot in zip(shown, slots, strict=True):
        labels, score = card["meta"]
        assert score.startswith("score "), score
        hits.append({"id": card["id"], "labels": labels, "score": float(score[6:]), "slots": slot})
    return hits


def _labels(art: Artwork) -> str:
    genre = art.genre.display_name if art.genre else "no genre"
    return f"{art.artist.name} · {art.style.display_name} · {genre}"


def _submit(page, expect_status: int | tuple[int, ...] = 200) -> int:
    # A prompt search is a GET: the URL holds the prompt and the filters.
    with page.expect_response(
        lambda r: "/search/?" in r.url and r.request.method == "GET"
    ) as response:
        page.click("#search-form button[type=submit]")
    page.wait_for_load_state()
    status = response.value.status
    expected = expect_status if isinstance(expect_status, tuple) else (expect_status,)
    assert status in expected, (status, page.inner_text("main"))
    return status


def test_search_by_prompt_restrict_and_refuse_an_empty_prompt(
    live_server, indexed_demo, browser_page, page_errors
):
    page = browser_page
    page.goto(f"{live_server.url}/search/")
    assert "Type a prompt" in page.inner_text(".results .empty")

    page.fill("#search-form input[name=q]", PROMPT)
    _submit(page)
    summary = " ".join(page.inner_text(".results .result-count").split())
    # The artist and the style named in the prompt fill their slots; the rest is content.
    assert "artist: Chiyo Hanabusa" in summary, summary
    assert "style: Ukiyo e" in summary, summary
    assert "content: “quiet hills”" in summary, summary
    assert page.input_value("#search-form input[name=q]") == PROMPT  # kept for refining

    hits = _hits(page)
    total = Artwork.objects.count()
    assert len(hits) == min(24, total) and summary.startswith(f"{len(hits)} results")
    assert len({h["id"] for h in hits}) == len(hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True), scores  # best first
    rows = Artwork.objects.select_related("artist", "style", "genre")
    arts = rows.in_bulk([h["id"] for h in hits])
    for hit in hits:
        assert hit["labels"] == _labels(arts[hit["id"]]), hit
        assert set(hit["slots"]) == {"content", "genre", "artist", "style"}, hit
        assert hit["slots"]["genre"] == 0  # the prompt names no genre: its slot scores nothing
    # Works by the named artist in the named style match both slots and come first.
    both = [
        h["id"]
        for h in hits
        if arts[h["id"]].artist.slug == "chiyo-hanabusa" and arts[h["id"]].style.name == "Ukiyo_e"
    ]
    assert both and [h["id"] for h in hits[: len(both)]] == both, (both, hits[: len(both)])
    assert hits[0]["slots"]["artist"] > 0 and hits[0]["slots"]["style"] > 0
    assert broken_images(page, ".results img") == []
    screenshot(page, "search-results")

    # The same prompt, restricted to one genre, five results.
    page.select_option("#search-form select[name=genre]", "landscape")
    page.fill("#search-form input[name=k]", "5")
    _submit(page)
    landscapes = set(Artwork.objects.filter(genre__name="landscape").values_list("id", flat=True))
    summary = " ".join(page.inner_text(".results .result-count").split())
    assert f"within {len(landscapes)} artworks" in summary, summary
    hits = _hits(page)
    assert len(hits) == 5 and {h["id"] for h in hits} <= landscapes
    assert all(h["labels"].endswith(" · landscape") for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True), scores
    assert page.input_value("#search-form select[name=genre]") == "landscape"
    screenshot(page, "search-restricted-genre")

    # An empty prompt: the form says what is missing, nothing crashes, no results.
    page.fill("#search-form input[name=q]", "   ")
    _submit(page, expect_status=(200, 400))  # a refused form; never a 500
    assert page.inner_text("#search-form [role=alert]") == "Give a prompt or an image."
    assert (
        page.eval_on_selector("#search-form [role=alert]", "e => getComputedStyle(e).color")
        == "rgb(170, 0, 0)"
    )  # styled as an error, like every other error on the site
    assert page.query_selector(".results .card") is None
    screenshot(page, "search-empty-prompt")

    # A prompt of connecting words only: a readable error (400), not a server error.
    page.fill("#search-form input[name=q]", "by the")
    _submit(page, expect_status=400)
    assert page.inner_text(".results [role=alert]") == "The prompt has no words to search with."
    assert page.query_selector(".results .card") is None
    screenshot(page, "search-no-words")

    refused = f"HTTP 400 {live_server.url}/search/?"  # the two refused searches above
    assert [e for e in page_errors if not e.startswith(refused)] == []


def test_search_is_a_link_that_can_be_shared_and_reloaded(
    live_server, indexed_demo, browser_page, page_errors
):
    page = browser_page
    page.goto(f"{live_server.url}/search/")
    page.fill("#search-form input[name=q]", PROMPT)
    page.select_option("#search-form select[name=genre]", "landscape")
    _submit(page)
    url = page.url
    assert "q=quiet+hills+by+Chiyo+Hanabusa" in url and "genre=landscape" in url, url
    first = [h["id"] for h in _hits(page)]

    # Opened as a link (a bookmark, a shared URL): the same prompt, filters and results.
    page.goto("about:blank")
    page.goto(url)
    assert page.input_value("#search-form input[name=q]") == PROMPT
    assert page.input_value("#search-form select[name=genre]") == "landscape"
    assert [h["id"] for h in _hits(page)] == first
    # A reload re-sends nothing: no "resubmit the form?" (a GET is safe to repeat).
    page.reload()
    assert [h["id"] for h in _hits(page)] == first
    assert "Search" in page.title() and PROMPT in page.title()

    # ?q= from anywhere fills the field and searches.
    page.goto(f"{live_server.url}/search/?q=a+portrait")
    assert page.input_value("#search-form input[name=q]") == "a portrait"
    assert "genre: portrait" in page.inner_text(".results .result-count")
    # How each name was read is on the page.
    evidence = page.inner_text("#search-evidence")
    assert "genre word “portrait”" in evidence, evidence

    # A name the catalog lacks is said, not dropped silently.
    page.goto(f"{live_server.url}/search/?q=a+harbour+at+dawn+by+Claude+Monet")
    notices = page.inner_text("#search-notices")
    assert "“Claude Monet” is not an artist in the catalog" in notices, notices
    screenshot(page, "search-unknown-artist")

    # The examples the page gives are made of this catalog's names.
    page.goto(f"{live_server.url}/search/")
    example = page.inner_text(".results .empty em")
    from catalog.models import Artist

    assert any(a.name in example for a in Artist.objects.all()), example
    assert "Monet" not in page.content()
    page.click(".results .empty a")
    page.wait_for_load_state()
    assert page.input_value("#search-form input[name=q]") == example
    assert page.query_selector("#search-notices") is None  # nothing unknown in it
    assert _hits(page)
    assert page_errors == []
