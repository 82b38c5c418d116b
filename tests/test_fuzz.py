"""Schema-driven fuzzing of the whole API on the demo catalog.

schemathesis reads `/api/schema/` and generates requests for every operation: valid ones
(positive) and ones that break the schema (negative), once with generated path parameters
and once with the ids of real objects, as an anonymous visitor and as an admin (so writes
get past authentication). Every response must not be a server error and must match the
response schema documented for its status code.

Deterministic (Hypothesis derandomized, no example database) and bounded
(`MYTHRAGEN_FUZZ_EXAMPLES` cases per operation, mode and user: 20 by default, which makes
over 2,000 cases; the test checks that). It records how many cases each operation got in
`var/test-artifacts/fuzz-report-<database>.json`.

Inputs a schema-driven fuzzer does not make (bodies nested 2,000 deep, charsets that are
not text encodings, ids of objects that do not belong together) are listed below it, for
the API and the site's pages.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
import yaml
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.middleware.csrf import _get_new_csrf_string
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from werkzeug.test import Client as WerkzeugClient

DEFAULT_EXAMPLES = 20
EXAMPLES = int(os.environ.get("MYTHRAGEN_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
MIN_CASES = 2000  # over the whole run, at the default
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
CHECKS = [not_a_server_error, response_schema_conformance]


def test_openapi_schema_is_complete_without_warnings(tmp_path):
    """Every view declares its request and response serializers: drf-spectacular has
    nothing to guess, so the schema the fuzzer reads is the whole API."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert len(schema["paths"]) >= 25
    search = schema["paths"]["/api/search/"]
    assert "multipart/form-data" in search["post"]["requestBody"]["content"]
    assert {"200", "400", "503"} <= set(search["get"]["responses"])
    # The schema-only filter parameters are exactly the catalog's filter set (less its
    # title search, which is the prompt in a search).
    from catalog.api import ArtworkFilterParamsSerializer
    from catalog.filters import ArtworkFilter

    assert set(ArtworkFilterParamsSerializer().fields) == set(ArtworkFilter.base_filters) - {"q"}


@pytest.fixture
def wsgi_app():
    """Django's WSGI handler, called in this thread inside the test's transaction.

    Like Django's test client, keep the per-request `close_old_connections` from closing
    the connection that holds the test transaction.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(indexed_demo, settings, django_user_model):
    """The demo catalog and its index, an admin, and one object of every kind an URL names."""
    from catalog.models import Artist, Artwork, Genre, Style
    from generation import services as generation
    from generation.models import LoraCacheEntry
    from jobs import services as jobs
    from labelling import services as labelling

    settings.GEN_MAX_QUEUED = 10**6  # let accepted requests through, not only the first 3
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    artwork = Artwork.objects.exclude(genre=None).order_by("pk").first()
    generation_row = generation.generation_request(
        admin, generation.GenerationParams(prompt="quiet hills", seed=1)
    )
    lora = LoraCacheEntry.objects.create(
        key="f" * 64, kind="artist_style", base_model="tiny", base_model_fingerprint="x"
    )
    operation = labelling.bulk_apply([artwork.pk], "accept", user=admin)
    return {
        "admin": admin,
        "paths": {
            "id": {
                "/api/artworks/": artwork.pk,
                "/api/generations/": generation_row.pk,
                "/api/jobs/": jobs.job_create("fuzz", user=admin).pk,
            },
            "slug": Artist.objects.order_by("pk").first().slug,
            "name": {
                "/api/styles/": Style.objects.order_by("pk").first().name,
                "/api/genres/": Genre.objects.order_by("pk").first().name,
            },
            "key": lora.key,
            "op_id": str(operation.pk),
        },
    }


def _load_schema(app):
    """The served schema, less its security schemes: schemathesis would otherwise send
    made-up credentials (every random Basic header costs a password hash and hides the
    admin's session); this test chooses the user itself, anonymous or admin."""
    response = WerkzeugClient(app).get("/api/schema/?format=json")
    assert response.status_code == 200, response.text
    raw = response.get_json(force=True)
    raw.get("components", {}).pop("securitySchemes", None)
    for operations in raw["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = app  # requests go to Django's WSGI handler, in this process
    return schema


def _known_path_parameters(operation, paths) -> dict | None:
    """The real objects' ids for the operation's path parameters (None: it has none)."""
    names = [p.name for p in operation.path_parameters]
    if not names:
        return None
    known = {}
    for name in names:
        value = paths[name]
        if isinstance(value, dict):
            value = next(v for prefix, v in value.items() if operation.path.startswith(prefix))
        known[name] = value
    return known


def _breakable(operation, *, fixed_paths: bool) -> bool:
    """Whether negative mode can make an invalid request: a body, or a parameter (not
    fixed) whose schema is more than "any string". Otherwise Hypothesis would only search
    at length for an invalid case that does not exist."""
    raw = operation.definition.raw
    if "requestBody" in raw:
        return True
    for parameter in raw.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter["in"] == "path":
            # Any text is a valid string path segment (a pattern cannot be broken in a URL).
            if not fixed_paths and (schema.get("type") != "string" or "format" in schema):
                return True
        elif parameter.get("required") or schema != {"type": "string"}:
            return True
    return False


def _admin_credentials(client, admin) -> tuple[dict, dict]:
    """A signed-in admin's session cookie plus a CSRF token (DRF's session auth checks it)."""
    client.force_login(admin)
    token = _get_new_csrf_string()
    cookies = {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: token,
    }
    return cookies, {"X-CSRFToken": token}


def _fuzz(
    operation,
    mode,
    *,
    paths,
    cookies,
    headers,
    label,
    counts,
    statuses,
    seconds,
    failures,
    unsatisfiable,
):
    started = time.monotonic()
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=paths)

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        counts[operation.label] += 1
        try:
            response = case.call(cookies=cookies, headers=headers)
            statuses[(operation.method.upper(), label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported
            failures.append(
                {
                    "operation": operation.label,
                    "as": label,
                    "mode": mode.value,
                    "error": str(exc).strip()[:2000],
                    "curl": case.as_curl_command(),
                }
            )

    try:
        run()
    except Unsatisfiable:
        # Negative mode found no way to break the schema of this operation's inputs.
        assert mode is GenerationMode.NEGATIVE, operation.label
        unsatisfiable.append(f"{operation.label} ({'real ids' if paths else 'generated'})")
    seconds[operation.label] += time.monotonic() - started


def test_fuzz_every_operation_anonymous_and_as_admin(world, wsgi_app, client):
    started = time.monotonic()
    schema = _load_schema(wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    admin_cookies, admin_headers = _admin_credentials(client, world["admin"])
    users = {"anonymous": ({}, {}), "admin": (admin_cookies, admin_headers)}
    counts: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    statuses: Counter[tuple] = Counter()
    failures: list[dict] = []
    unsatisfiable: list[str] = []
    for operation in operations:
        known = _known_path_parameters(operation, world["paths"])
        for label, (cookies, headers) in users.items():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for paths in (None, known) if known else (None,):
                    negative = mode is GenerationMode.NEGATIVE
                    if negative and not _breakable(operation, fixed_paths=paths is not None):
                        continue
                    _fuzz(
                        operation,
                        mode,
                        paths=paths,
                        cookies=cookies,
                        headers=headers,
                        counts=counts,
                        statuses=statuses,
                        seconds=spent,
                        failures=failures,
                        unsatisfiable=unsatisfiable,
                        label=label,
                    )
    seconds = time.monotonic() - started
    report = {
        "database": connection.vendor,
        "examples_per_run": EXAMPLES,
        "operations": len(operations),
        "total_cases": sum(counts.values()),
        "seconds": round(seconds, 1),
        "failures": failures,
        "negative_mode_unsatisfiable": unsatisfiable,
        "statuses": {f"{m} as {u}: {c}": n for (m, u, c), n in sorted(statuses.items())},
        "cases_per_operation": dict(sorted(counts.items())),
        "seconds_per_operation": {k: round(v, 2) for k, v in sorted(spent.items())},
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"fuzz-report-{connection.vendor}.json").write_text(json.dumps(report, indent=2))
    total = report["total_cases"]
    print(f"\nfuzz: {total} cases over {len(operations)} operations in {seconds:.1f} s")
    assert not failures, "\n\n".join(
        f"{f['operation']} as {f['as']} ({f['mode']}):\n{f['error']}\n{f['curl']}"
        for f in failures[:10]
    )
    assert all(counts[op.label] >= 2 for op in operations)
    if EXAMPLES >= DEFAULT_EXAMPLES:
        assert total >= MIN_CASES, f"only {total} cases"
    # The admin's writes got past authentication and were accepted, not only refused.
    assert sum(n for (m, u, c), n in statuses.items() if m == "POST" and u == "admin" and c < 300)
    assert not any(
        u == "anonymous" and m == "POST" and c < 300 and c != 200 for m, u, c in statuses
    )


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
    from labelling import api

    monkeypatch.setattr(api, "BULK_MAX", 3)
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


# --------------------------------------------------------------------------- parse errors

DEEP_ARRAY = "[" * 2000 + "]" * 2000  # 4 KB: was a RecursionError, a 500
DEEP_OBJECT = '{"q":' * 2000 + '"hills"' + "}" * 2000


def _nested(depth: int) -> str:
    return '{"q": "hills", "filters": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("url", "body", "reason"),
    [
        ("/api/search/", DEEP_ARRAY, "nested deeper than 32 levels"),
        ("/api/search/", DEEP_OBJECT, "nested deeper than 32 levels"),
        ("/api/generations/", DEEP_ARRAY, "nested deeper than 32 levels"),
        ("/api/generations/", DEEP_OBJECT, "nested deeper than 32 levels"),
        ("/api/generations/", _nested(33), "nested deeper than 32 levels"),
        ("/api/review/bulk/", DEEP_ARRAY, "nested deeper than 32 levels"),
        ("/api/auth/token/", DEEP_OBJECT, "nested deeper than 32 levels"),
        ("/api/search/", '{"q": "hills"', "JSON parse error"),
    ],
)
@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_json_nested_too_deep_or_broken_is_a_400_with_the_reason(
    client, admin_client, db, url, body, reason, who
):
    caller = admin_client if who == "admin" else client
    response = caller.post(url, body, content_type="application/json")
    if who == "anonymous" and url in ("/api/generations/", "/api/review/bulk/"):
        # Refused before the body is read (a signed-out write), never a 500 either way.
        assert response.status_code in (400, 401, 403), response.content[:200]
        return
    assert response.status_code == 400, response.content[:300]
    assert reason in response.json()["detail"]


def test_nesting_within_the_limit_is_read(admin_client, db):
    response = admin_client.post("/api/generations/", _nested(32), content_type="application/json")
    assert response.status_code == 400  # read, then refused by validation, not by depth
    assert "nested" not in json.dumps(response.json())
    assert "filters" in response.json()


@pytest.mark.parametrize(
    ("charset", "reason"),
    [
        ("rot13", "charset 'rot13' cannot decode a request body"),
        ("zlib_codec", "cannot decode a request body"),
        ("no-such-charset", "unknown charset 'no-such-charset'"),
    ],
)
@pytest.mark.parametrize(
    ("url", "content_type", "body"),
    [
        ("/api/search/", "application/json", b'{"q": "hills"}'),
        ("/api/generations/", "application/json", b'{"prompt": "hills"}'),
        ("/api/search/", "application/x-www-form-urlencoded", b"q=hills"),
        ("/search/", "application/x-www-form-urlencoded", b"q=hills"),
        ("/accounts/login/", "multipart/form-data; boundary=x", b"--x--\r\n"),
        ("/generate/", "multipart/form-data; boundary=x", b"--x--\r\n"),
        ("/review/bulk/", "application/x-www-form-urlencoded", b"action=accept"),
    ],
)
def test_a_body_in_a_charset_that_is_no_text_encoding_is_a_400(
    admin_client, db, charset, reason, url, content_type, body
):
    """Django read such form posts with the charset and failed with LookupError (a 500
    on every page that reads a form); the API's parsers and the pages now say why."""
    response = admin_client.generic(
        "POST", url, body, content_type=f"{content_type}; charset={charset}"
    )
    assert response.status_code == 400, response.content[:300]
    text = response.json()["detail"] if url.startswith("/api/") else response.content.decode()
    assert reason.replace("'", "&#x27;" if not url.startswith("/api/") else "'") in text


def test_invalid_utf8_in_json_is_a_400_naming_the_byte(client, db):
    response = client.post("/api/search/", b'{"q": "hi\xfflls"}', content_type="application/json")
    assert response.status_code == 400
    assert "not valid utf-8" in response.json()["detail"] and "byte 9" in response.json()["detail"]


# --------------------------------------------------------------------------- site views


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
