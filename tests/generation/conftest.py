"""Generation tests: the tiny SD 1.5 twin at 64 px, a few training steps, one thread."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub


@pytest.fixture(scope="session")
def _torch_one_thread():
    """Other suites share this 2-core machine; one thread also keeps CPU runs deterministic."""
    import torch

    from generation.ml._common import quiet_ml_logs

    quiet_ml_logs()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def gen_settings(settings, tmp_path, tiny_models_dir, _torch_one_thread):
    """Tiny models, a private LoRA folder, fast training and rendering settings."""
    settings.SD_MODEL = str(tiny_models_dir / "tiny-sd15")
    settings.CLIP_MODEL = str(tiny_models_dir / "tiny-clip")
    settings.ML_DEVICE = "cpu"
    settings.SD_PRECISION = "float32"
    settings.LORA_DIR = tmp_path / "loras"
    settings.LORA_STEPS = 6
    settings.LORA_RESOLUTION = 64
    settings.LORA_RANK = 8
    settings.LORA_OPTIMIZER = "adamw"
    settings.LORA_CHECKPOINT_EVERY = 3
    settings.LORA_CACHE_BUDGET_MB = 0
    settings.GEN_SIZE = 64
    settings.GEN_STEPS = 3
    settings.GEN_K = 4
    settings.GEN_MAX_QUEUED = 3
    return settings


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
