"""Configuration: database URLs, the embedded PostgreSQL, and layering rules."""

import re
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


def _python(code: str, env: dict | None = None, *, check: bool = False):
    """Run `code` in a fresh interpreter at the project root, with only PATH and `env` set."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=check,
    )


def _settings_in_subprocess(env: dict, expr: str, prelude: str = "") -> str:
    code = (
        f"{prelude}import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
        f"from django.conf import settings; print({expr})"
    )
    return _python(code, env, check=True).stdout.strip()


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
    out = _python(code, {"DJANGO_DEBUG": "false"})
    assert out.returncode != 0 and "DJANGO_SECRET_KEY" in out.stderr


def test_web_process_does_not_import_ml_libraries_at_start_up():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; import django; "
        "django.setup(); import config.urls; "
        "print(sorted(m for m in ('torch','diffusers','transformers','faiss') if m in sys.modules))"
    )
    out = _python(code, check=True)
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


# -- one place for the demo's settings: .env, written by `make run` ---------------------


def _reading(dotenv: Path) -> str:
    """Code that makes settings read `dotenv` where they read the checkout's `.env`."""
    return (
        "import environ; _read = environ.Env.read_env.__func__; "
        "environ.Env.read_env = classmethod("
        f"lambda cls, path, **kw: _read(cls, {str(dotenv)!r}, **kw)); "
    )


def test_settings_read_the_dotenv_file_outside_tests_only(tmp_path):
    dotenv = tmp_path / "demo.env"
    read_from = _reading(dotenv)
    expr = "(settings.VQA_MODEL, settings.GEN_SIZE, os.environ.get('HF_HUB_OFFLINE'))"
    dotenv.write_text('MYTHRAGEN_VQA_MODEL=/m/vqa\nMYTHRAGEN_TUNING={"GEN_SIZE": 128}\n')
    read = _settings_in_subprocess({}, expr, prelude=read_from)
    assert read == "('/m/vqa', 128, None)"
    dotenv.write_text("MYTHRAGEN_VQA_MODEL=/m/vqa\nHF_HUB_OFFLINE=1\n")
    # The real environment wins over the file; the file's other lines still count.
    read = _settings_in_subprocess({"MYTHRAGEN_VQA_MODEL": "/env/vqa"}, expr, prelude=read_from)
    assert read == "('/env/vqa', 512, '1')"
    # The checkout's .env, except in a test session.
    default = "__import__('config.settings', fromlist=['x'])._DOTENV"
    assert _settings_in_subprocess({}, default) == str(ROOT / ".env")
    assert _settings_in_subprocess({"PYTEST_VERSION": "9"}, default) == "off"


def _demo_env(path, env: dict) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "demo-env"), str(path)],
        env={"PATH": "/usr/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout, path.read_text()


def test_make_run_writes_its_models_and_defaults_to_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DJANGO_DEBUG=true\nMYTHRAGEN_VQA_MODEL=/mine/vqa\n")
    exports, text = _demo_env(dotenv, {"MYTHRAGEN_MODELS_DIR": "/m"})
    lines = text.splitlines()
    assert lines[:2] == ["DJANGO_DEBUG=true", "MYTHRAGEN_VQA_MODEL=/mine/vqa"]  # the user's
    block = lines[lines.index(next(x for x in lines if x.startswith("# >>>"))) :]
    assert "MYTHRAGEN_SD_MODEL=/m/tiny-sd15" in block and "HF_HUB_OFFLINE=1" in block
    assert not any(x.startswith("MYTHRAGEN_VQA_MODEL=") for x in block)  # the user's wins
    assert "export MYTHRAGEN_SD_MODEL=/m/tiny-sd15" in exports.splitlines()
    # The tiny SD's short trainings and small renders: tuning constants, overridden.
    tuning = next(x for x in block if x.startswith("MYTHRAGEN_TUNING="))
    size = _settings_in_subprocess(
        {"MYTHRAGEN_TUNING": tuning.partition("=")[2]}, "settings.GEN_SIZE, settings.LORA_STEPS"
    )
    assert size == "128 60"
    # Run again: the block is replaced, not repeated, and the user's lines stay.
    _exports, again = _demo_env(dotenv, {"MYTHRAGEN_MODELS_DIR": "/m"})
    assert again == text
    # A real Stable Diffusion keeps the paper's training and rendering settings.
    _exports, real = _demo_env(dotenv, {"MYTHRAGEN_SD_MODEL": "/real/sd15"})
    assert "MYTHRAGEN_SD_MODEL=/real/sd15" in real and "MYTHRAGEN_TUNING" not in real
    # And what it writes is what a command then reads.
    model = _settings_in_subprocess({}, "settings.SD_MODEL", prelude=_reading(dotenv))
    assert model == "/real/sd15"


# -- a warm start in serving processes only, and servers that stop -------------------------


def test_only_serving_processes_warm_up_search():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
        "sys.argv = ['manage.py', 'migrate']; import config.wsgi; "
        "print(sorted(m for m in ('torch','transformers','faiss') if m in sys.modules))"
    )
    out = _python(code, {"DATABASE_URL": "sqlite:////nonexistent/none.sqlite3"}, check=True)
    assert out.stdout.strip() == "[]", out.stderr  # a command loading the WSGI app: cold


def test_warm_start_reports_and_never_raises(settings, monkeypatch, caplog):
    from config import warm
    from retrieval import selectors

    monkeypatch.setattr(
        selectors, "search_warm_up", lambda: {"seconds": 1.25, "model_id": "m", "index": "v1"}
    )
    with caplog.at_level("INFO", logger="mythragen.warm"):
        assert warm.warm_start("gunicorn worker")["index"] == "v1"
    assert "search ready (prompt encoder loaded in 1.2 s; index v1)" in caplog.text

    def broken():
        raise RuntimeError("no model")

    monkeypatch.setattr(selectors, "search_warm_up", broken)
    assert warm.warm_start("runserver") is None
    assert "search not warmed up (no model)" in caplog.text
    settings.WARM_START = False
    monkeypatch.setattr(selectors, "search_warm_up", lambda: pytest.fail("warmed up"))
    assert warm.warm_start("runserver") is None


def test_gunicorn_workers_warm_up_before_serving_and_keep_reporting(monkeypatch):
    import importlib.util
    import time

    from config import warm

    spec = importlib.util.spec_from_file_location("gconf", ROOT / "config" / "gunicorn.conf.py")
    gconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gconf)
    beats = []

    class Worker:
        def notify(self):
            beats.append(time.monotonic())

    def slow_warm_start(process):  # a load that lasts until the arbiter heard twice
        deadline = time.monotonic() + 60
        while len(beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)

    monkeypatch.setattr(warm, "warm_start", slow_warm_start)
    gconf.post_worker_init(Worker())
    assert len(beats) >= 2  # the arbiter hears from the worker while it loads
    after = len(beats)
    time.sleep(2.5)
    assert len(beats) == after  # and the heartbeat stops with the warm-up


def test_a_stopped_embedded_postgresql_leaves_no_process():
    import shutil
    import tempfile

    from config.pgserver import ensure_server, stop_server

    # Under var/, as bin/test's server: run as root, the server runs as a system user that
    # cannot enter pytest's private temp folders.
    (ROOT / "var").mkdir(exist_ok=True)
    datadir = Path(tempfile.mkdtemp(prefix="test-pgstop-", dir=ROOT / "var")) / "pg"
    datadir.parent.chmod(0o755)
    try:
        ensure_server(datadir)
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        assert stop_server(datadir) is True
        assert not (datadir / "postmaster.pid").exists()
        import psutil

        gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert gone, f"postgres {pid} still runs"
        assert stop_server(datadir) is False  # nothing to stop: no server started for that
    finally:
        stop_server(datadir)
        shutil.rmtree(datadir.parent, ignore_errors=True)


# -- one list of variables: settings.py, .env.example and the README agree -------------------

_VARIABLE_LINE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.M)


def _example_variables() -> list[str]:
    return _VARIABLE_LINE.findall((ROOT / ".env.example").read_text())


def _variables_read() -> set[str]:
    """Every variable config/settings.py reads through django-environ, and the ones the
    scripts that start the servers read (bin/run-demo, bin/serve)."""
    settings_py = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", settings_py))
    for script in ("run-demo", "serve"):
        text = (ROOT / "bin" / script).read_text()
        names |= set(re.findall(r"\$\{(MYTHRAGEN_[A-Z0-9_]+)", text))
    return names


def test_env_example_lists_every_variable_read_and_no_other():
    listed = _example_variables()
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    assert len(listed) <= 30, f"{len(listed)} variables: keep tuning knobs in settings.py"
    assert set(listed) == _variables_read()
    # Each with its one-line reason: the comment line right above it.
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if _VARIABLE_LINE.match(line):
            above = lines[i - 1]
            assert above.startswith("# ") and not _VARIABLE_LINE.match(above), line


def test_readme_configuration_table_lists_the_same_variables():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.M))
    assert table == set(_example_variables())


def test_tuning_constants_are_overridden_by_name_only():
    tuned = _settings_in_subprocess(
        {"MYTHRAGEN_TUNING": '{"LORA_STEPS": 7, "CELERY_BROKER_DIR": "/tmp/b"}'},
        "settings.LORA_STEPS, repr(settings.CELERY_BROKER_DIR), settings.GEN_STALE_SECONDS",
    )
    assert tuned == "7 PosixPath('/tmp/b') 900"
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
        "from django.conf import settings; settings.LORA_STEPS"
    )
    out = _python(code, {"MYTHRAGEN_TUNING": '{"LORA_STEP": 7}'})
    assert out.returncode != 0 and "unknown: ['LORA_STEP']" in out.stderr
