"""Test-wide fixtures: media and caches in temp folders, the demo catalog, helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection

from catalog.demo import write_demo_catalog

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    """Every test writes media and indexes under its own temp folder, never into var/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RETRIEVAL_INDEX_DIR = tmp_path / "index"
    settings.GENRE_MODEL_DIR = tmp_path / "genre-model"
    settings.RETRIEVAL_EMBEDDER = "minilm"


@pytest.fixture(scope="session", autouse=True)
def _no_lock_files_left():
    """Named locks on SQLite are files beside the database (`jobs.locks`): remove the test
    database's when the session ends (the database itself is gone by then)."""
    yield
    from django.conf import settings

    from jobs.locks import lock_files

    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if connection.vendor == "sqlite" and test_name:
        for path in lock_files(Path(test_name)):
            path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Cached reads (catalog counts) never leak from one test into the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """Every tiny stand-in model, built once per session with the real classes."""
    from django.core.management import call_command

    root = tmp_path_factory.mktemp("tiny-models")
    call_command("build_tiny_models", str(root), stdout=open(os.devnull, "w"))  # noqa: SIM115
    return root


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """The synthetic demo catalog, drawn once per session (treat as read-only)."""
    root = tmp_path_factory.mktemp("demo-src") / "demo"
    write_demo_catalog(root)
    return root


@pytest.fixture
def demo_dir(demo_source, tmp_path) -> Path:
    """A private, writable copy of the demo catalog for one test."""
    target = tmp_path / "demo"
    shutil.copytree(demo_source, target)
    return target


@pytest.fixture
def imported_demo(db, demo_dir):
    from catalog import services

    return services.wikiart_import(demo_dir)


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` run in the PostgreSQL pass of `make test` only."""
    for item in items:
        if "postgres" in item.keywords and connection.vendor != "postgresql":
            item.add_marker(
                pytest.mark.skip(
                    reason="needs PostgreSQL with pgvector: runs in the pgserver:// pass"
                )
            )


@pytest.fixture
def indexed_demo(imported_demo):
    """The demo catalog, embedded with the offline MiniLM model and indexed."""
    from retrieval import services

    return services.index_rebuild()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server of this test module's own, on a free port: no test shares a Redis
    database with another test run on the machine (`make test` runs its SQLite and
    PostgreSQL passes side by side)."""
    from tests.harness import RedisServer

    if not RedisServer.available():
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sent(monkeypatch):
    """What would reach the broker, instead of sending it: the spec each send was handed
    (task, args, task_id, ...) with its `job_id`; the job records the task id as a real
    send does."""
    from jobs import sending
    from jobs.models import Job

    calls: list[dict] = []

    def send(job_id, spec, *args, **kwargs):
        calls.append({**spec, "job_id": job_id})
        Job.objects.filter(pk=job_id, celery_task_id="").update(celery_task_id=spec["task_id"])
        return True

    monkeypatch.setattr(sending, "_send", send)
    return calls
