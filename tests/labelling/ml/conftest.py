"""Fixtures for the labelling ML tests: one tiny BLIP-2 model per session, built offline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlcore.threads import torch_threads


@pytest.fixture(scope="session", autouse=True)
def _offline_single_thread():
    """Never reach a model hub; one torch thread (other suites share two cores)."""
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory) -> str:
    """Path (str) of a tiny BLIP-2 OPT captioning/VQA model built from configs."""
    from labelling.ml.tiny import build_tiny_blip2_vqa

    return str(build_tiny_blip2_vqa(tmp_path_factory.mktemp("models") / "tiny-blip2"))


def _image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Five distinct small images: noise of several sizes, a flat colour, a greyscale one."""
    return [
        _image(0),
        _image(1, (64, 32)),
        _image(2, (20, 30)),
        Image.new("RGB", (32, 32), (200, 30, 30)),
        _image(3).convert("L"),
    ]
