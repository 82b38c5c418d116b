"""A curator reviews genres with the keyboard in a real browser."""

import pytest
from django.contrib.auth import get_user_model

from catalog import services as catalog_services
from catalog.models import Artwork
from tests.e2e.conftest import ARTIFACTS, curators_group, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keyboard_review_changes_the_label_and_moves_on(live_server, demo_dir, browser_page):
    catalog_services.wikiart_import(demo_dir)
    user = get_user_model().objects.create_user("cora", "", "pw")
    user.groups.add(curators_group())
    page = browser_page
    sign_in(page, live_server.url, "cora", "pw", "/review/")
    page.wait_for_selector("#review-item")
    page.screenshot(path=str(ARTIFACTS / "review-before.png"))
    first = page.get_attribute("#review-item", "data-artwork")
    assert "pick a genre" in page.inner_text(".shortcuts")

    had_confidence = page.query_selector("#current-confidence") is not None
    page.keyboard.press("2")  # genres in name order: 2 is cityscape
    page.wait_for_selector("#history tr.new")
    assert page.inner_text("#current-genre") == "cityscape"
    assert page.inner_text("#current-source") == "Curator"
    if had_confidence:  # the model's confidence no longer describes a curator's label
        assert "confidence" not in page.inner_text("#current-confidence")
    assert "cityscape" in page.inner_text("#history tr.new")
    assert "cora" in page.inner_text("#history tr.new")
    # The genre keys mark the genre just saved, not the one it replaced.
    assert page.inner_text(".genre-key.current") == "2 cityscape"
    page.screenshot(path=str(ARTIFACTS / "review-after-key.png"))

    page.wait_for_function(
        f"document.getElementById('review-item') && "
        f"document.getElementById('review-item').dataset.artwork !== '{first}'"
    )
    second = page.get_attribute("#review-item", "data-artwork")
    assert second != first
    page.keyboard.press("n")  # skip the second one without changing it
    page.wait_for_function(
        f"document.getElementById('review-item') && "
        f"document.getElementById('review-item').dataset.artwork !== '{second}'"
    )
    page.screenshot(path=str(ARTIFACTS / "review-next.png"))

    # The queue tells the reviewed item from the skipped one.
    states = page.eval_on_selector_all(
        "#queue li", "lis => lis.slice(0, 3).map(li => [li.className, li.title])"
    )
    assert states[0] == ["done reviewed", "reviewed"], states
    assert states[1] == ["done skipped", "skipped (not changed)"], states
    assert states[2][0] == "active", states
    skipped_style = page.eval_on_selector(
        "#queue li.skipped", "li => getComputedStyle(li).textDecorationLine"
    )
    reviewed_style = page.eval_on_selector(
        "#queue li.reviewed", "li => getComputedStyle(li).textDecorationLine"
    )
    assert skipped_style != reviewed_style, (skipped_style, reviewed_style)

    art = Artwork.objects.get(pk=int(first))
    assert art.genre.name == "cityscape" and art.genre_source == "curator"
    assert Artwork.objects.get(pk=int(second)).genre_source != "curator"
