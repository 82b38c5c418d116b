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

Inputs a schema-driven fuzzer does not make are listed in `test_fuzz_values.py` (hostile
and out-of-bounds values), `test_fuzz_parsing.py` (bodies nested 2,000 deep, charsets that
are no text encoding) and `test_fuzz_pages.py` (ids of objects that do not belong
together, for the site's pages).
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
    from catalog.api.serializers import ArtworkFilterParamsSerializer
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
