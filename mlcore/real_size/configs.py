"""What each real-size stand-in is: roles, their tables, the published configurations.

Data and two lookups: the five ROLES with the hub checkpoint each stands in for (HUB_IDS), its
stand-in marker kind (KINDS), its default on-disk precision (DEFAULT_DTYPES), the settings
that point the project at its folder (ENV_VARS) and its published parameter count
(PUBLISHED_PARAMS, `published_role_params`); REAL_SIZE_VERSION and SEED, which decide when
a folder is rebuilt and what its random weights are; the published config.json values of
every model, written out as the classes' arguments; and `RealSizeError`, raised when a
build cannot match them. Imports nothing heavy.
"""

from __future__ import annotations

from ..errors import ModelInputError

ROLES = ("sd15", "safety-checker", "blip2-itm", "blip2-opt", "clip-l14")

# Bump when a build changes shape or content: an older folder is then rebuilt by `build`.
REAL_SIZE_VERSION = 2
SEED = 20261207  # each model adds its own offset (see models._MODELS)

# Published parameter counts (not derived from this module's builds: the tests compare the
# builds against these).
PUBLISHED_PARAMS: dict[str, int] = {
    # Stable Diffusion 1.5 components, as diffusers/transformers count the published
    # checkpoints (SD model card: "860M UNet and 123M text encoder"; exact figures as
    # reported for stable-diffusion-v1-5 in diffusers' docs and issues).
    "sd15/unet": 859_520_964,
    "sd15/vae": 83_653_863,
    "sd15/text_encoder": 123_060_480,
    # CompVis/stable-diffusion-safety-checker: hub page "304M params" (pytorch_model.bin
    # 1.22 GB in float32). Exact figure from published counts: CLIP ViT-L/14's vision
    # tower (427,616,513 in all - 123,060,480 text - 589,824 text projection - 1 logit
    # scale - 786,432 visual projection = 303,179,776) + the 1024x768 visual projection
    # (786,432) + 17 + 3 concept embeddings of 768 (15,360) + 20 thresholds.
    "safety-checker": 303_981_588,
    # Salesforce/blip2-itm-vit-g: hub page "1.17B params" (rounded as published).
    "blip2-itm": 1_170_000_000,
    # Salesforce/blip2-opt-2.7b: hub page "3.74B params"; 3,744,761,856 exactly (the
    # safetensors index of the image-token revision: OPT embeddings padded to 50,304 rows).
    "blip2-opt": 3_744_761_856,
    # openai/clip-vit-large-patch14: 427,616,513 (the figure transformers reports for the
    # published checkpoint; model card "ViT-L/14, 428M").
    "clip-l14": 427_616_513,
}

# Where the hub checkpoint each role stands in for lives (recorded in the marker).
HUB_IDS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "safety-checker": "CompVis/stable-diffusion-safety-checker",
    "blip2-itm": "Salesforce/blip2-itm-vit-g",
    "blip2-opt": "Salesforce/blip2-opt-2.7b",
    "clip-l14": "openai/clip-vit-large-patch14",
}
# The marker's `kind`: the same names the tiny stand-ins of these roles use.
KINDS = {
    "sd15": "stable-diffusion-1.5",
    "safety-checker": "safety-checker",
    "blip2-itm": "blip2-retrieval",
    "blip2-opt": "blip2-vqa",
    "clip-l14": "clip",
}
# Default on-disk precision: half precision keeps all five at ~15 GB together.
DEFAULT_DTYPES = {
    "sd15": "float16",  # what the published fp16 weights ship as (see mlcore.precision)
    "safety-checker": "float16",  # the checker runs beside the SD pipeline
    "blip2-itm": "bfloat16",
    "blip2-opt": "bfloat16",
    "clip-l14": "bfloat16",
}
# The setting(s) that point the project at each role's folder.
ENV_VARS = {
    "sd15": ("MYTHRAGEN_SD_MODEL",),
    "safety-checker": ("MYTHRAGEN_SAFETY_CHECKER_MODEL",),
    "blip2-itm": ("MYTHRAGEN_BLIP2_RETRIEVAL_MODEL",),
    "blip2-opt": ("MYTHRAGEN_VQA_MODEL",),  # captioner and VQA: one checkpoint
    "clip-l14": ("MYTHRAGEN_CLIP_MODEL",),
}

# ------------------------------------------------------------------ published configs
# Written out from the published config.json files; keys are the classes' arguments.

SD15_UNET_CONFIG = {  # stable-diffusion-v1-5 unet/config.json
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}
SD15_VAE_CONFIG = {  # stable-diffusion-v1-5 vae/config.json
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_SCHEDULER_CONFIG = {  # stable-diffusion-v1-5 scheduler/scheduler_config.json
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
# openai/clip-vit-large-patch14 text_config (SD 1.5's text encoder is the same model).
# The bos/eos/pad ids 0/2/1 are the published (legacy) values: transformers then pools at
# the highest token id, which is <|endoftext|> (49407) in the real vocabulary.
CLIP_L14_TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
CLIP_L14_VISION_CONFIG = {  # openai/clip-vit-large-patch14 vision_config
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 768,
}
CLIP_L14_PROJECTION_DIM = 768
CLIP_LOGIT_SCALE_INIT = 2.6592  # ln(1 / 0.07), the published logit_scale_init_value

# BLIP-2: the vision tower is EVA ViT-g (transformers' Blip2VisionConfig defaults) and the
# Q-Former is BERT-base with cross-attention every 2nd layer (Blip2QFormerConfig defaults).
BLIP2_VISION_CONFIG = {
    "hidden_size": 1408,
    "intermediate_size": 6144,
    "num_hidden_layers": 39,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-06,
    "qkv_bias": True,
}
BLIP2_QFORMER_CONFIG = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "layer_norm_eps": 1e-12,
    "cross_attention_frequency": 2,
    "encoder_hidden_size": 1408,
}
# blip2-itm-vit-g: the Q-Former also reads text (bert-base-uncased + the "[DEC]" token).
BLIP2_ITM_QFORMER_CONFIG = {
    **BLIP2_QFORMER_CONFIG,
    "vocab_size": 30523,
    "use_qformer_text_input": True,
}
BLIP2_NUM_QUERY_TOKENS = 32
BLIP2_IMAGE_TEXT_HIDDEN_SIZE = 256
# facebook/opt-2.7b as embedded in Salesforce/blip2-opt-2.7b. vocab_size: OPT's 50,272,
# padded to 50,304 when the "<image>" token (id 50,265) was added; the published total of
# 3,744,761,856 parameters counts 50,304 tied embedding rows. eos_token_id: the published
# config stops at "\n" (50118 in the real GPT-2 vocabulary); the stand-in vocabulary puts
# other pieces there, so the stand-in stops at "</s>" (2) instead.
OPT_2_7B_CONFIG = {
    "model_type": "opt",
    "vocab_size": 50304,
    "hidden_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "ffn_dim": 10240,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 2560,
    "do_layer_norm_before": True,
    "activation_function": "relu",
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "enable_bias": True,
    "layer_norm_elementwise_affine": True,
    "bos_token_id": 2,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "tie_word_embeddings": True,
}
OPT_TOKENIZER_SIZE = 50265  # OPT/GPT-2 BPE: 50,257 GPT-2 tokens + fairseq's specials
BLIP2_IMAGE_TOKEN_INDEX = 50265  # "<image>", added after OPT's vocabulary
BLIP2_IMAGE_SIZE = 224
BERT_VOCAB_SIZE = 30522  # bert-base-uncased
CLIP_VOCAB_SIZE = 49408


class RealSizeError(RuntimeError):
    """A real-size stand-in could not be built (no vocabulary, no disk space, a bad save)."""


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ModelInputError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def published_role_params(role: str) -> int:
    """The published parameter count of a role's folder (sd15: UNet + VAE + text encoder)."""
    if role == "sd15":
        return sum(PUBLISHED_PARAMS[f"sd15/{part}"] for part in ("unet", "vae", "text_encoder"))
    return PUBLISHED_PARAMS[role]
