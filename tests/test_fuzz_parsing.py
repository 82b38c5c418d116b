"""Bodies a schema-driven fuzzer does not make: JSON nested 2,000 deep or broken, charsets
that are no text encoding, invalid UTF-8; each a 400 that says why."""

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
