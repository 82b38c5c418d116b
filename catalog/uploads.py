"""Hostile input at the door: image checks, upload size limits, bounded request bodies.

One place decides whether bytes are a usable image, for every path that takes one: the
WikiArt import (`catalog.services`), the search-by-image API and the search page
(`retrieval`). The rules:

- **Content decides, never the file name.** Pillow sniffs the bytes, restricted to
  `IMAGE_FORMATS`; a `.png` that holds text is refused, and a JPEG named `.txt` is
  accepted as the JPEG it is (the name is never used to pick a decoder, so a wrong
  extension is harmless; refusing it would only reject honest files from phones and
  browsers that name things oddly).
- **Pixels are bounded before decoding** (decompression bombs): the declared size is
  compared with the caller's limit (`UPLOAD_MAX_PIXELS` for uploads,
  `CATALOG_MAX_IMAGE_PIXELS` for the import) before any pixel is decoded. Pillow's own
  guard (`Image.MAX_IMAGE_PIXELS`: `DecompressionBombWarning` above it,
  `DecompressionBombError` above twice it) is caught and reported the same way, so a bomb
  is always an `ImageRefused` with a reason: a 400 at the API, never a 500 nor a hang.
- **Truncated or corrupt files are refused**: the image is verified and fully decoded.
- **Bytes are bounded while they arrive** (`UPLOAD_MAX_BYTES`):
  `UploadLimitHandler` (first in `FILE_UPLOAD_HANDLERS`) stops spooling a request's files
  once they pass the limit and hands the form an `OversizedUpload`, which
  `image_upload_check` refuses; at most the limit is ever held in memory or on disk.
- **Request bodies are bounded** by Django's `DATA_UPLOAD_MAX_MEMORY_SIZE` (DRF reads JSON
  and form bodies through `request.body`); `api_exception_handler` turns Django's bare
  refusal into a 400 that says which limit was passed.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from PIL import Image, UnidentifiedImageError
from rest_framework.exceptions import ParseError
from rest_framework.views import exception_handler

# Pillow's own guard sits at the largest limit of ours: it warns above it and refuses at
# twice it, where `image_check` has refused already (it checks the declared size first).
Image.MAX_IMAGE_PIXELS = max(settings.CATALOG_MAX_IMAGE_PIXELS, settings.UPLOAD_MAX_PIXELS)

# Decoders that hostile bytes may reach (TIFF, PSD, EPS, ... are refused: large attack
# surface, and nothing in the catalog or a browser upload needs them).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class ImageRefused(ValueError):
    """An image file that cannot be used (unreadable, not an image, too large)."""


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def image_check(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode image bytes, refusing anything unusable. Returns RGB.

    `max_pixels` defaults to `CATALOG_MAX_IMAGE_PIXELS` (the import's limit).
    Raises `ImageRefused` saying why: not an image (in an accepted format), over the
    pixel limit (decompression bomb), truncated or corrupt.
    """
    limit = settings.CATALOG_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            width, height = probe.size
            if width * height > limit:
                raise ImageRefused(
                    f"{width}x{height} is over the {limit:,}-pixel limit "
                    "(a decompression bomb, or simply too large)"
                )
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        image.load()
        return image.convert("RGB")
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (the warning is an exception under `-W error`).
        raise ImageRefused(f"over the pixel limit, a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageRefused(
            f"unreadable image: not a {', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]} file"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated data ("image file is truncated"), bad checksums, broken headers.
        raise ImageRefused(f"unreadable image ({exc})") from exc


class OversizedUpload(UploadedFile):
    """Stands in for an uploaded file whose bytes passed `UPLOAD_MAX_BYTES`:
    its content was dropped as it arrived; `size` is what the client sent."""

    def __init__(self, name: str, content_type: str, size: int) -> None:
        super().__init__(io.BytesIO(), name, content_type, size)

    def read(self, *args, **kwargs) -> bytes:  # pragma: no cover - never decoded
        return b""


def image_upload_check(upload, *, max_bytes: int | None = None) -> Image.Image:
    """Check an uploaded file (Django `UploadedFile`): size, then `image_check` with the
    upload pixel limit. Returns the decoded RGB image; raises `ImageRefused`."""
    limit = settings.UPLOAD_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(upload, OversizedUpload) or upload.size > limit:
        raise ImageRefused(f"the file is larger than {_megabytes(limit)} (UPLOAD_MAX_BYTES)")
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:  # a size that lied
        raise ImageRefused(f"the file is larger than {_megabytes(limit)} (UPLOAD_MAX_BYTES)")
    return image_check(data, max_pixels=settings.UPLOAD_MAX_PIXELS)


class UploadLimitHandler(FileUploadHandler):
    """First upload handler: passes chunks on to Django's memory/temp-file handlers until
    the request's files pass `UPLOAD_MAX_BYTES`, then swallows the rest, so no
    more than the limit is ever kept. A file that lost bytes becomes an `OversizedUpload`.
    """

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.limit = settings.UPLOAD_MAX_BYTES
        self.request_bytes = 0

    def new_file(self, field_name, file_name, content_type, content_length, *args, **kwargs):
        super().new_file(field_name, file_name, content_type, content_length, *args, **kwargs)
        self.file_bytes = 0
        self.over = False

    def receive_data_chunk(self, raw_data, start):
        self.file_bytes += len(raw_data)
        self.request_bytes += len(raw_data)
        if self.request_bytes > self.limit:
            self.over = True
            return None  # later handlers never see it: nothing more is stored
        return raw_data

    def file_complete(self, file_size):
        if not self.over:
            return None  # the next handler returns the real file
        # Release what the later handlers spooled before the limit was reached.
        for handler in getattr(self.request, "upload_handlers", ()):
            spooled = getattr(handler, "file", None)
            if handler is not self and spooled is not None:
                spooled.close()
        return OversizedUpload(
            self.file_name or "upload",
            self.content_type or "",
            max(self.file_bytes, self.limit + 1),
        )


def api_exception_handler(exc, context):
    """DRF's exception handler, plus a reason for Django's request-size refusals.

    DRF reads JSON and form bodies through `request.body`, so Django's limits apply, but
    their exceptions would reach Django as a bare "400 Bad Request" page; the API says why.
    """
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError(
            "The request body is larger than "
            f"{_megabytes(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)} (DATA_UPLOAD_MAX_MEMORY_SIZE)."
        )
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = ParseError(f"The request has too many fields or files ({exc}).")
    return exception_handler(exc, context)
