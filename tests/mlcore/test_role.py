"""The one shape of every model role: lazy load, unload, device, precision, stand-ins, errors."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from generation.ml.metrics import ClipBackbone
from generation.ml.render import ArtRenderer
from generation.ml.safety import SafetyChecker
from labelling.ml.captioner import Captioner
from labelling.ml.vqa import GenreVQA
from mlcore.errors import ModelInputError, ModelUnavailable
from mlcore.images import check_images, load_image
from mlcore.memory import memory_report
from mlcore.precision import resolve_precision
from mlcore.role import ModelRole
from mlcore.stand_in import REAL_SIZE, is_stand_in, is_tiny, stand_in_info, write_marker
from retrieval.ml.embedders import Blip2Embedder, MiniLMEmbedder

ROLES = [
    Blip2Embedder,
    MiniLMEmbedder,
    Captioner,
    GenreVQA,
    ArtRenderer,
    ClipBackbone,
    SafetyChecker,
]


class Counting(ModelRole):
    what = "counting model"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loads = 0
        self._model = None

    def _load(self):
        self.loads += 1
        self._model = object()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_the_one_shape(role):
    assert issubclass(role, ModelRole)
    instance = role("/nowhere/model", device="cpu", precision="auto", setting="MYTHRAGEN_X")
    assert not instance.loaded and instance.precision == "float32" and instance.device == "cpu"
    with pytest.raises(ModelUnavailable) as caught:
        instance.load()
    # One error everywhere: names the model path and the setting to change.
    assert "/nowhere/model" in str(caught.value) and "MYTHRAGEN_X" in str(caught.value)
    assert caught.value.setting == "MYTHRAGEN_X" and not instance.loaded


def test_load_is_lazy_idempotent_and_thread_safe_and_unload_frees():
    role = Counting("m")
    assert role.loads == 0
    threads = [threading.Thread(target=role.load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert role.loads == 1 and role.loaded and role._model is not None
    role.unload()
    assert not role.loaded and role._model is None
    role.load()
    assert role.loads == 2


def test_precision_defaults_per_device_and_role():
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("auto", "cuda") == "bfloat16"
    assert resolve_precision("auto", "cuda:1", cuda_default="float16") == "float16"
    assert resolve_precision("bf16", "cpu") == "bfloat16"  # an explicit choice wins
    assert ArtRenderer("x", device="cuda").precision == "float16"  # SD: float16 on CUDA
    assert Blip2Embedder("x", device="cuda").precision == "bfloat16"
    with pytest.raises(ModelInputError, match="precision"):
        Blip2Embedder("x", precision="float8")


def test_cuda_asked_for_without_cuda_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    role = Counting("m", device="cuda", setting="MYTHRAGEN_DEVICE")
    with pytest.raises(ModelUnavailable, match="CUDA is not available"):
        role.load()
    assert role.loads == 0


def test_stand_in_markers(tmp_path):
    assert not is_stand_in(tmp_path) and stand_in_info("org/hub-id") is None
    write_marker(tmp_path, "blip2-opt", size=REAL_SIZE)
    assert is_stand_in(tmp_path) and not is_tiny(tmp_path)
    role = Counting(tmp_path)
    assert role.is_stand_in and not role.is_tiny and role.stand_in["kind"] == "blip2-opt"
    (tmp_path / "MYTHRAGEN_TINY_MODEL.json").write_text('{"tiny": true}')  # older tiny builds
    assert is_tiny(tmp_path)


def test_one_image_loader(tmp_path):
    path = tmp_path / "a.png"
    Image.new("L", (5, 4)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (5, 4)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ModelInputError, match="bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ModelInputError, match="list of PIL images"):
        check_images(image)
    with pytest.raises(ModelInputError, match=r"images\[1\]"):
        check_images([image, "x.png"])


def test_memory_report_sees_private_allocations():
    import mmap

    size = 64 * 1024 * 1024
    before = memory_report()
    block = mmap.mmap(-1, size)  # fresh anonymous memory (a freed heap could be reused)
    block.write(b"x" * size)  # touched: resident
    after = memory_report()
    assert after.private - before.private > 48 * 1024 * 1024
    assert after.peak_rss >= after.rss > 0 and after.file_backed > 0
    block.close()
