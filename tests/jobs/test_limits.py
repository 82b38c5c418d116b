"""The Redis visibility timeout exceeds every task's time limit (issue #15, item 2): a
message of a task still running is never handed to a second worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT

PRINT = (
    "import json, django; django.setup(); "
    "from django.conf import settings; from jobs.checks import task_time_limits; "
    "print(json.dumps({'options': settings.CELERY_BROKER_TRANSPORT_OPTIONS, "
    "'limits': task_time_limits(), 'configured': settings.TASK_TIME_LIMITS}))"
)


def _read(**env) -> dict:
    """Settings and task definitions as a worker with this environment loads them."""
    out = subprocess.run(
        [sys.executable, "-c", PRINT],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_visibility_timeout_exceeds_every_task_time_limit():
    seen = _read(CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    timeout, limits = seen["options"]["visibility_timeout"], seen["limits"]
    some = {
        "catalog.wikiart_import",
        "generation.prepare",
        "generation.render",
        "generation.train",
        "labelling.caption_artworks",
        "labelling.label_genres",
        "retrieval.index_rebuild",
    }
    assert some <= set(limits)  # the project's tasks, as a worker registers them
    assert all(limit is not None for limit in limits.values()), limits  # none unlimited
    assert limits == seen["configured"]  # each uses its limit from settings, and only those
    assert timeout > max(limits.values()), (timeout, limits)
    # Raising a limit (here labelling, 12 h -> 30 h) raises the default timeout with it.
    longer = _read(
        CELERY_BROKER_URL="redis://x:6379/0",
        MYTHRAGEN_TUNING=json.dumps({"LABEL_TIME_LIMIT": 108000}),
    )
    assert longer["limits"]["labelling.label_genres"] == 108000
    assert longer["options"]["visibility_timeout"] > 108000


def test_a_visibility_timeout_set_below_a_limit_fails_the_system_check(settings):
    from jobs.checks import visibility_timeout_exceeds_task_limits

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7 * 3600}
    errors = visibility_timeout_exceeds_task_limits()
    assert [e.id for e in errors] == ["jobs.E001"]
    assert "labelling.label_genres (43200)" in errors[0].msg
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 13 * 3600}
    assert visibility_timeout_exceeds_task_limits() == []
