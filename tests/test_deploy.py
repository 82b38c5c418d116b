"""Deployment: the README's production environment passes `check --deploy`, and the real
server (bin/serve: migrate, collectstatic, gunicorn with WhiteNoise) answers over HTTP.

Everything runs in subprocesses with a clean environment, a temporary SQLite database and
temporary folders, so the tests need no PostgreSQL, Redis or shared mount.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, HarnessError, free_port, start_logged, stop, wait_listening

STRONG_KEY = secrets.token_urlsafe(50)

# Nothing here uses the test database, so the PostgreSQL pass of `make test` skips it.
pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite"),
    reason="uses its own SQLite database: runs in the SQLite pass",
)


def documented_production_env() -> dict[str, str]:
    """The variables of the README's production environment block, as documented."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n# Production environment[^\n]*\n(.*?)```", readme, re.S)
    assert block, "README.md lost its '# Production environment' block"
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", block.group(1), re.M)
    env = dict(pairs)
    assert env["DJANGO_DEBUG"] == "false"
    return env


def local_env(tmp: Path, base: dict[str, str], **overrides: str | None) -> dict[str, str]:
    """`base` (a documented environment) with local stand-ins for what lives on other
    machines (database, broker, folders) and a strong secret key in place of the
    placeholder; an override of None removes the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp)),
        "LANG": "C.UTF-8",
        **base,
        "DJANGO_SECRET_KEY": STRONG_KEY,
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_RESULT_BACKEND": "cache+memory://",
        "MEDIA_ROOT": str(tmp / "media"),
        "MYTHRAGEN_INDEX_DIR": str(tmp / "index"),
        "MYTHRAGEN_TUNING": json.dumps({"STATIC_ROOT": str(tmp / "static")}),
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    return {k: v for k, v in env.items() if v is not None}


def production_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """The documented production environment, run locally (`local_env`)."""
    return local_env(
        tmp,
        documented_production_env(),
        MYTHRAGEN_LORA_DIR=str(tmp / "loras"),
        MYTHRAGEN_MODELS_DIR=str(tmp / "models"),
        **overrides,
    )


def check_deploy(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --------------------------------------------------------------------------- check --deploy


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    out = check_deploy(production_env(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "is not set"), ("change-me-to-a-long-random-value", "is weak")],
    ids=["missing", "weak"],
)
def test_production_refuses_a_missing_or_weak_secret_key(tmp_path, key, reason):
    out = check_deploy(production_env(tmp_path, DJANGO_SECRET_KEY=key))
    assert out.returncode != 0
    assert f"DJANGO_SECRET_KEY {reason}" in out.stderr
    assert "secrets.token_urlsafe" in out.stderr  # says how to make a good one


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "is not set"),
        ("x" * 49 + "abcd", None),
        ("abcd" * 20, "is weak"),  # long, but only 4 different characters
        ("short-but-varied-0123456789", "is weak"),
        ("insecure-dev-key-set-DJANGO_SECRET_KEY-in-production", "is the insecure development key"),
        ("django-insecure-" + STRONG_KEY, "is the insecure development key"),
        (STRONG_KEY, None),
    ],
)
def test_secret_key_strength_rules(key, problem):
    from config.settings import _secret_key_problem

    found = _secret_key_problem(key)
    assert found == problem or (problem and found.startswith(problem))


def test_check_deploy_warns_about_a_cache_each_process_keeps_to_itself(tmp_path):
    env = production_env(tmp_path, CACHE_URL="locmemcache://")
    out = check_deploy(env, "--tag", "caches")
    assert out.returncode != 0 and "catalog.W001" in out.stderr + out.stdout
    assert "CACHE_URL=redis://" in out.stderr + out.stdout


def test_check_deploy_fails_when_a_protection_is_switched_off(tmp_path):
    # Only the security checks: the schema checks (slow) are covered by the test above.
    env = production_env(tmp_path, DJANGO_HTTPS="false")
    out = check_deploy(env, "--tag", "security")
    assert out.returncode != 0
    assert "security.W004" in out.stderr + out.stdout  # no HSTS
    assert "security.W008" in out.stderr + out.stdout  # no HTTPS redirect


# --------------------------------------------------------------------------- the real server


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, host: str, log: Path):
        self.proc, self.port, self.host, self.log = proc, port, host, log

    def get(self, path: str, https: bool = True, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            hdrs = {"Host": self.host, **headers}
            if https:  # as the TLS-terminating proxy says
                hdrs["X-Forwarded-Proto"] = "https"
            conn.request("GET", path, headers=hdrs)
            response = conn.getresponse()
            return response, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """bin/serve in production mode on a free loopback port (one worker, two threads)."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = production_env(
        tmp,
        MYTHRAGEN_ADDR=f"127.0.0.1:{port}",
        CACHE_URL=f"filecache://{tmp / 'cache'}",  # shared by the workers, as Redis would be
        GUNICORN_CMD_ARGS="--workers 1 --threads 2 --timeout 10 --graceful-timeout 10",
    )
    log = tmp / "serve.log"
    proc = start_logged([str(ROOT / "bin" / "serve")], env, log, session=True)
    host = env["DJANGO_ALLOWED_HOSTS"].split(",")[0]
    try:
        wait_listening(proc, port, log, timeout=90, name="bin/serve")
    except HarnessError as exc:
        pytest.fail(str(exc))
    # gunicorn's arbiter listens at once; its worker first warms up search (config/warm.py,
    # tens of seconds on a busy host): ready when the worker answers a request.
    served = Server(proc, port, host, log)
    deadline = time.monotonic() + 120
    while True:
        try:
            served.get("/static/missing.css")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"gunicorn's worker did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield served
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_page_is_served_with_hsts_and_its_hashed_stylesheet_is_cached(server):
    response, body = server.get("/")
    assert response.status == 200, body[:500]
    assert response.getheader("Strict-Transport-Security") == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    # The page links the manifest's hashed name, not static/css/app.css itself.
    href = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body)
    assert href, body[:800]

    css, css_body = server.get(href.group(1).decode(), **{"Accept-Encoding": "gzip"})
    assert css.status == 200
    assert css.getheader("Content-Type").startswith("text/css")
    cache = css.getheader("Cache-Control")
    assert "immutable" in cache and "max-age=315360000" in cache
    assert css.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(css_body) == (ROOT / "static" / "css" / "app.css").read_bytes()

    icon = re.search(rb'<link rel="icon" href="(/static/favicon\.[0-9a-f]{12}\.svg)"', body)
    assert icon, body[:800]
    svg, svg_body = server.get(icon.group(1).decode())
    assert svg.status == 200 and svg.getheader("Content-Type").startswith("image/svg+xml")
    assert svg_body == (ROOT / "static" / "favicon.svg").read_bytes()
    # Pages without the link (the admin) make browsers ask for /favicon.ico: no 404.
    fallback, _ = server.get("/favicon.ico")
    assert fallback.status == 302
    assert fallback.getheader("Location") == icon.group(1).decode()

    # The unhashed name is still served, but only briefly cacheable.
    plain, _ = server.get("/static/css/app.css")
    assert plain.status == 200 and "immutable" not in plain.getheader("Cache-Control")


def test_plain_http_is_redirected_to_https(server):
    response, _ = server.get("/?page=2", https=False)
    assert response.status == 301
    assert response.getheader("Location") == f"https://{server.host}/?page=2"


def test_unknown_host_is_refused(server):
    response, _ = server.get("/", Host="evil.example.com")
    assert response.status == 400


def test_server_stops_cleanly_on_sigterm(server):
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    log = server.log.read_text()
    assert "Shutting down: Master" in log
    assert "[ERROR]" not in log and "WORKER TIMEOUT" not in log


# --------------------------------------------------------------------------- make run


def _run_demo_config(**env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [str(ROOT / "bin" / "run-demo"), "--print-config"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _pairs(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _env_file_sets(name: str) -> bool:
    env_file = ROOT / ".env"
    return env_file.exists() and re.search(rf"^{name}=", env_file.read_text(), re.M) is not None


def test_make_run_binds_loopback_with_debug_pages_off():
    demo = _run_demo_config()
    config = _pairs(demo.stdout)
    assert config["MYTHRAGEN_ADDR"] == "127.0.0.1:8000" and demo.stderr == ""
    if not _env_file_sets("DJANGO_DEBUG"):
        assert config["DJANGO_DEBUG"] == "false"
    # Plain HTTP on this machine: no HTTPS redirect, no secure-only cookies, no HSTS.
    if not _env_file_sets("DJANGO_HTTPS"):
        assert config["DJANGO_HTTPS"] == "false"
    assert _pairs(_run_demo_config(DJANGO_DEBUG="true").stdout)["DJANGO_DEBUG"] == "true"


@pytest.mark.parametrize(
    ("address", "warned"),
    [
        ("0.0.0.0:8000", True),
        ("[::]:8000", True),
        ("192.168.1.5:8000", True),
        ("0:8000", True),
        ("127.0.0.1:9000", False),
        ("localhost:9000", False),
        ("[::1]:9000", False),
        ("9000", False),
    ],
)
def test_make_run_warns_when_told_to_bind_another_address(address, warned):
    demo = _run_demo_config(MYTHRAGEN_ADDR=address)
    assert _pairs(demo.stdout)["MYTHRAGEN_ADDR"] == address
    assert ("WARNING: MYTHRAGEN_ADDR=" in demo.stderr) == warned, demo.stderr
    if warned:
        assert "published passwords" in demo.stderr and "127.0.0.1" in demo.stderr


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """`manage.py runserver` with the settings `make run` gives it (debug pages off), on a
    temporary database, static and media folders; static files collected as make run does."""
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = local_env(tmp, _pairs(_run_demo_config(DJANGO_DEBUG="false").stdout))
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300
        )
    (tmp / "media" / "artworks").mkdir(parents=True)
    (tmp / "media" / "artworks" / "a.jpg").write_bytes(b"\xff\xd8 artwork")
    (tmp / "media" / "generations").mkdir()
    (tmp / "media" / "generations" / "1-7.png").write_bytes(b"\x89PNG nobody's")
    log = tmp / "runserver.log"
    proc = start_logged(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env,
        log,
        session=True,
    )
    try:
        wait_listening(proc, port, log, timeout=90, name="runserver")
    except HarnessError as exc:
        pytest.fail(str(exc))

    def get(path: str):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers={"Host": "127.0.0.1"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response, body

    yield get
    stop(proc, timeout=30)


def test_the_demo_serves_static_and_media_with_its_own_error_pages(demo_server):
    page, body = demo_server("/")
    assert page.status == 200, body[:500]  # plain HTTP, no redirect to HTTPS
    href = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body)
    assert href, body[:800]
    css, css_body = demo_server(href.group(1).decode())  # WhiteNoise, without debug
    assert css.status == 200 and css_body == (ROOT / "static" / "css" / "app.css").read_bytes()
    artwork, artwork_body = demo_server("/media/artworks/a.jpg")
    assert artwork.status == 200 and artwork_body == b"\xff\xd8 artwork"
    # A generation file no generation owns: the permission check, not the file system.
    assert demo_server("/media/generations/1-7.png")[0].status == 404
    missing, missing_body = demo_server("/no-such-page/")
    text = missing_body.decode()
    assert missing.status == 404 and "Not found" in text and "/no-such-page/" in text
    assert "URLconf" not in text and "DEBUG = True" not in text  # not Django's debug page
