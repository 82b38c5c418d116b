"""Hostile uploads and request bodies: bombs, oversized files, fake names, truncated data.

Every upload path (the search API and the search page) goes through
`catalog.uploads.image_upload_check`; each refusal is a 400 that says why, nothing is
stored, and the search never runs. The file's content decides, never its name.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog.models import Artwork
from catalog.uploads import ImageRefused, image_check
from jobs.models import Job
from retrieval import selectors

pytestmark = pytest.mark.django_db


def png_declaring(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of all-zero pixels: a few hundred KB at most that
    decompress to width x height pixels (900 MB for 30000 x 30000) if anything decodes it."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def encoded(format_: str, size=(48, 32), noise: bool = False) -> bytes:
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", size, (200, 40, 40))
    buf = io.BytesIO()
    image.save(buf, format=format_)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = png_declaring(30_000, 30_000)
    assert len(data) < 200_000  # tiny on the wire
    return data


@pytest.fixture
def upload_tmp(settings, tmp_path) -> Path:
    """Spool every upload over 1 KB to a temp folder we can inspect afterwards."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return folder


@pytest.fixture
def search_spy(monkeypatch):
    """Stands in for the search itself: records the decoded image it would search with."""
    calls = []

    def artwork_search(prompt="", *, k=20, filters=None, image=None):
        calls.append(image)
        return selectors.SearchResult(
            parsed=None, hits=[], index_version="v", model_id="stub", is_tiny=False
        )

    monkeypatch.setattr(selectors, "artwork_search", artwork_search)
    return calls


def _file(data: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def _post(client, via: str, data: bytes, name: str):
    url = "/api/search/" if via == "api" else "/search/"
    return client.post(url, {"image": _file(data, name), "k": "3"})


def _message(response, via: str) -> str:
    if via == "api":
        return " ".join(response.json()["image"])
    return response.content.decode()


def _nothing_stored(settings, upload_tmp, search_spy):
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))
    assert list(upload_tmp.iterdir()) == []  # no temp file left behind
    assert search_spy == []  # the search never ran
    assert Artwork.objects.count() == 0 and Job.objects.count() == 0


REFUSED = {
    # A real decompression bomb: over twice Pillow's limit, refused from its header.
    "bomb": (lambda bomb: bomb, "bomb.png", "decompression bomb"),
    # Over our own limit (UPLOAD_MAX_PIXELS, 40 M), under Pillow's.
    "too-many-pixels": (
        lambda bomb: png_declaring(8000, 6000),
        "big.png",
        "8000x6000 is over the 40,000,000-pixel limit",
    ),
    "fake-extension": (
        lambda bomb: b"not a picture, only text pretending\n" * 20,
        "photo.png",
        "not a JPEG, PNG, WEBP, GIF or BMP file",
    ),
    "truncated-jpeg": (
        lambda bomb: encoded("JPEG", (64, 64), noise=True)[:1500],
        "cut.jpg",
        "image file is truncated",
    ),
    "truncated-png": (
        lambda bomb: encoded("PNG", (64, 64), noise=True)[:2000],
        "cut.png",
        "unreadable image",
    ),
    "refused-format": (
        lambda bomb: encoded("TIFF"),
        "scan.tif",
        "not a JPEG, PNG, WEBP, GIF or BMP file",
    ),
}


@pytest.mark.parametrize("via", ["api", "form"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_upload_is_a_400_with_the_reason_and_nothing_is_stored(
    client, settings, upload_tmp, search_spy, bomb, case, via
):
    make, name, reason = REFUSED[case]
    started = time.monotonic()
    response = _post(client, via, make(bomb), name)
    assert time.monotonic() - started < 5  # refused from the header, never decoded
    assert response.status_code == 400
    message = _message(response, via)
    assert "Image refused" in message and reason in message, message
    _nothing_stored(settings, upload_tmp, search_spy)


@pytest.mark.parametrize("via", ["api", "form"])
def test_oversized_upload_is_dropped_while_it_arrives(
    client, settings, upload_tmp, search_spy, via
):
    settings.UPLOAD_MAX_BYTES = 64 * 1024
    data = encoded("PNG", (256, 256), noise=True)  # a valid image, ~190 KB
    assert len(data) > 2 * settings.UPLOAD_MAX_BYTES
    response = _post(client, via, data, "big.png")
    assert response.status_code == 400
    message = _message(response, via)
    assert "larger than 65,536 bytes (UPLOAD_MAX_BYTES)" in message, message
    _nothing_stored(settings, upload_tmp, search_spy)


@pytest.mark.parametrize("via", ["api", "form"])
def test_content_decides_a_jpeg_named_txt_is_searched_as_the_jpeg_it_is(
    client, settings, upload_tmp, search_spy, via
):
    data = encoded("JPEG", (48, 32), noise=True)
    # Spooled to a temp file: the API once deep-copied the request data, which cannot
    # copy such a file (a 500 for every image over FILE_UPLOAD_MAX_MEMORY_SIZE).
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    response = _post(client, via, data, "notes.txt")
    assert response.status_code == 200, response.content[:500]
    (image,) = search_spy
    assert image.size == (48, 32) and image.mode == "RGB"
    assert list(upload_tmp.iterdir()) == []  # the temp copy went with the request


def test_api_json_body_over_data_upload_max_memory_size_is_a_400(client, settings, search_spy):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = json.dumps({"q": "x" * 100_000})
    response = client.post("/api/search/", body, content_type="application/json")
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert search_spy == []


def test_api_urlencoded_body_is_bounded_too(client, settings, search_spy):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = client.post(
        "/api/search/", "q=" + "x" * 5000, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400 and "larger than 1,024 bytes" in response.json()["detail"]


def test_pillow_bomb_guard_tracks_the_largest_limit(settings):
    assert (
        max(settings.CATALOG_MAX_IMAGE_PIXELS, settings.UPLOAD_MAX_PIXELS) == Image.MAX_IMAGE_PIXELS
    )


def test_bomb_warning_escalated_to_an_error_is_still_a_refusal(recwarn, bomb):
    """Under `-W error` Pillow's DecompressionBombWarning is raised as an exception."""
    import warnings

    data = png_declaring(10_000, 10_000)  # 100 M pixels: Pillow warns (limit 90 M)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageRefused, match="decompression bomb"):
            image_check(data, max_pixels=200_000_000)
