"""The one image loader and image-list check of every model role (PIL only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageOps

from .errors import ModelInputError


def load_image(source: str | os.PathLike | Image.Image, *, error=ModelInputError) -> Image.Image:
    """An RGB PIL image from a path or an image (EXIF rotation applied; fully decoded).

    A file that cannot be read raises `error` (a ModelInputError subclass) naming it.
    """
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    try:
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise error(f"cannot read image {str(source)!r}: {exc}") from exc
    return image.convert("RGB")


def check_images(images: Any, *, error=ModelInputError) -> list[Image.Image]:
    """A list or tuple of PIL images; anything else (a single image too) raises `error`."""
    if (
        isinstance(images, Image.Image)
        or not isinstance(images, Sequence)
        or isinstance(images, str | bytes)
    ):
        raise error(f"expected a list of PIL images, not {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise error(
                f"images[{i}] is a {type(image).__name__}, not a PIL image "
                "(open files with PIL.Image.open first)"
            )
    return list(images)
