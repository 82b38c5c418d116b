"""What more than one test module sets to generate with the tiny models."""

from __future__ import annotations

from pathlib import Path


def tiny_generation_settings(settings, models_dir: Path, lora_dir: Path, **values):
    """Point generation at the tiny SD 1.5 and CLIP twins under `models_dir`, on the CPU in
    float32, with a private LoRA folder, 64 px training and rendering and no LoRA cache
    budget; `values` set the rest (`LORA_STEPS=6`, ...). Returns `settings`."""
    settings.SD_MODEL = str(models_dir / "tiny-sd15")
    settings.CLIP_MODEL = str(models_dir / "tiny-clip")
    settings.ML_DEVICE = "cpu"
    settings.SD_PRECISION = "float32"
    settings.LORA_DIR = lora_dir
    settings.LORA_RESOLUTION = 64
    settings.LORA_OPTIMIZER = "adamw"
    settings.LORA_CACHE_BUDGET_MB = 0
    settings.GEN_SIZE = 64
    for name, value in values.items():
        setattr(settings, name, value)
    return settings
