"""Configuration: database URLs, the embedded PostgreSQL, and layering rules."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from config.pgserver import datadir_from_url

ROOT = Path(__file__).resolve().parent.parent


def test_pgserver_url_needs_an_absolute_data_dir():
    assert datadir_from_url("pgserver:///srv/pg") == Path("/srv/pg")
    with pytest.raises(ValueError, match="pgserver:///"):
        datadir_from_url("postgres://x/y")


def _settings_in_subprocess(env: dict, expr: str) -> str:
    code = (
        f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
        f"from django.conf import settings; print({expr})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_default_database_is_sqlite_in_var():
    engine = _settings_in_subprocess(
        {}, "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME']"
    )
    assert "sqlite3" in engine and str(ROOT / "var" / "db.sqlite3") in engine


def test_database_url_selects_postgresql():
    out = _settings_in_subprocess(
        {"DATABASE_URL": "postgres://u:p@db.example:5433/art"},
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['HOST']",
    )
    assert "postgresql" in out and "db.example" in out


def test_production_requires_a_secret_key():
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
        "from django.conf import settings; settings.SECRET_KEY"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin", "DJANGO_DEBUG": "false"},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "DJANGO_SECRET_KEY" in out.stderr


def test_web_process_does_not_import_ml_libraries_at_start_up():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; import django; "
        "django.setup(); import config.urls; "
        "print(sorted(m for m in ('torch','diffusers','transformers','faiss') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_has_the_vector_extension_enabled_by_migration():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    assert row is not None
    major, minor, *_ = (int(x) for x in row[0].split("."))
    assert (major, minor) >= (0, 8)
