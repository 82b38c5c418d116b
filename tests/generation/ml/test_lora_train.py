"""LoRA training on the tiny SD: caching, checkpoints/resume, cancellation, metadata, export."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from generation.ml.errors import GenerationInputError, ModelUnavailable, TrainingCancelled
from generation.ml.lora_config import LoraTrainingConfig, TrainingExample
from generation.ml.lora_files import export_lora, read_lora_metadata
from generation.ml.lora_train import train_lora
from generation.ml.provenance import safetensors_data_hash

from .helpers import fast_config


def _weights(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_config_defaults_are_the_papers_and_serialise():
    cfg = LoraTrainingConfig()
    assert (cfg.rank, cfg.alpha, cfg.max_train_steps) == (32, 1.0, 4095)
    assert (cfg.unet_lr, cfg.text_encoder_lr, cfg.train_text_encoder) == (1e-4, 5e-5, True)
    assert (cfg.optimizer, cfg.mixed_precision, cfg.resolution) == ("adamw8bit", "bf16", 512)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert LoraTrainingConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    "bad",
    [{"rank": 0}, {"resolution": 60}, {"max_train_steps": 0}, {"optimizer": "sgd"}],
)
def test_bad_settings_raise_generation_input_error(tiny_sd, examples, tmp_path, bad):
    with pytest.raises(GenerationInputError):
        train_lora(
            tiny_sd,
            examples,
            tmp_path / "x.safetensors",
            fast_config(**bad),
            work_dir=tmp_path / "w",
            cache_dir=None,
        )


def test_empty_training_set_is_rejected(tiny_sd, tmp_path):
    with pytest.raises(GenerationInputError, match="empty"):
        train_lora(
            tiny_sd,
            [],
            tmp_path / "x.safetensors",
            fast_config(),
            work_dir=tmp_path,
            cache_dir=None,
        )


def test_missing_base_model_names_the_setting(examples, tmp_path):
    with pytest.raises(ModelUnavailable, match="MYTHRAGEN_SD_MODEL") as info:
        train_lora(
            tmp_path / "no-such-model",
            examples,
            tmp_path / "x.safetensors",
            fast_config(),
            work_dir=tmp_path / "w",
            cache_dir=None,
            setting_name="MYTHRAGEN_SD_MODEL",
        )
    assert "no-such-model" in str(info.value)


def test_latent_cache_is_reused_and_does_not_change_training(
    tiny_sd, examples, tmp_path, monkeypatch
):
    from diffusers import AutoencoderKL

    calls = {"n": 0}
    original = AutoencoderKL.encode

    def counting_encode(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", counting_encode)
    cfg = fast_config()
    common = {"cache_dir": tmp_path / "cache"}
    first = train_lora(
        tiny_sd, examples, tmp_path / "1.safetensors", cfg, work_dir=tmp_path / "w1", **common
    )
    assert (first.cache_hits, first.cache_misses) == (0, len(examples))
    assert calls["n"] == len(examples)  # once per example, not once per step
    assert len(list((tmp_path / "cache" / "latents").glob("*.safetensors"))) == len(examples)

    calls["n"] = 0
    second = train_lora(
        tiny_sd, examples, tmp_path / "2.safetensors", cfg, work_dir=tmp_path / "w2", **common
    )
    assert (second.cache_hits, second.cache_misses) == (len(examples), 0)
    assert calls["n"] == 0  # no VAE encode at all

    calls["n"] = 0
    uncached = train_lora(
        tiny_sd, examples, tmp_path / "3.safetensors", cfg, work_dir=tmp_path / "w3", cache_dir=None
    )
    assert calls["n"] == cfg.max_train_steps  # the script's behaviour: encode every step
    assert (uncached.cache_hits, uncached.cache_misses) == (0, 0)
    # Latents are sampled from the cached posterior, so all three runs train identically.
    w1, w2, w3 = (_weights(tmp_path / f"{i}.safetensors") for i in (1, 2, 3))
    assert _max_diff(w1, w2) == 0.0
    assert _max_diff(w1, w3) < 1e-6


def test_frozen_text_encoder_caches_text_embeddings(tiny_sd, examples, tmp_path):
    cfg = fast_config(train_text_encoder=False, max_train_steps=4)
    kw = {"cache_dir": tmp_path / "cache"}
    first = train_lora(
        tiny_sd, examples[:2], tmp_path / "a.safetensors", cfg, work_dir=tmp_path / "w1", **kw
    )
    assert (first.cache_hits, first.cache_misses) == (0, 4)  # 2 latents + 2 captions
    second = train_lora(
        tiny_sd, examples[:2], tmp_path / "b.safetensors", cfg, work_dir=tmp_path / "w2", **kw
    )
    assert (second.cache_hits, second.cache_misses) == (4, 0)
    assert len(list((tmp_path / "cache" / "text").glob("*.safetensors"))) == 2
    weights = _weights(tmp_path / "b.safetensors")
    assert weights and not any(k.startswith("text_encoder.") for k in weights)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_sd, examples, tmp_path):
    cfg = fast_config(checkpoint_every=2)
    clean = train_lora(
        tiny_sd,
        examples,
        tmp_path / "clean.safetensors",
        cfg,
        work_dir=tmp_path / "w-clean",
        cache_dir=None,
    )
    assert clean.steps == 8 and clean.resumed_from_step == 0
    # checkpoints at 2, 4, 6 (none at the last step): only the last two are kept
    assert sorted(p.name for p in (tmp_path / "w-clean").iterdir()) == [
        "checkpoint-4",
        "checkpoint-6",
    ]

    class Crash(RuntimeError):
        pass

    def crash_at_5(step, total):
        if step == 5:
            raise Crash

    work = tmp_path / "w-crash"

    def train_into_the_same_work_dir(progress):
        return train_lora(
            tiny_sd,
            examples,
            tmp_path / "resumed.safetensors",
            cfg,
            work_dir=work,
            cache_dir=None,
            progress=progress,
        )

    with pytest.raises(Crash):
        train_into_the_same_work_dir(crash_at_5)
    assert not (tmp_path / "resumed.safetensors").exists()
    seen = []
    resumed = train_into_the_same_work_dir(lambda s, t: seen.append((s, t)))
    assert resumed.resumed_from_step == 4
    assert resumed.steps == 8 and seen == [(5, 8), (6, 8), (7, 8), (8, 8)]
    assert (
        _max_diff(
            _weights(tmp_path / "clean.safetensors"), _weights(tmp_path / "resumed.safetensors")
        )
        < 1e-5
    )
    assert resumed.final_loss == pytest.approx(clean.final_loss, rel=1e-4)

    # Other settings never resume from these checkpoints.
    other = train_lora(
        tiny_sd,
        examples,
        tmp_path / "other.safetensors",
        fast_config(seed=9, checkpoint_every=2),
        work_dir=work,
        cache_dir=None,
    )
    assert other.resumed_from_step == 0


def test_should_stop_saves_a_checkpoint_and_cancels(tiny_sd, examples, tmp_path):
    steps = []

    def progress(step, total):
        steps.append(step)

    def train(**kw):
        return train_lora(
            tiny_sd,
            examples,
            tmp_path / "x.safetensors",
            fast_config(),
            work_dir=tmp_path / "w",
            cache_dir=None,
            **kw,
        )

    with pytest.raises(TrainingCancelled) as info:
        train(progress=progress, should_stop=lambda: len(steps) >= 3)
    assert info.value.step == 3 and steps == [1, 2, 3]
    assert (tmp_path / "w" / "checkpoint-3" / "lora.safetensors").is_file()
    assert not (tmp_path / "x.safetensors").exists()
    resumed = train()
    assert resumed.resumed_from_step == 3 and resumed.steps == 8


def test_saved_lora_carries_settings_and_adapter_metadata(trained, tiny_sd):
    result = trained["a"]
    assert result.output_path.is_file() and result.steps == 8
    assert result.optimizer_used in ("adamw8bit", "adamw")
    assert result.precision_used == "fp32"  # bf16 requested, CPU-only: recorded fallback
    assert result.steps_per_second > 0 and result.final_loss == result.final_loss
    meta = read_lora_metadata(result.output_path)
    assert meta["base_model"] == str(tiny_sd)
    assert meta["training"]["rank"] == 32 and meta["training"]["alpha"] == 1.0
    assert meta["examples"] == ["artwork-0", "artwork-1"]
    adapter = meta["adapter_metadata"]
    assert adapter["unet.lora_alpha"] == 1.0 and adapter["unet.r"] == 32
    assert adapter["text_encoder.lora_alpha"] == 1.0
    weights = _weights(result.output_path)
    assert any(k.startswith("unet.") for k in weights)
    assert any(k.startswith("text_encoder.") for k in weights)
    # atomic write: nothing but the LoRA files and work folders beside it
    assert not [p for p in result.output_path.parent.iterdir() if p.name.startswith(".")]


def test_export_kohya_uses_a1111_names_and_the_trained_alpha(trained, tmp_path):
    out = export_lora(
        trained["a"].output_path, "kohya", tmp_path / "kohya.safetensors", name="mythragen-a"
    )
    weights = _weights(out)
    assert weights and all(k.startswith(("lora_unet_", "lora_te_")) for k in weights)
    assert any(
        k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in weights
    )
    alphas = [v for k, v in weights.items() if k.endswith(".alpha")]
    downs = [k for k in weights if k.endswith(".lora_down.weight")]
    assert len(alphas) == len(downs) > 0
    assert all(float(a) == 1.0 for a in alphas)  # not rank (diffusers' converter default)
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["ss_network_dim"] == "32"
    # A1111's alias for the file, and kohya-ss' hash of its tensors (A1111's Lora hash).
    assert meta["ss_output_name"] == "mythragen-a"
    assert meta["sshs_model_hash"] == safetensors_data_hash(out)
    copy = export_lora(trained["a"].output_path, "diffusers", tmp_path / "copy.safetensors")
    assert _max_diff(_weights(copy), _weights(trained["a"].output_path)) == 0.0
    with pytest.raises(GenerationInputError):
        export_lora(trained["a"].output_path, "ckpt", tmp_path / "bad")


def test_training_example_accepts_pil_images(tiny_sd, training_images, tmp_path):
    from PIL import Image

    ex = [TrainingExample(Image.open(training_images[0]).convert("RGB"), "a painting", "pil-0")]
    result = train_lora(
        tiny_sd,
        ex,
        tmp_path / "pil.safetensors",
        fast_config(max_train_steps=2, optimizer="adamw"),
        work_dir=tmp_path / "w",
        cache_dir=None,
    )
    assert result.optimizer_used == "adamw" and result.steps == 2


def test_a_half_precision_checkpoint_trains_in_float32(tiny_sd, examples, tmp_path):
    """SD 1.5 is published in float16 too; training must not keep the stored dtype (found by
    the real-size tier: float16 base layers met float32 LoRA layers)."""
    from diffusers import StableDiffusionPipeline

    half = tmp_path / "sd-fp16"
    StableDiffusionPipeline.from_pretrained(tiny_sd, dtype=torch.float16).save_pretrained(half)
    with safe_open(str(half / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        assert fh.get_tensor(next(iter(fh.keys()))).dtype == torch.float16
    result = train_lora(
        half,
        examples[:1],
        tmp_path / "lora.safetensors",
        fast_config(max_train_steps=2),
        work_dir=tmp_path / "w",
        cache_dir=None,
    )
    assert result.steps == 2 and result.final_loss == result.final_loss
