"""The real-size models: each published configuration, built with seeded random weights.

One constructor per model (`_MODELS`: name -> constructor and seed offset), `make_model`
(a model on the meta device for counting, or built without weights and then given memory
once, directly in the target dtype, by `_materialize`, so the same name and dtype always
give the same weights), `count_params`, the `_parameters_on_meta` context that keeps tied
weights tied, and `_quiet`, which silences transformers/diffusers while building. torch,
transformers and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import re
import threading

from ..errors import ModelInputError
from ..precision import precision_name
from .configs import (
    BLIP2_IMAGE_TEXT_HIDDEN_SIZE,
    BLIP2_IMAGE_TOKEN_INDEX,
    BLIP2_ITM_QFORMER_CONFIG,
    BLIP2_NUM_QUERY_TOKENS,
    BLIP2_QFORMER_CONFIG,
    BLIP2_VISION_CONFIG,
    CLIP_L14_PROJECTION_DIM,
    CLIP_L14_TEXT_CONFIG,
    CLIP_L14_VISION_CONFIG,
    CLIP_LOGIT_SCALE_INIT,
    OPT_2_7B_CONFIG,
    PUBLISHED_PARAMS,
    SD15_UNET_CONFIG,
    SD15_VAE_CONFIG,
    SEED,
    RealSizeError,
)


def _clip_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(CLIP_L14_TEXT_CONFIG),
        vision_config=dict(CLIP_L14_VISION_CONFIG),
        projection_dim=CLIP_L14_PROJECTION_DIM,
        logit_scale_init_value=CLIP_LOGIT_SCALE_INIT,
    )


def _unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**SD15_UNET_CONFIG)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**SD15_VAE_CONFIG)


def _text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**CLIP_L14_TEXT_CONFIG))


def _safety_checker():
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    config = _clip_config()
    # Built directly, transformers 5 refuses this class with its default "sdpa" attention;
    # `from_pretrained` falls back to eager by itself, so nothing is written to the config.
    config._attn_implementation = "eager"
    return StableDiffusionSafetyChecker(config)


def _blip2_itm():
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    return Blip2ForImageTextRetrieval(
        Blip2Config(
            vision_config=dict(BLIP2_VISION_CONFIG),
            qformer_config=dict(BLIP2_ITM_QFORMER_CONFIG),
            num_query_tokens=BLIP2_NUM_QUERY_TOKENS,
            image_text_hidden_size=BLIP2_IMAGE_TEXT_HIDDEN_SIZE,
        )
    )


def _blip2_opt():
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    return Blip2ForConditionalGeneration(
        Blip2Config(
            vision_config=dict(BLIP2_VISION_CONFIG),
            qformer_config=dict(BLIP2_QFORMER_CONFIG),
            text_config=dict(OPT_2_7B_CONFIG),
            num_query_tokens=BLIP2_NUM_QUERY_TOKENS,
            image_token_index=BLIP2_IMAGE_TOKEN_INDEX,
            tie_word_embeddings=True,
        )
    )


def _clip_l14():
    from transformers import CLIPModel

    return CLIPModel(_clip_config())


# name -> (constructor, seed offset)
_MODELS = {
    "sd15/unet": (_unet, 1),
    "sd15/vae": (_vae, 2),
    "sd15/text_encoder": (_text_encoder, 3),
    "safety-checker": (_safety_checker, 4),
    "blip2-itm": (_blip2_itm, 5),
    "blip2-opt": (_blip2_opt, 6),
    "clip-l14": (_clip_l14, 7),
}


def count_params(model) -> int:
    """Parameters of a module, each shared (tied) tensor once (works on meta tensors)."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def _quiet():
    """transformers/diffusers: errors only, no progress bars (restored afterwards)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_level, df_level = hf_logging.get_verbosity(), diffusers_logging.get_verbosity()
    hf_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(hf_level)
        diffusers_logging.set_verbosity(df_level)
        if hf_bar:
            hf_logging.enable_progress_bar()


def make_model(name: str, *, dtype: str = "float32", device: str = "cpu"):
    """A randomly initialised model in its published configuration.

    `name` is a key of PUBLISHED_PARAMS. `device="meta"` builds the structure only (no
    memory, for counting parameters). Otherwise the model is built without weights and
    every parameter is then allocated once, directly in `dtype` (no float32 copy of a
    half-precision model), and filled from a generator seeded per model, so the same
    name and dtype always give the same weights. Linear/conv weights ~ N(0, s) with
    s = min(0.02, 1/sqrt(fan_in)), embeddings ~ N(0, 0.02), norm weights 1, biases 0,
    other tensors N(0, 0.02) (query tokens, class embeddings), CLIP's logit scale its
    published init, the safety checker's thresholds in [0.18, 0.22] (random images are
    then never flagged). Modules transformers keeps in float32 when loading in `dtype`
    are kept in float32 here too.
    """
    if name not in _MODELS:
        raise ModelInputError(
            f"unknown model {name!r}: expected one of {', '.join(PUBLISHED_PARAMS)}"
        )
    import torch

    constructor, offset = _MODELS[name]
    dtype = precision_name(dtype)
    if dtype == "auto":
        raise ModelInputError("make_model needs a dtype, not 'auto'")
    with _quiet():
        if str(device) == "meta":
            with torch.device("meta"):
                return constructor().eval()
        with _parameters_on_meta():  # buffers (position ids...) stay real
            model = constructor()
    _materialize(model, getattr(torch, dtype), SEED + offset)
    model.eval()
    if str(device) != "cpu":
        model.to(device)
    return model


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter a module registers goes to the meta device (no memory, no init).

    Like accelerate's `init_empty_weights(include_buffers=False)`, except that a parameter
    already on meta is registered as is: accelerate wraps it anew, which silently unties
    tied weights (OPT's output head would then be a second 0.13 B-parameter copy). It
    patches `nn.Module.register_parameter` for the whole process while it runs: build in
    a process (or thread) that constructs no other modules meanwhile.
    """
    from torch import nn

    _META_LOCK.acquire()
    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original
        _META_LOCK.release()


_META_LOCK = threading.Lock()


_NORM_NAMES = ("LayerNorm", "GroupNorm", "BatchNorm", "RMSNorm", "Norm")


def _fp32_patterns(model, dtype) -> list[str]:
    """The module patterns transformers keeps in float32 when loading in `dtype`."""
    import torch

    patterns: set[str] = set()
    if dtype == torch.float16:
        patterns |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        patterns |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return sorted(patterns)


def _materialize(model, dtype, seed: int) -> None:
    """Give every meta parameter real memory in `dtype` and random values (see make_model)."""
    import math

    import torch
    from torch import nn

    generator = torch.Generator(device="cpu").manual_seed(seed)
    keep_fp32 = _fp32_patterns(model, dtype)
    logit_scale = getattr(getattr(model, "config", None), "logit_scale_init_value", None)
    new: dict[int, nn.Parameter] = {}  # old parameter id -> new one: tied weights stay tied
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for pname, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) in new:
                    module._parameters[pname] = new[id(param)]
                    continue
                full = f"{module_name}.{pname}" if module_name else pname
                target = dtype
                if keep_fp32 and any(re.search(p, full) for p in keep_fp32):
                    target = torch.float32
                data = torch.empty(param.shape, dtype=target, device="cpu")
                kind = type(module).__name__
                if isinstance(module, nn.Embedding):
                    data.normal_(0.0, 0.02, generator=generator)
                    if module.padding_idx is not None:
                        data[module.padding_idx].zero_()
                elif any(n in kind for n in _NORM_NAMES) or (
                    data.dim() == 1
                    and pname in ("weight", "bias")
                    and not isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
                ):
                    data.fill_(1.0 if pname == "weight" else 0.0)
                elif pname == "bias":
                    data.zero_()
                elif isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
                    fan_in = math.prod(param.shape[1:]) if param.dim() > 1 else 1
                    data.normal_(0.0, min(0.02, fan_in**-0.5), generator=generator)
                elif pname == "logit_scale":
                    data.fill_(logit_scale if logit_scale is not None else CLIP_LOGIT_SCALE_INIT)
                elif pname.endswith("_embeds_weights"):  # the safety checker's thresholds
                    data.uniform_(0.18, 0.22, generator=generator)
                else:  # query tokens, class/position embeddings, concept embeddings
                    data.normal_(0.0, 0.02, generator=generator)
                replacement = nn.Parameter(data, requires_grad=param.requires_grad)
                new[id(param)] = replacement
                module._parameters[pname] = replacement
            for bname, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                    module._buffers[bname] = buffer.to(dtype)
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left:
        raise RealSizeError(f"parameters left without memory: {left[:5]}")
