"""Generation tests: the tiny SD 1.5 twin at 64 px, a few training steps, one thread."""

from __future__ import annotations

import os

import pytest

from mlcore.threads import torch_threads
from tests.generation.helpers import tiny_generation_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub


@pytest.fixture(scope="session")
def _torch_one_thread():
    """Other suites share this 2-core machine; one thread also keeps CPU runs deterministic."""
    from generation.ml._common import quiet_ml_logs

    quiet_ml_logs()
    with torch_threads(1):
        yield


@pytest.fixture
def gen_settings(settings, tmp_path, tiny_models_dir, _torch_one_thread):
    """Tiny models, a private LoRA folder, fast training and rendering settings."""
    return tiny_generation_settings(
        settings,
        tiny_models_dir,
        tmp_path / "loras",
        LORA_STEPS=6,
        LORA_RANK=8,
        LORA_CHECKPOINT_EVERY=3,
        GEN_STEPS=3,
        GEN_K=4,
        GEN_MAX_QUEUED=3,
    )


@pytest.fixture
def eager(django_capture_on_commit_callbacks):
    """Run Celery tasks inline: `with eager(): ...` runs the whole prepare -> train -> render
    chain that the block enqueues (on_commit callbacks execute at the end of the block)."""
    from celery_app import app

    app.conf.task_always_eager = True
    yield lambda: django_capture_on_commit_callbacks(execute=True)
    app.conf.task_always_eager = False


@pytest.fixture
def user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("painter", "painter@example.com", "pw")
