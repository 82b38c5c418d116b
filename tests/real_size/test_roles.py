"""Every model role at real size through the project's own code: shapes, dtypes, devices and
the memory bounds of issue #13 (not quality: the weights are random).

The deployment roles run in fresh processes through `bench/models.py` (so each memory
figure is that process's own); the small roles run here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
GB = 1024**3


def _bench():
    spec = importlib.util.spec_from_file_location("bench_models", ROOT / "bench" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def _picture(seed: int, size: int = 224) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def trained(real_size_dir):
    return bench.run_role("train-512", real_size_dir)


def test_web_process_with_blip2_holds_the_text_half_only(real_size_dir):
    result = bench.run_role("web-blip2", real_size_dir)
    checks, memory = result["checks"], result["after_work"]
    assert checks["shape"] == [1, 256] and checks["text_dtypes"] == ["torch.bfloat16"]
    assert checks["vision_loaded"] is False and checks["vision_untouched"] is True
    assert memory["private"] <= 1 * GB, memory


def test_labelling_worker_shares_one_bfloat16_copy(real_size_dir):
    result = bench.run_role("labelling", real_size_dir)
    checks = result["checks"]
    assert checks["one_copy"] is True and checks["dtype"] == "torch.bfloat16"
    assert abs(checks["params"] - 3_744_761_856) / 3_744_761_856 < 0.01
    assert checks["scores_shape"] == [1, 5] and checks["caption_type"] == "str"
    assert result["after_work"]["peak_rss"] <= 9 * GB, result["after_work"]


def test_lora_training_step_at_512_px_keeps_alpha_and_fits(trained):
    checks = trained["checks"]
    assert checks["steps"] == 1 and checks["loss_finite"]
    assert checks["alpha"] == 1.0 and checks["rank"] == 32  # the paper's setting, saved
    assert trained["after_work"]["peak_rss"] <= 12 * GB, trained["after_work"]


def test_render_mixes_two_real_size_loras(real_size_dir, trained, monkeypatch):
    lora = trained["checks"]["lora_path"]
    monkeypatch.setenv("BENCH_LORAS", f"{lora},{lora}")
    result = bench.run_role("render-512", real_size_dir)
    checks = result["checks"]
    assert checks["size"] == [512, 512] and checks["unet_dtype"] == "torch.float32"
    assert [name for name, _ in checks["adapters"]] == ["lora0", "lora1"]
    assert checks["alphas"] == {"lora0": 1.0, "lora1": 1.0}  # reloaded at alpha 1, not r


def test_blip2_embeds_text_and_image_as_a_worker_does(real_size_dir):
    """A worker on this CPU: "auto" precision is float32 (bfloat16 ViT-g ran ~150 s an
    image here, without native bfloat16 units); the web row above covers bfloat16."""
    import torch

    from retrieval.ml.embedders import Blip2Embedder, pool_tokens

    embedder = Blip2Embedder(real_size_dir / "blip2-itm", precision="auto")
    texts = embedder.embed_texts(["a harbour at dawn", "a portrait"])
    tokens = embedder.embed_image_tokens([_picture(0)])
    image = embedder.embed_images([_picture(0)])
    assert texts.shape == (2, 256) and tokens.shape == (1, 32, 256) and image.shape == (1, 256)
    assert texts.dtype == image.dtype == np.float32
    assert np.allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
    assert np.allclose(image, pool_tokens(tokens), atol=1e-5)  # one vector = pooled tokens
    assert next(embedder._vision_model.parameters()).dtype == torch.float32
    assert embedder.device == "cpu" and not embedder.is_tiny and embedder.is_stand_in
    embedder.unload()


def test_safety_checker_at_real_size(real_size_dir):
    from generation.ml.safety import SafetyChecker

    checker = SafetyChecker(real_size_dir / "safety-checker", precision="float32")
    results = checker.check([_picture(2, 512), _picture(3, 512)])
    assert len(results) == 2 and all(isinstance(r.flagged, bool) for r in results)
    assert checker.is_stand_in
    checker.unload()


def test_clip_t_at_real_size(real_size_dir):
    from generation.ml.metrics import ClipBackbone

    clip = ClipBackbone(real_size_dir / "clip-l14", precision="float32").load()
    texts = clip.text_features(["a harbour at dawn", "a portrait of a woman"])
    images = clip.image_features([_picture(4), _picture(5)])
    assert texts.shape == images.shape == (2, 768)
    scores = (texts * images).sum(axis=1)
    assert np.all(np.abs(scores) <= 1.0 + 1e-5)
    assert os.fspath(real_size_dir) in clip.name
    clip.unload()
