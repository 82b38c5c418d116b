"""API tokens and the throttling of failed sign-ins (issue #15 item 7)."""

from __future__ import annotations

import time

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

PASSWORD = "pw-correct-horse-7"
TOKEN_URL = "/api/auth/token/"


@pytest.fixture
def throttle(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AUTH_FAILURE_LIMIT = 3
    settings.AUTH_FAILURE_WINDOW = 60
    return settings


@pytest.fixture
def painter(django_user_model, throttle):
    return django_user_model.objects.create_user("painter", "p@example.com", PASSWORD)


def _token(client, username="painter", password=PASSWORD, **extra):
    return client.post(
        TOKEN_URL,
        {"username": username, "password": password},
        content_type="application/json",
        **extra,
    )


def test_a_token_works_until_it_is_revoked(painter):
    api = Client(enforce_csrf_checks=True)  # no session, no CSRF token: a script
    issued = _token(api)
    assert issued.status_code == 200
    key = issued.json()["token"]
    assert Token.objects.get(user=painter).key == key
    assert _token(api).json()["token"] == key  # the same token until revoked
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    jobs = api.get("/api/jobs/", **auth)
    assert jobs.status_code == 200 and jobs.json()["results"] == []
    # A write with the token alone (no CSRF token needed: no cookie is involved).
    created = api.post("/api/generations/", {"prompt": ""}, content_type="application/json", **auth)
    assert created.status_code == 400 and created.json()["prompt"] == ["the prompt is empty"]
    assert api.delete(TOKEN_URL, **auth).status_code == 204
    assert not Token.objects.filter(user=painter).exists()
    gone = api.get("/api/jobs/", **auth)
    assert gone.status_code == 401 and gone["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_a_401_and_basic_auth_is_gone(client, painter):
    bad = client.get("/api/jobs/", HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert bad.status_code == 401 and bad.json() == {"detail": "Invalid token."}
    assert bad["WWW-Authenticate"] == "Token"
    import base64

    basic = base64.b64encode(f"painter:{PASSWORD}".encode()).decode()
    refused = client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Basic {basic}")
    assert refused.status_code == 401  # HTTP Basic hashed a password per request: dropped
    wrong = _token(client, password="nope")
    assert wrong.status_code == 400 and "non_field_errors" in wrong.json()


def test_repeated_failed_sign_ins_get_429_with_retry_after_everywhere(client, painter):
    for _ in range(2):
        failed = client.post("/accounts/login/", {"username": "painter", "password": "x"})
        assert failed.status_code == 200 and "didn't match" in failed.content.decode()
    third = client.post("/accounts/login/", {"username": "painter", "password": "x"})
    assert third.status_code == 429
    assert 0 < int(third["Retry-After"]) <= 60
    assert "Too many failed sign-ins" in third.content.decode()
    # Closed for this address, whatever the door and even with the right password (no
    # password is checked: a guess cannot be confirmed).
    right = client.post("/accounts/login/", {"username": "painter", "password": PASSWORD})
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    token = _token(client)
    assert token.status_code == 429 and int(token["Retry-After"]) > 0
    assert "Too many failed sign-ins" in token.json()["detail"]
    admin = client.post("/admin/login/", {"username": "painter", "password": PASSWORD})
    assert "_auth_user_id" not in client.session and admin.status_code == 200
    # Another address is not affected.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert _token(other).status_code == 200


def test_bad_tokens_are_throttled_like_failed_sign_ins(client, painter):
    key = _token(client).json()["token"]
    for _ in range(3):
        assert client.get("/api/jobs/", HTTP_AUTHORIZATION="Token bad").status_code == 401
    blocked = client.get("/api/jobs/", HTTP_AUTHORIZATION="Token bad")
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0
    # Until the window ends even a good token is refused from this address.
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 429
    assert client.get("/api/artworks/").status_code == 200  # anonymous reads go on


def test_the_window_ends_and_a_forwarded_for_header_changes_nothing(client, painter, monkeypatch):
    for n in range(3):  # a client cannot choose its address with X-Forwarded-For
        _token(client, password="x", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert _token(client, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)  # the 60 s window has passed
    assert _token(client).status_code == 200


def test_successful_sign_ins_are_not_throttled(client, painter):
    for _ in range(5):
        assert (
            client.post("/accounts/login/", {"username": "painter", "password": PASSWORD})[
                "Location"
            ]
            == "/"
        )
        client.logout()


def test_the_schema_describes_token_authentication(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"]["type"] == "apiKey"
    assert schemes["tokenAuth"]["name"] == "Authorization"
    assert "/api/auth/token/" in schemes["tokenAuth"]["description"]
    assert "basicAuth" not in schemes
    token = schema["paths"]["/api/auth/token/"]
    assert {"200", "400", "429"} <= set(token["post"]["responses"])
    assert token["post"].get("security") == [{}] or token["post"].get("security") == []
    assert {"tokenAuth": []} in schema["paths"]["/api/generations/"]["post"]["security"]
