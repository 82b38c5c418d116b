"""Tiny models built once per session from configs (nothing comes from a model hub)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mlcore.threads import torch_threads

from .helpers import RENDER_KW, fast_config

os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face library is imported


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Other suites share this 2-core machine; one thread also keeps CPU runs deterministic."""
    from generation.ml._common import quiet_ml_logs

    quiet_ml_logs()
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from generation.ml.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from generation.ml.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def _painting(rng: np.random.Generator, size=(80, 96)):
    """A small structured image (gradient + blocks), not pure noise."""
    from PIL import Image

    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (w + h)], axis=-1) * rng.uniform(0.3, 1.0, 3)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 16), rng.integers(0, w - 16)
        base[y0 : y0 + 16, x0 : x0 + 16] = rng.uniform(0, 1, 3)
    return Image.fromarray((base * 255).clip(0, 255).astype("uint8"))


@pytest.fixture(scope="session")
def training_images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = folder / f"art{i}.png"
        _painting(rng).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def examples(training_images):
    from generation.ml.lora_config import TrainingExample

    captions = ["a painting of the sea", "a portrait by monet", "a cubism landscape", "a city"]
    return [
        TrainingExample(str(p), captions[i], f"artwork-{i}") for i, p in enumerate(training_images)
    ]


@pytest.fixture(scope="session")
def trained(tiny_sd, examples, tmp_path_factory):
    """Two LoRAs trained into one renderer's pipeline (kept there as "style_a"/"style_b")."""
    from generation.ml.lora_train import train_lora
    from generation.ml.render import ArtRenderer

    root = tmp_path_factory.mktemp("loras")
    renderer = ArtRenderer(tiny_sd)
    renderer.load()
    result_a = train_lora(
        tiny_sd,
        examples[:2],
        root / "style_a.safetensors",
        fast_config(seed=1),
        work_dir=root / "work_a",
        cache_dir=root / "cache",
        pipeline=renderer.pipe,
        keep_adapter_name="style_a",
    )
    # The reference outputs of the pipeline the LoRA was trained into.
    reference = renderer.render(
        "a painting", loras=[("style_a", result_a.output_path, 1.0)], **RENDER_KW
    ).image
    result_b = train_lora(
        tiny_sd,
        examples[2:],
        root / "style_b.safetensors",
        fast_config(seed=2),
        work_dir=root / "work_b",
        cache_dir=root / "cache",
    )
    return {
        "renderer": renderer,
        "a": result_a,
        "b": result_b,
        "reference_a": reference,
        "root": root,
    }
