"""Load a BLIP-2 checkpoint once per process and share it between captioning and VQA.

The real `Salesforce/blip2-opt-2.7b` checkpoint serves both tasks (about 15 GB in
float32), so `Captioner` and `GenreVQA` built for the same (model id, device, dtype)
share one loaded model and processor instead of holding two copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from .errors import LabellingInputError, ModelUnavailable
from .tiny import is_tiny_model

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")
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


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise LabellingInputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return dtype


def check_images(images: Any) -> list[Image.Image]:
    """A list (or tuple) of PIL images; anything else is a LabellingInputError."""
    if not isinstance(images, list | tuple):
        raise LabellingInputError(f"images must be a list of PIL images, not {type(images)}")
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise LabellingInputError(f"images[{i}] is a {type(image).__name__}, not a PIL image")
    return list(images)


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise LabellingInputError(f"batch_size must be a positive integer, not {batch_size!r}")
    return batch_size


def load_blip2(
    model_id: str, device: str = "cpu", dtype: str = "float32", setting_name: str | None = None
) -> LoadedBlip2:
    """Load (once per process) a BLIP-2 checkpoint from a hub id or local folder.

    Any failure becomes `ModelUnavailable` naming the id/path and the setting to change;
    there is no fallback to another model.
    """
    check_dtype(dtype)
    key = (str(model_id), str(device), dtype)
    with _lock:
        if key not in _loaded:
            _loaded[key] = _load(str(model_id), str(device), dtype, setting_name)
        return _loaded[key]


def clear_loaded() -> None:
    """Forget every loaded model (tests; freeing memory in a long-lived worker)."""
    with _lock:
        _loaded.clear()


def _load(model_id: str, device: str, dtype: str, setting_name: str | None) -> LoadedBlip2:
    import torch
    import transformers
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    def unavailable(reason: str) -> ModelUnavailable:
        return ModelUnavailable.for_model(
            model_id, what=MODEL_WHAT, setting_name=setting_name, reason=reason
        )

    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise unavailable(f"bad device {device!r} ({exc})") from exc
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise unavailable(f"device {device!r} asked for, but CUDA is not available")
    torch_dtype = getattr(torch, dtype)

    try:
        model = Blip2ForConditionalGeneration.from_pretrained(model_id, dtype=torch_dtype)
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
        dtype=torch_dtype,
        is_tiny=is_tiny_model(model_id),
    )
