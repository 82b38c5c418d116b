"""The site's pages given ids that do not exist or do not belong together: a 4xx, never a
500."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

DEFAULT_EXAMPLES = 20
EXAMPLES = int(os.environ.get("MYTHRAGEN_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
MIN_CASES = 2000  # over the whole run, at the default
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def two_artworks(db):
    from catalog.models import Artist, Artwork, Genre, LabelSource, Style
    from catalog.services import genre_label_add

    artist = Artist.objects.create(slug="ada-lane", name="Ada Lane")
    style = Style.objects.create(name="Cubism", folder="Cubism", class_index=0)
    genre = Genre.objects.create(name="portrait", class_index=0)
    made = []
    for n in (1, 2):
        artwork = Artwork.objects.create(
            path=f"Cubism/ada-lane_{n}.jpg", title=f"Work {n}", artist=artist, style=style
        )
        made.append((artwork, genre_label_add(artwork, genre, source=LabelSource.WIKIART)))
    return made


def test_revert_answers_404_or_400_for_ids_that_do_not_exist_or_belong(admin_client, two_artworks):
    (first, first_label), (second, second_label) = two_artworks
    version = {"expected_version": first.label_version}
    missing_artwork = admin_client.post(
        f"/review/artworks/999999/revert/{first_label.pk}/", version
    )
    assert missing_artwork.status_code == 404
    missing_label = admin_client.post(f"/review/artworks/{first.pk}/revert/999999/", version)
    assert missing_label.status_code == 404
    other = admin_client.post(f"/review/artworks/{first.pk}/revert/{second_label.pk}/", version)
    assert other.status_code == 400
    assert f"Label #{second_label.pk} is not a label of artwork #{first.pk}" in (
        other.content.decode()
    )
    first.refresh_from_db()
    assert first.label_version == version["expected_version"]  # nothing written
    own = admin_client.post(f"/review/artworks/{first.pk}/revert/{first_label.pk}/", version)
    assert own.status_code == 302


def _site_routes():
    """Every page URL pattern (not the admin, not the API) with its parameter names."""
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                if pattern.app_name == "admin":
                    continue
                yield from walk(pattern, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                ids = ("<int:", "<uuid:", "[0-9a-f]{64}", "(?P<path>")
                if not route.startswith(("api/", "^api/")) and any(i in route for i in ids):
                    yield route

    return sorted(set(walk(get_resolver())))


def _fill(route: str, value: str) -> str:
    import re
    import uuid

    url = re.sub(r"<int:\w+>", value, route)
    url = re.sub(r"<uuid:\w+>", str(uuid.UUID(int=int(value))), url)
    url = re.sub(r"\(\?P<\w+>\[0-9a-f\]\{64\}\)", "f" * 64, url)
    url = re.sub(r"\(\?P<path>\.\*\)", f"generations/{value}-1.png", url)
    return "/" + url.replace("^", "").replace("$", "")


@pytest.mark.parametrize("value", ["0", "999999", "9223372036854775807"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_every_page_answers_a_missing_id_with_a_4xx(admin_client, two_artworks, value, method):
    """Every page that takes an id, signed in as an admin (past every permission check):
    an id of nothing is a 404 (or 405/400), never a 500."""
    admin_client.raise_request_exception = False
    routes = _site_routes()
    assert len(routes) >= 10, routes
    answers = {}
    for route in routes:
        url = _fill(route, value)
        response = getattr(admin_client, method)(url)
        answers[url] = response.status_code
    assert {u: c for u, c in answers.items() if not 400 <= c < 500} == {}
