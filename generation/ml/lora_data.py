"""What training feeds its loop: preprocessed images and the latent/text-embedding cache.

The script's dataset transforms (resize, crop, flip, scale to [-1, 1]) and this project's
cache of VAE posteriors and frozen text-encoder outputs, shared by every LoRA
(`lora_train` module docstring, "Caching").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mlcore.images import load_image

from ._common import atomic_path, sha256_text
from .errors import GenerationInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image


def _load_image(source: str | Image.Image) -> Image.Image:
    return load_image(source, error=GenerationInputError)


def preprocess_image(
    source: str | Image.Image, resolution: int, center_crop: bool, flip: bool, key: str
) -> torch.Tensor:
    """Resize (shortest side, bilinear), crop, optionally flip, scale to [-1, 1]: CHW float.

    The script's transforms, in PIL + numpy (torchvision does not run beside torch 2.13 CPU).
    With `center_crop=False` the crop offset is drawn once per example from its key (not
    every step), so a cached latent stays valid for that example.
    """
    import numpy as np
    import torch
    from PIL import Image

    img = _load_image(source)
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    if center_crop:
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
    else:
        rng = random.Random(sha256_text("crop", key))
        left, top = rng.randint(0, nw - resolution), rng.randint(0, nh - resolution)
    img = img.crop((left, top, left + resolution, top + resolution))
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class FeatureCache:
    """Latent posteriors and text embeddings as safetensors files under `cache_dir`."""

    def __init__(self, cache_dir: Path | None, model_id: str) -> None:
        self.dir = Path(cache_dir) if cache_dir is not None else None
        self.model_id = model_id
        self.hits = 0
        self.misses = 0

    def _file(self, kind: str, *parts: object) -> Path:
        assert self.dir is not None
        return self.dir / kind / f"{sha256_text(kind, self.model_id, *parts)[:40]}.safetensors"

    def get_or_compute(self, kind: str, parts: tuple, compute: Callable[[], torch.Tensor]):
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file, save_file

        if self.dir is None:
            return compute()
        path = self._file(kind, *parts)
        if path.is_file():
            try:
                tensor = load_file(path)["value"]
                self.hits += 1
                return tensor
            except (SafetensorError, OSError, KeyError):
                pass  # a damaged entry is recomputed below
        tensor = compute().detach().to("cpu", dtype=torch.float32).contiguous()
        with atomic_path(path, ".safetensors") as tmp:
            save_file(
                {"value": tensor},
                str(tmp),
                metadata={"kind": kind, "model": self.model_id, "parts": json.dumps(parts)},
            )
        self.misses += 1
        return tensor
