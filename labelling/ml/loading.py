"""Load a BLIP-2 checkpoint once per process and share it between captioning and VQA.

The real `Salesforce/blip2-opt-2.7b` checkpoint serves both tasks (3.74 B parameters:
about 7.5 GB in bfloat16, 15 GB in float32), so `Captioner` and `GenreVQA` built for the
same (model id, device, precision) share one loaded model and processor instead of
holding two copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from mlcore.errors import ModelUnavailable
from mlcore.images import check_images as _check_images
from mlcore.precision import torch_dtype
from mlcore.role import ModelRole
from mlcore.stand_in import is_tiny

from .errors import LabellingInputError

if TYPE_CHECKING:
    import torch

MODEL_WHAT = "captioning/VQA model"


@dataclass(frozen=True)
class LoadedBlip2:
    """A loaded `Blip2ForConditionalGeneration` with its processor, in eval mode."""

    model_id: str
    model: Any  # transformers.Blip2ForConditionalGeneration
    processor: Any  # transformers.Blip2Processor
    device: torch.device
    dtype: torch.dtype
    is_tiny: bool

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """Images -> normalised pixel tensor on the model's device and dtype."""
        pixels = self.processor.image_processor(images=images, return_tensors="pt")
        return pixels["pixel_values"].to(self.device, self.dtype)


_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], LoadedBlip2] = {}


def check_images(images: Any) -> list[Image.Image]:
    """A list (or tuple) of PIL images; anything else is a LabellingInputError."""
    return _check_images(images, error=LabellingInputError)


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise LabellingInputError(f"batch_size must be a positive integer, not {batch_size!r}")
    return batch_size


class SharedBlip2Role(ModelRole):
    """A role that holds the process's shared BLIP-2 (`load_blip2`) for its (model id,
    device, precision): `Captioner` and `GenreVQA`. `_accept` may refuse a checkpoint."""

    what = MODEL_WHAT
    _shared: LoadedBlip2 | None = None

    def _accept(self, loaded: LoadedBlip2) -> None:
        """Raise `self.unavailable(...)` when this role cannot use `loaded`."""

    def _load(self) -> None:
        loaded = load_blip2(self.model_id, self.device, self.precision, self.setting)
        self._accept(loaded)
        self._shared = loaded

    def _unload(self) -> None:
        self._shared = None
        release_blip2(self.model_id, self.device, self.precision)


def load_blip2(
    model_id: str, device: str = "cpu", precision: str = "float32", setting: str | None = None
) -> LoadedBlip2:
    """Load (once per process) a BLIP-2 checkpoint from a hub id or local folder.

    `precision` is a resolved dtype name (see `mlcore.precision`). Any failure becomes
    `ModelUnavailable` naming the id/path and the setting to change; there is no fallback
    to another model.
    """
    key = (str(model_id), str(device), precision)
    with _lock:
        if key not in _loaded:
            _loaded[key] = _load(str(model_id), str(device), precision, setting)
        return _loaded[key]


def release_blip2(model_id: str, device: str, precision: str) -> None:
    """Forget one loaded checkpoint (its roles were unloaded); memory is freed once no
    role holds it."""
    with _lock:
        _loaded.pop((str(model_id), str(device), precision), None)


def clear_loaded() -> None:
    """Forget every loaded model (tests; freeing memory in a long-lived worker)."""
    with _lock:
        _loaded.clear()


def _load(model_id: str, device: str, precision: str, setting: str | None) -> LoadedBlip2:
    import torch
    import transformers
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    def unavailable(reason: str) -> ModelUnavailable:
        return ModelUnavailable(MODEL_WHAT, model_id, reason, setting=setting)

    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise unavailable(f"bad device {device!r} ({exc})") from exc
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise unavailable(f"device {device!r} asked for, but CUDA is not available")
    dtype = torch_dtype(precision)

    try:
        model = Blip2ForConditionalGeneration.from_pretrained(model_id, dtype=dtype)
        processor = Blip2Processor.from_pretrained(model_id)
    except Exception as exc:  # OSError (missing/offline), ValueError (wrong kind), ...
        raise unavailable(f"{type(exc).__name__}: {exc}".strip()[:500]) from exc

    config = model.config
    if config.image_token_index is None:
        raise unavailable("its config has no image_token_index (a pre-2024 BLIP-2 export)")
    if processor.num_query_tokens is None:  # old processor configs: take it from the model
        processor.num_query_tokens = config.num_query_tokens
    model.to(torch_device).eval()
    return LoadedBlip2(
        model_id=model_id,
        model=model,
        processor=processor,
        device=torch_device,
        dtype=dtype,
        is_tiny=is_tiny(model_id),
    )
