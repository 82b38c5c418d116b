"""The folders `build_real_size_models` wrote load with the plain `from_pretrained` classes,
in the dtype they were stored in, with every weight present, the published parameter
count (within 1%), working tokenizers and a real-size marker.

Needs MYTHRAGEN_REAL_SIZE_DIR (skipped without it, see conftest.py). Loads one model at a
time; the largest (BLIP-2 OPT-2.7b in bfloat16) takes ~7.5 GB of memory.
"""

from __future__ import annotations

import gc
import json

import pytest

from mlcore import real_size
from mlcore.stand_in import REAL_SIZE, stand_in_info

pytestmark = pytest.mark.real_size


def _close(count: int, published: int) -> bool:
    return abs(count - published) / published < 0.01


def _loaded(cls, folder, dtype, **kwargs):
    """`cls.from_pretrained` in `dtype`; asserts every weight was in the folder."""
    model, info = cls.from_pretrained(folder, dtype=dtype, output_loading_info=True, **kwargs)
    assert not info["missing_keys"], info["missing_keys"][:5]
    assert not info["unexpected_keys"], info["unexpected_keys"][:5]
    return model


def _check_weights(model, dtype, published: int) -> None:
    import torch

    count = real_size.count_params(model)
    assert _close(count, published), (count, published)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _check_clip_tokenizer(tokenizer) -> None:
    assert len(tokenizer) == 49408
    ids = tokenizer("painting", add_special_tokens=False).input_ids
    assert ids and tokenizer.unk_token_id not in ids  # the TOKENIZER TRAP
    # The real CLIP ids (as open_clip's tokenizer gives them).
    assert tokenizer("a painting").input_ids == [49406, 320, 3086, 49407]
    assert tokenizer.model_max_length == 77


def _folder(real_size_dir, role):
    folder = real_size_dir / role
    info = stand_in_info(folder)
    assert info is not None, f"{folder} has no stand-in marker"
    assert info["size"] == REAL_SIZE and info["role"] == role and not info["tiny"]
    assert real_size.is_complete(folder, role)
    return folder, info


def _model(folder, info, cls, role):
    """`cls` loaded from a role's folder in the dtype it was stored in, every weight
    present, the published parameter count."""
    import torch

    dtype = getattr(torch, info["dtype"])
    model = _loaded(cls, folder, dtype)
    _check_weights(model, dtype, real_size.PUBLISHED_PARAMS[role])
    return model


@pytest.mark.parametrize("role", real_size.ROLES)
def test_marker_says_real_size(real_size_dir, role):
    _folder_path, info = _folder(real_size_dir, role)
    assert info["hub_id"] == real_size.HUB_IDS[role]
    assert info["published_params"] == real_size.published_role_params(role)
    assert _close(info["params"], info["published_params"])


def test_sd15_pipeline(real_size_dir):
    import torch
    from diffusers import StableDiffusionPipeline

    folder, info = _folder(real_size_dir, "sd15")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    assert index["scheduler"] == ["diffusers", "PNDMScheduler"]
    dtype = getattr(torch, info["dtype"])
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, dtype=dtype, safety_checker=None, feature_extractor=None
    )
    for part in ("unet", "vae", "text_encoder"):
        _check_weights(getattr(pipe, part), dtype, real_size.PUBLISHED_PARAMS[f"sd15/{part}"])
    _check_clip_tokenizer(pipe.tokenizer)
    assert pipe.unet.config.cross_attention_dim == 768
    assert pipe.vae_scale_factor == 8
    del pipe
    gc.collect()


def test_sd15_components_load_one_by_one(real_size_dir):
    """The way the LoRA trainer loads them (subfolder by subfolder)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder, info = _folder(real_size_dir, "sd15")
    dtype = getattr(torch, info["dtype"])
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype)
    _check_weights(vae, dtype, real_size.PUBLISHED_PARAMS["sd15/vae"])
    text = _loaded(CLIPTextModel, folder / "text_encoder", dtype)
    _check_weights(text, dtype, real_size.PUBLISHED_PARAMS["sd15/text_encoder"])
    _check_clip_tokenizer(CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"))
    DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    del vae, text
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype)
    _check_weights(unet, dtype, real_size.PUBLISHED_PARAMS["sd15/unet"])
    del unet
    gc.collect()


def test_safety_checker(real_size_dir):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder, info = _folder(real_size_dir, "safety-checker")
    model = _model(folder, info, StableDiffusionSafetyChecker, "safety-checker")
    processor = CLIPImageProcessorPil.from_pretrained(folder)
    assert processor.crop_size["height"] == 224
    del model
    gc.collect()


def test_blip2_itm(real_size_dir):
    from transformers import AutoTokenizer, Blip2ForImageTextRetrieval
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder, info = _folder(real_size_dir, "blip2-itm")
    model = _model(folder, info, Blip2ForImageTextRetrieval, "blip2-itm")
    config = model.config
    assert config.num_query_tokens == 32 and config.image_text_hidden_size == 256
    assert config.qformer_config.use_qformer_text_input
    assert config.qformer_config.cross_attention_frequency == 2
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == config.qformer_config.vocab_size == 30523
    ids = tokenizer("a painting", add_special_tokens=False).input_ids
    assert len(ids) == 2 and tokenizer.unk_token_id not in ids
    assert BlipImageProcessorPil.from_pretrained(folder).size["height"] == 224
    assert "STAND-IN" in info["tokenizer"]
    del model
    gc.collect()


def test_blip2_opt(real_size_dir):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    folder, info = _folder(real_size_dir, "blip2-opt")
    processor = Blip2Processor.from_pretrained(folder)
    assert processor.num_query_tokens == 32
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 50266
    assert tokenizer.convert_tokens_to_ids("<image>") == real_size.BLIP2_IMAGE_TOKEN_INDEX
    ids = tokenizer(" painting", add_special_tokens=False).input_ids
    assert len(ids) == 1 and tokenizer.unk_token_id not in ids
    assert processor.image_processor.size["height"] == 224
    assert "STAND-IN" in info["tokenizer"]
    model = _model(folder, info, Blip2ForConditionalGeneration, "blip2-opt")
    config = model.config
    assert config.image_token_index == real_size.BLIP2_IMAGE_TOKEN_INDEX
    assert config.text_config.hidden_size == 2560 and config.text_config.num_hidden_layers == 32
    assert config.text_config.vocab_size >= len(tokenizer)
    lm = model.language_model
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    del model, lm
    gc.collect()


def test_clip_l14(real_size_dir):
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder, info = _folder(real_size_dir, "clip-l14")
    model = _model(folder, info, CLIPModel, "clip-l14")
    assert model.config.projection_dim == 768
    _check_clip_tokenizer(CLIPTokenizer.from_pretrained(folder))
    assert CLIPImageProcessorPil.from_pretrained(folder).crop_size["height"] == 224
    del model
    gc.collect()
