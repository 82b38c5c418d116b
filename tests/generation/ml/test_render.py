"""Rendering with LoRA mixing on the tiny SD: reload fidelity, mixing, baseline, inputs."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from generation.ml.errors import GenerationInputError, ModelUnavailable
from generation.ml.lora_files import export_lora
from generation.ml.render import SAMPLERS, ArtRenderer, get_renderer

from .helpers import RENDER_KW, pixels, unet_probe


@pytest.fixture(scope="module")
def fresh(tiny_sd):
    """A renderer that never saw training: LoRAs reach it only through files."""
    renderer = ArtRenderer(tiny_sd)
    renderer.load()
    return renderer


def test_reloaded_lora_reproduces_the_pipeline_it_was_trained_into(trained, fresh, tmp_path):
    path = trained["a"].output_path
    lora = [("style_a", path, 1.0)]
    reloaded = fresh.render("a painting", loras=lora, **RENDER_KW)
    assert np.array_equal(pixels(reloaded.image), pixels(trained["reference_a"]))
    base = fresh.render("a painting", **RENDER_KW).image
    assert np.abs(pixels(reloaded.image) - pixels(base)).mean() > 0.1  # the LoRA matters

    # Same UNet output (float) in the training pipeline and the reloaded one.
    base_out = unet_probe(fresh)
    delta_trained = unet_probe(trained["renderer"], lora) - base_out
    delta_reloaded = unet_probe(fresh, lora) - base_out
    assert delta_trained.abs().max() > 1e-4
    assert torch.allclose(delta_trained, delta_reloaded, atol=1e-6)

    # The strength trap: without adapter metadata the same file loads with alpha = r = 32.
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        assert "lora_adapter_metadata" in f.metadata()
    save_file(tensors, str(tmp_path / "no-meta.safetensors"))
    naive = ArtRenderer(trained["renderer"].base_model)
    naive.load()
    delta_naive = unet_probe(naive, [("naive", tmp_path / "no-meta.safetensors", 1.0)]) - base_out
    ratio = float(delta_naive.norm() / delta_trained.norm())
    assert ratio > 8  # ~32x in the linear regime; ours stays at 1x
    naive_img = naive.render(
        "a painting", loras=[("naive", tmp_path / "no-meta.safetensors", 1.0)], **RENDER_KW
    ).image
    assert not np.array_equal(pixels(naive_img), pixels(trained["reference_a"]))


def test_mixing_weights_change_the_image_and_zero_is_the_baseline(trained, fresh):
    a, b = trained["a"].output_path, trained["b"].output_path
    base = fresh.render("a painting", **RENDER_KW)
    assert base.adapters == []
    mix_1 = fresh.render(
        "a painting", loras=[("style_a", a, 0.8), ("style_b", b, 0.2)], **RENDER_KW
    )
    mix_2 = fresh.render(
        "a painting", loras=[("style_a", a, 0.2), ("style_b", b, 0.8)], **RENDER_KW
    )
    assert mix_1.adapters == [("style_a", 0.8), ("style_b", 0.2)]
    assert np.abs(pixels(mix_1.image) - pixels(mix_2.image)).mean() > 0.1
    zero = fresh.render("a painting", loras=[("style_a", a, 0.0), ("style_b", b, 0.0)], **RENDER_KW)
    assert zero.adapters == []
    assert np.array_equal(pixels(zero.image), pixels(base.image))
    # Baseline again after mixing: adapters are disabled, not left active.
    again = fresh.render("a painting", **RENDER_KW)
    assert np.array_equal(pixels(again.image), pixels(base.image))
    # Deterministic for a seed, different for another seed.
    mix_1b = fresh.render(
        "a painting", loras=[("style_a", a, 0.8), ("style_b", b, 0.2)], **RENDER_KW
    )
    assert np.array_equal(pixels(mix_1.image), pixels(mix_1b.image))
    other_seed = fresh.render("a painting", **{**RENDER_KW, "seed": 4})
    assert not np.array_equal(pixels(other_seed.image), pixels(base.image))


def test_adapters_are_loaded_once_and_evicted_lru(trained, tiny_sd, tmp_path):
    renderer = ArtRenderer(tiny_sd, max_adapters=1)
    a, b = trained["a"].output_path, trained["b"].output_path
    first = renderer.render("a painting", loras=[("style_a", a, 1.0)], **RENDER_KW)
    assert first.adapter_load_seconds > 0
    second = renderer.render("a painting", loras=[("style_a", a, 1.0)], **RENDER_KW)
    assert second.adapter_load_seconds == 0.0  # swapped, not reloaded
    assert np.array_equal(pixels(first.image), pixels(second.image))
    renderer.render("a painting", loras=[("style_b", b, 1.0)], **RENDER_KW)
    assert renderer.loaded_adapters == ["style_b"]
    # A changed file under a known name is reloaded.
    copy = tmp_path / "b-copy.safetensors"
    shutil.copy(a, copy)
    moved = renderer.render("a painting", loras=[("style_b", copy, 1.0)], **RENDER_KW)
    assert moved.adapter_load_seconds > 0
    assert np.array_equal(pixels(moved.image), pixels(first.image))


def test_kohya_export_loads_back_to_the_same_image(trained, tiny_sd, tmp_path):
    out = export_lora(trained["a"].output_path, "kohya", tmp_path / "kohya.safetensors")
    renderer = ArtRenderer(tiny_sd)
    image = renderer.render("a painting", loras=[("kohya", out, 1.0)], **RENDER_KW).image
    assert np.array_equal(pixels(image), pixels(trained["reference_a"]))


def test_progress_callback_and_samplers_without_warnings(fresh):
    calls = []
    fresh.render("a painting", progress=lambda s, t: calls.append((s, t)), **RENDER_KW)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    images = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sampler in SAMPLERS:
            result = fresh.render("a painting", sampler=sampler, **{**RENDER_KW, "steps": 2})
            assert result.sampler == sampler and result.image.size == (64, 64)
            images[sampler] = pixels(result.image)
            assert type(fresh.pipe.scheduler).__name__ == SAMPLERS[sampler]
    # The sampler really changes the solver: the multistep and ancestral ones land elsewhere.
    for other in ("euler_a", "dpmpp_2m", "unipc"):
        assert np.abs(images[other] - images["ddim"]).mean() > 0.3, other
    # DDIM (eta 0) and Euler take the same first-order step of the same ODE on the same
    # timesteps (667, 334, 1 here), so they agree up to float rounding (measured: latents
    # within 1.2e-5); whether a pixel's rounding flips depends on the CPU's kernels.
    assert np.abs(images["euler"] - images["ddim"]).max() <= 1


def test_render_size_follows_width_and_height(fresh):
    image = fresh.render("a painting", **{**RENDER_KW, "width": 96, "height": 64}).image
    assert image.size == (96, 64)


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 0},
        {"width": 60},
        {"height": 30},
        {"guidance": -1.0},
        {"sampler": "pndm"},
        {"prompt": "  "},
        {"loras": [("a", "x.safetensors", 3.0)]},
        {"loras": [("bad name!", "x.safetensors", 1.0)]},
        {"loras": [("a", "x.safetensors", 1.0), ("a", "y.safetensors", 0.5)]},
    ],
)
def test_bad_inputs_raise_generation_input_error(tmp_path, change):
    renderer = ArtRenderer(tmp_path / "never-loaded")  # validation happens before loading
    kwargs = {**RENDER_KW, "prompt": "a painting", **change}
    with pytest.raises(GenerationInputError):
        renderer.render(**kwargs)
    assert renderer.pipe is None


def test_missing_model_raises_model_unavailable_naming_the_setting(tmp_path):
    renderer = ArtRenderer(tmp_path / "missing", setting="MYTHRAGEN_SD_MODEL")
    with pytest.raises(ModelUnavailable) as info:
        renderer.load()
    message = str(info.value)
    assert "MYTHRAGEN_SD_MODEL" in message and "missing" in message
    assert "build_tiny_models" in message
    # A folder that exists but holds no pipeline fails inside from_pretrained: same error.
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_SD_MODEL"):
        ArtRenderer(tmp_path / "empty", setting="MYTHRAGEN_SD_MODEL").load()


def test_missing_lora_file_raises_model_unavailable(fresh, tmp_path):
    with pytest.raises(ModelUnavailable, match="gone.safetensors"):
        fresh.render(
            "a painting", loras=[("gone", tmp_path / "gone.safetensors", 1.0)], **RENDER_KW
        )


def test_registry_keeps_one_renderer_per_model_device_dtype(tiny_sd):
    assert get_renderer(tiny_sd) is get_renderer(str(tiny_sd), "cpu", "float32")
    assert get_renderer(tiny_sd, precision="bfloat16") is not get_renderer(tiny_sd)
    assert ArtRenderer(tiny_sd).is_tiny
