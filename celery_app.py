"""The Celery application: `celery -A celery_app worker`.

The broker comes from CELERY_BROKER_URL: Redis in production; by default kombu's
filesystem transport under var/broker, which needs no server (the embedded setup).
"""

import os
from pathlib import Path

from celery import Celery

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
