"""Every page at a phone's width (390 px) and on a desktop: nothing scrolls sideways, the
folded filters open, and a screenshot of each is kept in var/test-artifacts/."""

import pytest
from django.contrib.auth import get_user_model

from catalog.models import Artwork
from tests.e2e.conftest import screenshot, sign_in
from tests.factories import generation_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _pages(artwork_id: int, generation_id: int) -> dict[str, str]:
    return {
        "catalog": "/",
        "catalog-filtered": "/?style=Ukiyo_e&genre=landscape",
        "search": "/search/?q=quiet+hills+by+Chiyo+Hanabusa%2C+ukiyo-e&genre=landscape",
        "search-empty": "/search/",
        "artwork": f"/artworks/{artwork_id}/",
        "generate": "/generate/",
        "generation": f"/generate/{generation_id}/",
        "gallery": "/generate/gallery/",
        "review": "/review/",
        "bulk": "/review/bulk/?style=Pop_Art&action=accept",
        "admin": "/admin/",
        "admin-artworks": "/admin/catalog/artwork/",
        "api-docs": "/api/docs/",
    }


def _overflow(page) -> int:
    """How far the page scrolls sideways (0: not at all)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - innerWidth"
    )


def test_every_page_fits_a_phone_and_the_filters_open(live_server, indexed_demo, browser_page):
    get_user_model().objects.create_superuser("admin", "", "pw")
    artwork = Artwork.objects.exclude(image="").order_by("id").first()
    works = list(Artwork.objects.filter(style__name="Ukiyo_e").values_list("id", flat=True)[:3])
    generation = generation_create(
        prompt="quiet hills, ukiyo-e",
        seed=1,
        steps=12,
        width=128,
        height=128,
        k=3,
        retrieval={
            "parsed": {"content": "quiet hills", "matches": {"style": "Ukiyo_e"}},
            "sets": {
                "artist_style": {
                    "attributes": {"style": "Ukiyo_e"},
                    "missing": ["artist"],
                    "artworks": [[i, 0.5] for i in works],
                },
                "genre_style": {
                    "attributes": {"style": "Ukiyo_e"},
                    "missing": ["genre"],
                    "artworks": [[i, 0.4] for i in works],
                },
            },
        },
        provenance={"prompt": "quiet hills, ukiyo-e", "seed": 1, "weights": {"artist_style": 0.6}},
    )
    page = browser_page
    sign_in(page, live_server.url, "admin", "pw", "/")
    page.wait_for_load_state()
    wide = {}
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for name, path in _pages(artwork.pk, generation.pk).items():
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            screenshot(page, f"{size}-{name}")
            if _overflow(page) > 0:
                wide[f"{size} {name}"] = _overflow(page)
    assert wide == {}, f"pages that scroll sideways (px): {wide}"

    # The generation page says what its sets are and shows the provenance as JSON.
    page.goto(f"{live_server.url}/generate/{generation.pk}/")
    notes = page.inner_text("#result")
    assert "Artist + style set: the prompt names no artist" in notes, notes
    assert '"weights": {' in page.text_content("pre.json")  # JSON, not a Python dict

    # On a phone the filter sidebars are folded away (the results come first) and open.
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/")
    form = page.locator("#filter-form")
    assert not form.is_visible()
    page.click("details.filter-box > summary")
    assert form.is_visible()
    page.select_option("#filter-form select[name=style]", "Ukiyo_e")
    page.click("#filter-form button[type=submit]")
    page.wait_for_url("**style=Ukiyo_e**")
    assert page.locator(".result-count").inner_text().endswith("matches")
    screenshot(page, "phone-catalog-filters-used")

    # The search page keeps the prompt in view and folds the sub-collection filters.
    page.goto(f"{live_server.url}/search/?q=a+portrait")
    assert page.locator("#search-form input[name=q]").is_visible()
    genre = page.locator("#search-form select[name=genre]")
    assert not genre.is_visible()
    page.click("#search-filters > summary")
    assert genre.is_visible()
    screenshot(page, "phone-search-filters-open")

    # Desktop: everything is open from the start.
    page.set_viewport_size(DESKTOP)
    page.goto(f"{live_server.url}/")
    assert page.locator("#filter-form").is_visible()
