"""Fixtures of the fault tests: a private Redis, the broker (filesystem or Redis), the
tiny generation settings."""

import pytest

from tests.integration.faults.harness import Broker


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url(2)
        return Broker("redis", url, {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url})
    folder, results = tmp_path / "broker", tmp_path / "results"
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.2,
    }
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    results.mkdir()
    env = {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_DIR": str(folder),
        "CELERY_RESULT_BACKEND": f"file://{results}",
    }
    return Broker("filesystem", "filesystem://", env, options)


@pytest.fixture
def tiny_generation(settings, tmp_path, tiny_models_dir):
    """Tiny SD 1.5 twin, fast training, and the same settings for the worker processes."""
    settings.SD_MODEL = str(tiny_models_dir / "tiny-sd15")
    settings.CLIP_MODEL = str(tiny_models_dir / "tiny-clip")
    settings.ML_DEVICE, settings.SD_PRECISION = "cpu", "float32"
    settings.LORA_DIR = tmp_path / "loras"
    settings.LORA_STEPS, settings.LORA_CHECKPOINT_EVERY = 30, 5
    settings.LORA_RESOLUTION, settings.LORA_RANK, settings.LORA_OPTIMIZER = 64, 8, "adamw"
    settings.LORA_CACHE_BUDGET_MB = 0
    settings.GEN_SIZE, settings.GEN_STEPS, settings.GEN_K = 64, 3, 4
    return {
        "MYTHRAGEN_SD_MODEL": settings.SD_MODEL,
        "MYTHRAGEN_CLIP_MODEL": settings.CLIP_MODEL,
        "MYTHRAGEN_DEVICE": "cpu",
        "MYTHRAGEN_PRECISION": "float32",
        "MYTHRAGEN_LORA_DIR": str(settings.LORA_DIR),
        "LORA_STEPS": 30,
        "LORA_CHECKPOINT_EVERY": 5,
        "LORA_RESOLUTION": 64,
        "LORA_RANK": 8,
        "LORA_OPTIMIZER": "adamw",
        "MYTHRAGEN_LORA_CACHE_BUDGET_MB": 0,
        "JOBS_RESEND_SECONDS": 1,
    }
