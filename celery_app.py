"""The Celery application: `celery -A celery_app worker`.

The broker comes from CELERY_BROKER_URL: Redis in production; by default kombu's
filesystem transport under var/broker, which needs no server (the embedded setup).

Every worker also re-sends, every MYTHRAGEN_JOB_RESEND_SECONDS, the queued jobs whose
message never reached the broker (it was down when they were requested, or a process died
between recording a job and sending it): see `jobs.services.job_resend_unsent`.
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


def _resend_unsent_jobs(interval: float) -> None:
    from django.db import connection

    from jobs.services import job_resend_unsent

    try:
        count = job_resend_unsent(grace_seconds=interval)
        if count:
            logger.warning("re-sent %d job(s) that had not reached the task queue", count)
    except Exception:  # noqa: BLE001 - the database or broker may be down: next round
        logger.exception("could not re-send unsent jobs")
    finally:
        connection.close()  # this thread's own connection; a fresh one next round


@worker_ready.connect
def _start_resending(**_kwargs) -> None:
    """Run `job_resend_unsent` now and then every interval, beside the worker's tasks."""
    from django.conf import settings

    interval = settings.JOBS_RESEND_SECONDS
    if interval <= 0:
        return

    def loop() -> None:
        while True:
            time.sleep(interval)
            _resend_unsent_jobs(interval)

    _resend_unsent_jobs(interval)
    threading.Thread(target=loop, name="mythragen-resend-jobs", daemon=True).start()
