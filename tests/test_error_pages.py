"""No secret on any page (issue #15 item 4): Django's debug page and error e-mails mask the
connection URLs and any credentials in a URL; without debug, the project's own pages."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import path

from config.reporting import SecretSafeExceptionReporterFilter, mask_credentials


def _pw(name: str) -> str:
    # Built, not written: the debug page shows source lines around each frame, and a
    # literal secret there would be the test's own text, not a leak.
    return name + "-" + "s3cret"


SECRETS = {
    "DATABASE_URL": f"postgres://mythra:{_pw('db')}@db.internal:5432/mythragen",
    "CELERY_BROKER_URL": f"redis://:{_pw('broker')}@redis.internal:6379/0",
    "CELERY_RESULT_BACKEND": f"redis://default:{_pw('result')}@redis.internal:6379/1",
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": f"redis://:{_pw('cache')}@redis.internal:6379/2",
    }
}
WORDS = tuple(_pw(name) for name in ("db", "broker", "result", "cache", "local", "message"))


def boom(request):
    connection = f"amqp://guest:{_pw('local')}@rabbit.internal//"  # noqa: F841 - a local
    raise ConnectionError(f"could not connect to redis://:{_pw('message')}@redis.internal/0")


urlpatterns = [path("boom/", boom)]


@pytest.fixture
def debug_page(client, settings):
    settings.DEBUG = True
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    client.raise_request_exception = False

    def get(**headers):
        # The development server copies the environment into request.META.
        environ = {
            "DATABASE_URL": SECRETS["DATABASE_URL"],
            "REDIS_URL": SECRETS["CELERY_BROKER_URL"],
        }
        return client.get("/boom/", **environ, **headers)

    return get


@override_settings(ROOT_URLCONF=__name__, CACHES=CACHES)
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_prints_no_password(debug_page, accept):
    response = debug_page(HTTP_ACCEPT=accept)
    body = response.content.decode()
    assert response.status_code == 500 and "ConnectionError" in body
    assert "DATABASE_URL" in body  # the setting is listed, its value masked
    leaked = [word for word in WORDS if word in body]
    assert not leaked, leaked
    assert "redis.internal" in body  # only credentials are masked, not the whole text


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_without_debug_a_server_error_is_the_projects_own_page(client):
    client.raise_request_exception = False
    error = client.get("/boom/")
    body = error.content.decode()
    assert error.status_code == 500 and "Server error" in body and "MythraGen" in body
    assert "Traceback" not in body and not [w for w in WORDS if w in body]


def test_without_debug_a_missing_page_is_the_projects_own_page(client, db):
    missing = client.get("/no-such-page/")
    body = missing.content.decode()
    assert missing.status_code == 404 and "Not found" in body
    assert "/no-such-page/" in body and 'class="topbar"' in body  # the site's own layout


def test_the_filter_masks_by_name_and_by_shape():
    f = SecretSafeExceptionReporterFilter()
    assert f.cleanse_setting("DATABASE_URL", "sqlite:///var/db.sqlite3") == f.cleansed_substitute
    assert f.cleanse_setting("CELERY_BROKER_URL", "filesystem://") == f.cleansed_substitute
    options = f.cleanse_setting("CELERY_BROKER_TRANSPORT_OPTIONS", {"url": "redis://:p@h"})
    assert options == {"url": f"redis://{f.cleansed_substitute}@h"}
    assert f.cleanse_setting("STATIC_URL", "/static/") == "/static/"
    assert f.cleanse_setting("DATABASES", {"default": {"PASSWORD": "x", "HOST": "h"}}) == {
        "default": {"PASSWORD": f.cleansed_substitute, "HOST": "h"}
    }
    assert mask_credentials("https://user:pw@example.org/x?token=abc&page=2") == (
        f"https://{f.cleansed_substitute}@example.org/x?token={f.cleansed_substitute}&page=2"
    )
    assert mask_credentials("see https://docs.djangoproject.com/en/5.2/") == (
        "see https://docs.djangoproject.com/en/5.2/"
    )
