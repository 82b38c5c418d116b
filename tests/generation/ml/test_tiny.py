"""Tiny models: built from configs, saved, and reloaded from disk like real checkpoints."""

from __future__ import annotations

import json

from generation.ml.tiny import build_tiny_clip, build_tiny_sd
from mlcore.stand_in import MARKER as TINY_MARKER
from mlcore.stand_in import is_tiny


def test_tiny_sd_reloads_from_disk_with_a_working_tokenizer(tiny_sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    tok = pipe.tokenizer
    ids = tok("painting", add_special_tokens=False).input_ids
    assert ids != [tok.unk_token_id] and tok.unk_token_id not in ids
    assert len(ids) == 1  # a whole-word token
    # An unseen word falls back to byte tokens, never to the unknown token.
    assert tok.unk_token_id not in tok("zyxq", add_special_tokens=False).input_ids
    assert pipe.text_encoder.config.max_position_embeddings >= tok.model_max_length
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    assert pipe.safety_checker is None


def test_tiny_sd_is_marked_and_idempotent(tiny_sd):
    marker = json.loads((tiny_sd / TINY_MARKER).read_text())
    assert marker["tiny"] is True and marker["kind"] == "stable-diffusion-1.5"
    stamp = (tiny_sd / "unet").stat().st_mtime_ns
    assert build_tiny_sd(tiny_sd) == tiny_sd
    assert (tiny_sd / "unet").stat().st_mtime_ns == stamp  # not rebuilt
    assert is_tiny(tiny_sd)
    assert not is_tiny(tiny_sd / "unet")


def test_tiny_clip_reloads_with_a_pil_image_processor(tiny_clip):
    from PIL import Image
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    assert build_tiny_clip(tiny_clip) == tiny_clip and is_tiny(tiny_clip)
    model = CLIPModel.from_pretrained(tiny_clip)
    tok = CLIPTokenizer.from_pretrained(tiny_clip)
    proc = CLIPImageProcessorPil.from_pretrained(tiny_clip)
    assert tok.unk_token_id not in tok("portrait", add_special_tokens=False).input_ids
    pixels = proc(images=[Image.new("RGB", (50, 40), "red")], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 32, 32)
    assert model.config.projection_dim == 32


def test_tiny_builds_are_deterministic(tmp_path):
    first = build_tiny_clip(tmp_path / "one")
    second = build_tiny_clip(tmp_path / "two")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
