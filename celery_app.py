"""The Celery application: `celery -A celery_app worker`.

The broker comes from CELERY_BROKER_URL: Redis in production; by default kombu's
filesystem transport under var/broker, which needs no server (the embedded setup).

Every worker also looks after the jobs, at start and every JOBS_RESEND_SECONDS
(`jobs.services.jobs_maintain`): it resumes running jobs whose worker is gone (killed,
crashed: their message died with it on the filesystem transport, and Redis returns it only
after its visibility timeout), fails hung ones, and re-sends queued jobs whose message
never reached the broker or whose wait is over. In the prefork pool this runs in the main
process, beside the pool's child that runs tasks.
"""

import logging
import os
import threading
import time
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("mythragen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["catalog", "labelling", "retrieval", "generation"])


def _ensure_local_folders() -> None:
    """The filesystem broker and file result backend need their folders to exist."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
    backend = str(app.conf.result_backend or "")
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


_ensure_local_folders()


logger = logging.getLogger(__name__)


def _maintain_jobs(interval: float) -> None:
    from django.db import connection

    from jobs.ownership import jobs_maintain

    try:
        done = jobs_maintain(grace_seconds=interval)
        if any(done.values()):
            logger.warning(
                "jobs: %(recovered)d resumed after losing their worker, %(stale)d failed "
                "(stopped reporting), %(sent)d (re-)sent to the task queue",
                done,
            )
    except Exception:  # noqa: BLE001 - the database or broker may be down: next round
        logger.exception("could not look after the jobs")
    finally:
        connection.close()  # this thread's own connection; a fresh one next round


@worker_ready.connect
def _start_maintaining(**_kwargs) -> None:
    """Run `jobs_maintain` now and then every interval, beside the worker's tasks."""
    from django.conf import settings

    interval = settings.JOBS_RESEND_SECONDS
    if interval <= 0:
        return

    def loop() -> None:
        while True:
            time.sleep(interval)
            _maintain_jobs(interval)

    _maintain_jobs(interval)
    threading.Thread(target=loop, name="mythragen-maintain-jobs", daemon=True).start()
