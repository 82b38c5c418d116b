"""Hostile and out-of-bounds values for the API and the search page: refused with a 400
and the reason, never a server error."""

from __future__ import annotations

import json
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


# Values the fuzzer may miss, each once a 500 (or a 500 on PostgreSQL only: a NUL byte
# cannot be sent to it in a text parameter).
HOSTILE_REQUESTS = [
    ("get", "/api/artists/%00/", None),
    ("get", "/api/styles/%00/", None),
    ("get", "/api/genres/a%01b/", None),
    ("get", "/api/loras/%00/", None),
    ("get", "/api/loras/%00/download/", None),
    ("get", "/api/artworks/9223372036854775808/", None),
    ("get", "/api/jobs/99999999999999999999999/", None),
    ("get", "/api/artworks/?artist=%00&q=%00&year_min=1e999999", None),
    ("get", "/api/artworks/?page_size=100000000000000000000000000", None),
    ("get", "/api/review/queue/?artist=%00&limit=99999999999999999999", None),
    ("post", "/api/generations/%10%C2%AAas/rerun/", {}),
    ("post", "/api/generations/1x/cancel/", {}),
    ("post", "/api/review/bulk/", {"action": "accept", "filters": {"genre": ["a", "b"]}}),
    ("post", "/api/review/bulk/", {"action": "accept", "artwork_ids": [2**63]}),
    ("post", "/api/artworks/1/revert/", {"label_id": 2**64, "expected_version": 0}),
    ("post", "/api/artworks/1/genre/", {"genre": "\x00", "expected_version": 2**40}),
    ("post", "/api/generations/", {"prompt": "hills", "filters": {"year_min": "1e999999"}}),
    ("post", "/api/generations/", {"prompt": "hi\x00lls", "seed": 2**70}),
]


@pytest.mark.parametrize(("method", "url", "body"), HOSTILE_REQUESTS)
def test_hostile_values_are_refused_never_a_server_error(admin_client, method, url, body):
    if body is None:
        response = getattr(admin_client, method)(url)
    else:
        response = getattr(admin_client, method)(url, body, content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])


# Every bounded input of the API and the search page: an out-of-bounds value is a 400
# that names the field and says why (the fuzzer only checks for the absence of 500s).
LONG = "x" * 501
OUT_OF_BOUNDS = [
    # search and similar artworks
    ("get", "/api/search/", {"q": "hills", "k": 201}, "k", "less than or equal to 200"),
    ("get", "/api/search/", {"q": LONG}, "q", "no more than 500 characters"),
    ("get", "/api/artworks/{artwork}/similar/", {"k": 0}, "k", "greater than or equal to 1"),
    ("get", "/api/artworks/{artwork}/similar/", {"k": 101}, "k", "less than or equal to 100"),
    ("get", "/api/artworks/{artwork}/similar/", {"k": "ten"}, "k", "valid integer"),
    # pages
    ("get", "/api/artworks/", {"page_size": 0}, "page_size", "between 1 and 500"),
    ("get", "/api/generations/", {"page_size": 501}, "page_size", "between 1 and 500"),
    ("get", "/api/artists/", {"page_size": "all"}, "page_size", "must be an integer"),
    # review queue and curator writes
    ("get", "/api/review/queue/", {"limit": 0}, "limit", "greater than or equal to 1"),
    ("get", "/api/review/queue/", {"limit": 501}, "limit", "less than or equal to 500"),
    ("get", "/api/review/queue/", {"confidence_max": 1.5}, "confidence_max", "between 0 and 1"),
    (
        "post",
        "/api/artworks/{artwork}/genre/",
        {"genre": "portrait", "expected_version": 2**31},
        "expected_version",
        "less than or equal to 2147483647",
    ),
    (
        "post",
        "/api/artworks/{artwork}/genre/",
        {"genre": "portrait", "expected_version": 0, "note": LONG},
        "note",
        "no more than 500 characters",
    ),
    (
        "post",
        "/api/artworks/{artwork}/revert/",
        {"label_id": 0, "expected_version": 0},
        "label_id",
        "greater than or equal to 1",
    ),
    (
        "post",
        "/api/review/bulk/",
        {"action": "accept", "artwork_ids": list(range(1, 5002))},
        "artwork_ids",
        "no more than 5000",
    ),
    (
        "post",
        "/api/review/bulk/",
        {"action": "accept", "filters": {"genere": "portrait"}},
        "filters",
        "unknown filter(s) genere",
    ),
    (
        "post",
        "/api/review/bulk/",
        {"action": "accept", "filters": {"genre": ["a", "b"]}},
        "filters",
        "Not a valid string",
    ),
    # generation requests
    ("post", "/api/generations/", {"prompt": LONG}, "prompt", "no more than 500 characters"),
    ("post", "/api/generations/", {"prompt": "a", "seed": -1}, "seed", "between 0 and"),
    ("post", "/api/generations/", {"prompt": "a", "seed": 2**32}, "seed", "between 0 and"),
    ("post", "/api/generations/", {"prompt": "a", "steps": 151}, "steps", "between 1 and 150"),
    ("post", "/api/generations/", {"prompt": "a", "guidance": 31}, "guidance", "between 0 and 30"),
    ("post", "/api/generations/", {"prompt": "a", "width": 1032}, "width", "between 64 and"),
    ("post", "/api/generations/", {"prompt": "a", "height": 60}, "height", "between 64 and"),
    ("post", "/api/generations/", {"prompt": "a", "k": 51}, "k", "between 1 and 50"),
    (
        "post",
        "/api/generations/",
        {"prompt": "a", "weight_artist_style": -2.5},
        "weight_artist_style",
        "between -2 and 2",
    ),
    (
        "post",
        "/api/generations/",
        {"prompt": "a", "filters": {"colour": "red"}},
        "filters",
        "unknown filter(s) colour",
    ),
]


@pytest.mark.parametrize(("method", "url", "data", "field", "reason"), OUT_OF_BOUNDS)
def test_out_of_bounds_values_are_a_400_with_a_reason(
    admin_client, imported_demo, method, url, data, field, reason
):
    from catalog.models import Artwork

    url = url.format(artwork=Artwork.objects.order_by("pk").first().pk)
    if method == "get":
        response = admin_client.get(url, data)
    else:
        response = admin_client.post(url, data, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert field in body and reason in json.dumps(body[field]), body


def test_a_bulk_filter_matching_too_many_artworks_is_refused(
    admin_client, imported_demo, monkeypatch
):
    from labelling import services

    monkeypatch.setattr(services, "BULK_MAX", 3)
    response = admin_client.post(
        "/api/review/bulk/",
        {"action": "accept", "filters": {"has_genre": "true"}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"filters": ["more than 3 artworks match; narrow the filters"]}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"q": LONG}, "at most 500 characters"),
        ({"q": "hills", "k": 0}, "greater than or equal to 1"),
        ({"q": "hills", "k": 201}, "less than or equal to 200"),
        ({"q": "hills", "genre": "no_such_genre"}, "Select a valid choice"),
        ({"q": "   "}, "Give a prompt or an image."),
    ],
)
def test_search_page_refuses_out_of_bounds_values_with_a_400(client, db, data, reason):
    response = client.post("/search/", data)
    assert response.status_code == 400
    assert reason in response.content.decode()
