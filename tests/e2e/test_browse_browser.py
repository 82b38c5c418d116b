"""A visitor browses the catalog in a real browser: filters, pages, one artwork."""

import re

import pytest

from catalog import services as catalog_services
from catalog.models import Artwork
from tests.e2e.conftest import broken_images, cards, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _expected_meta(art: Artwork) -> list[str]:
    """The two meta lines a catalog card shows for `art`, built from the database."""
    if art.genre:
        genre_line = f"{art.genre.display_name} {art.get_genre_source_display()}"
    else:
        genre_line = "no genre"
    if art.is_synthetic:
        genre_line += " synthetic"
    return [f"{art.artist.name} · {art.style.display_name}", genre_line]


def _check_cards_against_db(page, expected_ids: set[int]) -> list[int]:
    """Every card on the page is an expected artwork and shows its labels as the DB has them."""
    shown = cards(page)
    assert shown, "no artwork cards on the page"
    ids = [c["id"] for c in shown]
    assert set(ids) <= expected_ids, set(ids) - expected_ids
    by_id = Artwork.objects.select_related("artist", "style", "genre").in_bulk(ids)
    for card in shown:
        art = by_id[card["id"]]
        assert card["title"].startswith(art.title), (card, art.title)
        assert [" ".join(m.split()) for m in card["meta"]] == _expected_meta(art), card
    return ids


def test_filter_page_through_and_open_an_artwork(
    live_server, indexed_demo, settings, browser_page, page_errors
):
    settings.CATALOG_PAGE_SIZE = 6  # the demo's ~20 works of one style span four pages
    page = browser_page
    page.goto(f"{live_server.url}/")
    total = Artwork.objects.count()
    assert page.inner_text(".result-count") == f"{total} matches"
    assert broken_images(page, ".results img") == []

    # The filter form: one style.
    page.select_option("#filter-form select[name=style]", "Impressionism")
    page.click("#filter-form button[type=submit]")
    page.wait_for_url(re.compile(r"style=Impressionism"))
    expected = set(Artwork.objects.filter(style__name="Impressionism").values_list("id", flat=True))
    assert len(expected) > 2 * settings.CATALOG_PAGE_SIZE
    assert page.inner_text(".result-count") == f"{len(expected)} matches"
    assert page.input_value("#filter-form select[name=style]") == "Impressionism"
    pages = -(-len(expected) // settings.CATALOG_PAGE_SIZE)
    assert page.inner_text(".pager span") == f"Page 1 of {pages}"
    screenshot(page, "catalog-filter-style-page1")

    # Page through every result page with the pager's links; the filter stays applied.
    seen: list[int] = []
    for number in range(1, pages + 1):
        if number > 1:
            page.click(".pager a[rel=next]")
            page.wait_for_function(
                f"document.querySelector('.pager span')?.innerText === 'Page {number} of {pages}'"
            )
            assert "style=Impressionism" in page.url
        ids = _check_cards_against_db(page, expected)
        assert len(ids) == min(settings.CATALOG_PAGE_SIZE, len(expected) - len(seen))
        seen += ids
        if number == 2:
            assert page.is_visible(".pager a[rel=prev]")
            screenshot(page, "catalog-filter-style-page2")
    assert page.query_selector(".pager a[rel=next]") is None
    assert len(seen) == len(set(seen)) and set(seen) == expected  # each work once, none lost

    # Two filters at once: an artist and a genre (values as the form's selects offer them).
    page.goto(f"{live_server.url}/")
    page.select_option("#filter-form select[name=artist]", "chiyo-hanabusa")
    page.select_option("#filter-form select[name=genre]", "landscape")
    page.click("#filter-form button[type=submit]")
    page.wait_for_url(re.compile(r"artist=chiyo-hanabusa"))
    expected = set(
        Artwork.objects.filter(artist__slug="chiyo-hanabusa", genre__name="landscape").values_list(
            "id", flat=True
        )
    )
    assert expected
    assert page.inner_text(".result-count").startswith(f"{len(expected)} match")
    ids = _check_cards_against_db(page, expected)
    assert set(ids) == expected
    assert broken_images(page, ".results img") == []
    screenshot(page, "catalog-filter-artist-genre")

    # A filter with no matches says so instead of showing an empty grid.
    page.fill("#filter-form input[name=q]", "no such title anywhere")
    page.click("#filter-form button[type=submit]")
    page.wait_for_selector(".results .empty")
    assert "No artworks match these filters." in page.inner_text(".results .empty")
    assert page.inner_text(".result-count") == "0 matches"

    # Open one artwork from the list. A curator's label first, so the provenance shows.
    page.goto(f"{live_server.url}/?artist=chiyo-hanabusa&genre=landscape")
    art = Artwork.objects.select_related("artist", "style", "genre").get(pk=ids[0])
    wikiart_genre = art.genre
    portrait = type(art.genre).objects.get(name="portrait")
    catalog_services.genre_label_add(art, portrait, source="curator", note="browser test")
    page.click(f".results .card a[href='/artworks/{art.pk}/']")
    page.wait_for_url(f"**/artworks/{art.pk}/")
    art.refresh_from_db()
    assert page.inner_text("h1") == art.title
    facts = {
        dt.inner_text(): " ".join(dd.inner_text().split())
        for dt, dd in zip(
            page.query_selector_all(".facts dt"), page.query_selector_all(".facts dd"), strict=True
        )
    }
    assert facts["Artist"] == art.artist.name
    assert facts["Style"] == art.style.display_name
    assert facts["Genre"] == "portrait (Curator)"
    history = page.inner_text("table.history tbody")
    assert "Curator" in history and "WikiArt" in history and wikiart_genre.display_name in history
    assert broken_images(page, ".picture img") == []

    # Similar artworks arrive by fetch: cards with scores, best first, not the work itself.
    page.wait_for_selector("#similar .card")
    similar = cards(page, "#similar .card")
    assert 1 <= len(similar) <= 8
    assert art.pk not in [c["id"] for c in similar]
    scores = [float(c["meta"][0].rsplit("·", 1)[1]) for c in similar]
    assert scores == sorted(scores, reverse=True), scores
    assert broken_images(page, "#similar img") == []
    screenshot(page, "artwork-detail")

    # The artist link goes back to the catalog filtered by that artist.
    page.click(".facts dd a[href*='artist=']")
    page.wait_for_url(re.compile(r"artist=chiyo-hanabusa"))
    n = Artwork.objects.filter(artist__slug="chiyo-hanabusa").count()
    assert page.inner_text(".result-count") == f"{n} matches"
    assert page_errors == []
