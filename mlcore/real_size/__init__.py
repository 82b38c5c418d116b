"""Real-size stand-ins: every model role in its published configuration, random weights.

No model hub is reachable from the project's machines, so the project builds its own
checkpoints. The tiny ones (`*/ml/tiny.py`) prove the code paths; the ones here prove
memory, precision, shapes and speed. Each role's published configuration is written out
in `configs` as plain data, the real class is built from it with seeded random weights, and the
folder is saved in the layout of the hub checkpoint, so the project's normal
`from_pretrained(folder)` code loads it unchanged:

=================  =============================================  ==========================
role               stands in for                                  class
=================  =============================================  ==========================
sd15               stable-diffusion-v1-5/stable-diffusion-v1-5    StableDiffusionPipeline
                   (unet/, vae/, text_encoder/, tokenizer/,       (no safety_checker in it)
                   scheduler/, model_index.json)
safety-checker     CompVis/stable-diffusion-safety-checker        StableDiffusionSafetyChecker
blip2-itm          Salesforce/blip2-itm-vit-g                     Blip2ForImageTextRetrieval
blip2-opt          Salesforce/blip2-opt-2.7b                      Blip2ForConditionalGeneration
clip-l14           openai/clip-vit-large-patch14                  CLIPModel
=================  =============================================  ==========================

Every folder carries the stand-in marker (`mlcore.stand_in`, size "real-size"), which also
records the parameter count, dtype, seed and what the tokenizer is. Outputs of these models
are meaningless: they are for checks, never for results.

Tokenizers: SD 1.5 and CLIP get the REAL 49,408-token CLIP BPE vocabulary, read from the
`bpe_simple_vocab_16e6.txt.gz` that the open-clip-torch wheel ships (`real_clip_vocab`;
open_clip itself is never imported: it needs torchvision). bert-base-uncased (BLIP-2's
Q-Former tokenizer) and OPT's GPT-2 BPE are not available offline, so the BLIP-2 folders
get vocabularies of the published sizes built from the CLIP vocabulary's words; their
markers say so.

The package: `configs` (roles, tables and the published configurations), `tokenizers`
(the CLIP vocabulary and the stand-in vocabularies, processors), `models` (`make_model`,
seeded random weights), `builder` (`build`, `build_all`, `is_complete`). The names below
are its public interface.

This package never imports Django; torch, transformers and diffusers are imported inside
the functions that need them.
"""

from __future__ import annotations

from ..stand_in import MARKER
from .builder import build, build_all, folder_bytes, is_complete
from .configs import (
    BLIP2_IMAGE_TOKEN_INDEX,
    DEFAULT_DTYPES,
    ENV_VARS,
    HUB_IDS,
    KINDS,
    PUBLISHED_PARAMS,
    REAL_SIZE_VERSION,
    ROLES,
    RealSizeError,
    published_role_params,
)
from .models import count_params, make_model
from .tokenizers import CLIP_BPE_MEMBER, real_clip_vocab

__all__ = [
    "BLIP2_IMAGE_TOKEN_INDEX",
    "CLIP_BPE_MEMBER",
    "DEFAULT_DTYPES",
    "ENV_VARS",
    "HUB_IDS",
    "KINDS",
    "MARKER",
    "PUBLISHED_PARAMS",
    "REAL_SIZE_VERSION",
    "ROLES",
    "RealSizeError",
    "build",
    "build_all",
    "count_params",
    "folder_bytes",
    "is_complete",
    "make_model",
    "published_role_params",
    "real_clip_vocab",
]
