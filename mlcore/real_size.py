"""Real-size stand-ins: every model role in its published configuration, random weights.

No model hub is reachable from the project's machines, so the project builds its own
checkpoints. The tiny ones (`*/ml/tiny.py`) prove the code paths; the ones here prove
memory, precision, shapes and speed. Each role's published configuration is written out
below as plain data, the real class is built from it with seeded random weights, and the
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

This module never imports Django; torch, transformers and diffusers are imported inside
the functions that need them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ModelInputError
from .precision import precision_name
from .stand_in import MARKER, REAL_SIZE, stand_in_info, write_marker

ROLES = ("sd15", "safety-checker", "blip2-itm", "blip2-opt", "clip-l14")

# Bump when a build changes shape or content: an older folder is then rebuilt by `build`.
REAL_SIZE_VERSION = 2
SEED = 20261207  # each model adds its own offset (see _MODELS)

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
    "blip2-opt": ("MYTHRAGEN_CAPTION_MODEL", "MYTHRAGEN_VQA_MODEL"),
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

# ------------------------------------------------------------------ the real CLIP BPE
OPEN_CLIP_VERSION = "3.3.0"
CLIP_BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_MEMBER = f"open_clip/{CLIP_BPE_NAME}"
CLIP_BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CLIP_NUM_MERGES = 48894  # 49,152 - 256 - 2 BPE lines of the file, as CLIP's tokenizer reads


class RealSizeError(RuntimeError):
    """A real-size stand-in could not be built (no vocabulary, no disk space, a bad save)."""


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ModelInputError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def real_clip_vocab(cache_dir: str | os.PathLike) -> Path:
    """The path of CLIP's `bpe_simple_vocab_16e6.txt.gz` in `cache_dir`, fetched if needed.

    Looks for the file, then for an open-clip-torch wheel in `cache_dir`; without one it
    runs `python -m pip download --no-deps open-clip-torch==OPEN_CLIP_VERSION -d cache_dir`
    (package registries are reachable, model hubs are not) and extracts the file from the
    wheel. open_clip is never imported. Raises `RealSizeError` when none of that works.
    """
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / CLIP_BPE_NAME
    if target.is_file() and _sha256(target.read_bytes()) == CLIP_BPE_SHA256:
        return target
    wheels = sorted(cache.glob("open_clip_torch-*.whl"))
    if not wheels:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary=:none:",
            f"open-clip-torch=={OPEN_CLIP_VERSION}",
            "-d",
            str(cache),
        ]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RealSizeError(
                f"could not run {' '.join(command)!r} to fetch CLIP's vocabulary: {exc}"
            ) from exc
        wheels = sorted(cache.glob("open_clip_torch-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout or "").strip()[-800:]
            raise RealSizeError(
                "the real CLIP vocabulary comes from the open-clip-torch wheel, and "
                f"`{' '.join(command)}` failed (exit {proc.returncode}): {tail}. Put "
                f"open_clip_torch-{OPEN_CLIP_VERSION}-py3-none-any.whl (or {CLIP_BPE_NAME}) "
                f"into {cache} by hand and build again."
            )
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            data = wheel.read(CLIP_BPE_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise RealSizeError(f"{wheels[-1]} holds no readable {CLIP_BPE_MEMBER}: {exc}") from exc
    if _sha256(data) != CLIP_BPE_SHA256:
        raise RealSizeError(
            f"{CLIP_BPE_MEMBER} in {wheels[-1].name} is not the known CLIP vocabulary "
            f"(sha256 {_sha256(data)}, expected {CLIP_BPE_SHA256})"
        )
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) byte -> printable character table for byte-level BPE."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_vocab_and_merges(bpe_gz: str | os.PathLike) -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary (49,408 tokens) and merges (48,894) from the open_clip BPE file.

    Exactly as CLIP's `SimpleTokenizer` builds them: 256 byte characters, the same with
    "</w>", one token per merge, then <|startoftext|> and <|endoftext|>.
    """
    lines = gzip.decompress(Path(bpe_gz).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : CLIP_NUM_MERGES + 1]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE or len(merges) != CLIP_NUM_MERGES:
        raise RealSizeError(f"{bpe_gz}: {len(vocab)} tokens / {len(merges)} merges, not CLIP's")
    return vocab, merges


def _check_not_unknown(tokenizer, word: str = "painting") -> None:
    """The TOKENIZER TRAP (transformers 5): a tokenizer that ignored its files maps
    every word to the unknown token. Refuse such a tokenizer."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids or tokenizer.unk_token_id in ids:
        raise RealSizeError(f"tokenizer did not load its vocabulary: {word!r} -> {ids}")


def write_clip_tokenizer(out_dir: str | os.PathLike, bpe_gz: str | os.PathLike) -> Path:
    """Write the real CLIP tokenizer (vocab.json + merges.txt, 77 tokens) into `out_dir`."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(bpe_gz)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8"
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "do_lower_case": True,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        ),
        encoding="utf-8",
    )
    tokenizer = CLIPTokenizer.from_pretrained(out)
    _check_not_unknown(tokenizer)
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise RealSizeError(f"CLIP tokenizer has {len(tokenizer)} tokens, not {CLIP_VOCAB_SIZE}")
    tokenizer.save_pretrained(out)
    return out


def _clip_words(bpe_gz) -> list[str]:
    """Whole words of the CLIP vocabulary (tokens ending "</w>"), most frequent first."""
    vocab, _merges = clip_vocab_and_merges(bpe_gz)
    words = []
    for token in sorted(vocab, key=vocab.get)[512:]:  # after the 512 byte characters
        if token.endswith("</w>"):
            words.append(token[:-4])
    return words


def bert_standin_vocab(bpe_gz) -> list[str]:
    """A 30,522-entry word-piece vocabulary laid out like bert-base-uncased's.

    [PAD], [unused0-98], [UNK], [CLS], [SEP], [MASK], [unused99-993] (ids 0-998, as in
    bert-base-uncased), single characters and their "##" forms (so no Latin text is ever
    [UNK]), then whole words of the CLIP vocabulary (most frequent first) and "##" pieces
    of the same words. A STAND-IN: the real bert-base-uncased vocabulary is not available
    offline; ids of the real one differ.
    """
    specials = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]"]
    specials += ["[MASK]", *(f"[unused{i}]" for i in range(99, 994))]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    chars += [chr(c) for c in range(0xA1, 0x250) if chr(c).isprintable() and chr(c).islower()]
    chars += list("‘’“”–—…•€£¥©®°±×÷")
    pieces = ["##" + c for c in chars if c.isalnum()]
    seen = dict.fromkeys(specials + chars + pieces)
    room = BERT_VOCAB_SIZE - len(seen)
    words = [w for w in _clip_words(bpe_gz) if re.fullmatch(r"[a-z0-9]{2,}", w)]
    n_words = int(room * 0.81)  # bert-base-uncased: ~19% of its entries are "##" pieces
    for word in words:
        if len(seen) >= len(specials) + len(chars) + len(pieces) + n_words:
            break
        seen.setdefault(word, None)
    for word in words:  # then the same words as word endings, most frequent first
        if len(seen) >= BERT_VOCAB_SIZE:
            break
        seen.setdefault("##" + word, None)
    extra = 994
    while len(seen) < BERT_VOCAB_SIZE:  # never needed with the real CLIP file
        seen.setdefault(f"[unused{extra}]", None)
        extra += 1
    return list(seen)[:BERT_VOCAB_SIZE]


def write_bert_tokenizer(out_dir: str | os.PathLike, bpe_gz) -> Path:
    """The Q-Former's BertTokenizer (stand-in vocabulary, "[DEC]" as bos, 512 tokens)."""
    from transformers import BertTokenizer

    out = Path(out_dir)
    vocab = bert_standin_vocab(bpe_gz)
    # TRAP (transformers 5): BertTokenizer(vocab_file=...) silently ignores the file.
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        do_lower_case=True,
        model_max_length=512,
    )
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # LAVIS' BLIP-2 adds it: id 30522
    _check_not_unknown(tokenizer)
    if len(tokenizer) != BLIP2_ITM_QFORMER_CONFIG["vocab_size"]:
        raise RealSizeError(f"BERT stand-in tokenizer has {len(tokenizer)} tokens")
    tokenizer.save_pretrained(out)
    # The hub layout's vocab.txt too (transformers 5 writes only tokenizer.json).
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return out


def opt_standin_bpe(bpe_gz) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE of OPT's size (50,265 tokens) learned from the CLIP vocabulary.

    GPT-2 style ("Ġ" marks a leading space), OPT's specials at ids 0-3 (<s>, <pad>, </s>,
    <unk>). The training text is every whole word of the CLIP vocabulary with a Zipf-like
    frequency from its CLIP rank (plain, capitalised, and without a leading space).
    Deterministic. A STAND-IN for GPT-2's BPE, which is not available offline.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = _clip_words(bpe_gz)

    def corpus() -> Iterable[str]:
        for rank, word in enumerate(words):
            count = 100_000 // (rank + 20) + 1
            yield (" " + word) * count
            if word.isalpha():
                yield (" " + word.capitalize()) * (count // 5 + 1)
            yield word + "\n"

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=OPT_TOKENIZER_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = model["vocab"]
    if len(vocab) != OPT_TOKENIZER_SIZE:
        raise RealSizeError(f"OPT stand-in BPE has {len(vocab)} tokens, not {OPT_TOKENIZER_SIZE}")
    return vocab, merges


def make_blip2_processor(bpe_gz, *, bpe: tuple | None = None):
    """`Blip2Processor`: the OPT stand-in tokenizer (+ "<image>") and BLIP-2's 224 px
    image processor, with `num_query_tokens` (transformers 5 needs it). `bpe`: the
    (vocab, merges) of `opt_standin_bpe(bpe_gz)` when already computed."""
    from transformers import Blip2Processor, GPT2Tokenizer

    vocab, merges = bpe or opt_standin_bpe(bpe_gz)
    # vocab=/merges= (never vocab_file=/merges_file=, which transformers 5 ignores).
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,  # OPT prepends </s> to every text
        model_max_length=2048,
    )
    processor = Blip2Processor(
        image_processor=_blip_image_processor(),
        tokenizer=tokenizer,
        num_query_tokens=BLIP2_NUM_QUERY_TOKENS,
    )
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    if image_id != BLIP2_IMAGE_TOKEN_INDEX:
        raise RealSizeError(f"<image> got id {image_id}, not {BLIP2_IMAGE_TOKEN_INDEX}")
    _check_not_unknown(tokenizer)
    return processor


def _blip_image_processor():
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    # BLIP-2's published preprocessor: 224 px, bicubic, OpenAI CLIP mean/std (the class's
    # defaults, except the size).
    return BlipImageProcessorPil(size={"height": BLIP2_IMAGE_SIZE, "width": BLIP2_IMAGE_SIZE})


def _clip_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # The published CLIP / safety-checker preprocessor: shortest edge 224, centre crop 224,
    # bicubic, OpenAI CLIP mean/std (all the class's defaults).
    return CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )


# ------------------------------------------------------------------ models
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


# ------------------------------------------------------------------ building folders
# Files a complete folder of each role holds (besides the marker and the weights).
_REQUIRED = {
    "sd15": [
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ],
    "safety-checker": ["config.json", "preprocessor_config.json"],
    "blip2-itm": ["config.json", "preprocessor_config.json", "tokenizer_config.json"],
    "blip2-opt": ["config.json", "preprocessor_config.json", "tokenizer_config.json"],
    "clip-l14": ["config.json", "preprocessor_config.json", "vocab.json", "merges.txt"],
}
_WEIGHT_DIRS = {"sd15": ["unet", "vae", "text_encoder"]}
# Bytes per parameter, for the free-space check before a build.
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def published_role_params(role: str) -> int:
    """The published parameter count of a role's folder (sd15: UNet + VAE + text encoder)."""
    if role == "sd15":
        return sum(PUBLISHED_PARAMS[f"sd15/{part}"] for part in ("unet", "vae", "text_encoder"))
    return PUBLISHED_PARAMS[role]


def is_complete(folder: str | os.PathLike, role: str) -> bool:
    """True when `folder` holds a finished real-size build of `role` (this version)."""
    folder = Path(folder)
    info = stand_in_info(folder)
    if not info or info.get("size") != REAL_SIZE or info.get("role") != role:
        return False
    if info.get("version") != REAL_SIZE_VERSION:
        return False
    if not all((folder / name).is_file() for name in _REQUIRED[role]):
        return False
    subfolders = _WEIGHT_DIRS.get(role, [""])
    return all(any((folder / sub).glob("*.safetensors")) for sub in subfolders)


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of every file under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def default_cache_dir(out_dir: str | os.PathLike) -> Path:
    """Where `build` keeps the open-clip-torch wheel and CLIP's BPE file: beside the role
    folders (`<root>/.cache` for `<root>/<role>`)."""
    return Path(out_dir).expanduser().absolute().parent / ".cache"


def build(
    role: str,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Build the real-size stand-in of `role` into `out_dir` and return the folder.

    Weights are random (seeded: the same role and dtype give the same files) and stored in
    half precision by default: float16 for "sd15" and "safety-checker", bfloat16 for
    "blip2-itm", "blip2-opt" and "clip-l14" (~15 GB for all five; float32 doubles it).
    `dtype` overrides that ("float32", "float16", "bfloat16"). Models are built directly
    in that dtype, never through a float32 copy. The CLIP vocabulary is fetched into
    `cache_dir` (default `default_cache_dir(out_dir)`), see `real_clip_vocab`.

    Idempotent: a complete real-size folder of this role is returned as is. Anything else
    at `out_dir` (an older version, an interrupted build) is replaced, unless it is a
    folder that is not a stand-in of this role, which is refused. The build writes into a
    temporary folder beside `out_dir` and renames it into place at the end, so readers
    never see a half-written model.
    """
    _check_role(role)
    out = Path(out_dir).expanduser().absolute()
    if is_complete(out, role):
        return out
    if out.exists():
        info = stand_in_info(out)
        empty = out.is_dir() and not any(out.iterdir())
        if not empty and not (info and info.get("role") == role):
            raise RealSizeError(
                f"{out} exists and is not a real-size {role} folder: refusing to overwrite it"
            )
    dtype = precision_name(dtype or DEFAULT_DTYPES[role])
    if dtype == "auto":
        raise ModelInputError("build needs a dtype (or None for the role's default), not 'auto'")
    out.parent.mkdir(parents=True, exist_ok=True)
    needed = published_role_params(role) * _BYTES[dtype] + 200 * 2**20
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        raise RealSizeError(
            f"{role} needs ~{needed / 2**30:.1f} GiB in {out.parent}, only {free / 2**30:.1f} "
            "GiB are free"
        )
    bpe_gz = real_clip_vocab(cache_dir or default_cache_dir(out))

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        started = time.monotonic()
        with _quiet():
            extra = _BUILDERS[role](tmp, dtype, bpe_gz)
        published = published_role_params(role)
        if abs(extra["params"] - published) > 0.01 * published:
            raise RealSizeError(
                f"{role} was built with {extra['params']:,} parameters, published "
                f"{published:,}: not the published configuration"
            )
        write_marker(
            tmp,
            KINDS[role],
            size=REAL_SIZE,
            role=role,
            version=REAL_SIZE_VERSION,
            hub_id=HUB_IDS[role],
            dtype=dtype,
            seed=SEED,
            published_params=published,
            build_seconds=round(time.monotonic() - started, 1),
            **extra,
        )
        # mkdtemp and some savers make files private; workers may run as another user.
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)  # empty, or an older/incomplete build of this role
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_all(
    root: str | os.PathLike,
    roles: Iterable[str] = ROLES,
    *,
    dtype: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """`build` every role into `root/<role>`; returns {role: folder}. See `build`."""
    root = Path(root).expanduser().absolute()
    roles = [_check_role(role) for role in roles]
    cache = cache_dir or root / ".cache"
    return {role: build(role, root / role, dtype=dtype, cache_dir=cache) for role in roles}


_CLIP_TOKENIZER_NOTE = (
    f"real CLIP BPE (49,408 tokens) from {CLIP_BPE_MEMBER} of the open-clip-torch wheel "
    f"(sha256 {CLIP_BPE_SHA256[:16]}...)"
)


def _save_model(model, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")


def _build_sd15(tmp: Path, dtype: str, bpe_gz) -> dict:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp / "_tokenizer", bpe_gz))
    parts = {part: make_model(f"sd15/{part}", dtype=dtype) for part in ("unet", "vae")}
    parts["text_encoder"] = make_model("sd15/text_encoder", dtype=dtype)
    counts = {f"sd15/{part}": count_params(model) for part, model in parts.items()}
    pipe = StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=tokenizer,
        unet=parts["unet"],
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,  # its own role and folder ("safety-checker")
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp / "model", safe_serialization=True)
    del pipe, parts
    # transformers 5 saves only tokenizer.json: keep the hub layout's vocab.json + merges.txt.
    shutil.rmtree(tmp / "model" / "tokenizer")
    os.rename(tmp / "_tokenizer", tmp / "model" / "tokenizer")
    for item in (tmp / "model").iterdir():
        os.rename(item, tmp / item.name)
    (tmp / "model").rmdir()
    return {
        "params": sum(counts.values()),
        "component_params": counts,
        "tokenizer": _CLIP_TOKENIZER_NOTE,
        "safety_checker": "not in this folder (requires_safety_checker=False): see the "
        "safety-checker role",
    }


def _build_safety_checker(tmp: Path, dtype: str, bpe_gz) -> dict:
    model = make_model("safety-checker", dtype=dtype)
    params = count_params(model)
    _save_model(model, tmp)
    del model
    _clip_image_processor().save_pretrained(tmp)
    return {"params": params}


def _build_blip2_itm(tmp: Path, dtype: str, bpe_gz) -> dict:
    write_bert_tokenizer(tmp, bpe_gz)
    _blip_image_processor().save_pretrained(tmp)
    model = make_model("blip2-itm", dtype=dtype)
    params = count_params(model)
    _save_model(model, tmp)
    return {
        "params": params,
        "tokenizer": "STAND-IN vocabulary: 30,522 word pieces laid out like "
        "bert-base-uncased (specials at the same ids) from the CLIP vocabulary's words, "
        "+ [DEC]; the real bert-base-uncased vocabulary is not available offline",
    }


def _build_blip2_opt(tmp: Path, dtype: str, bpe_gz) -> dict:
    vocab, merges = opt_standin_bpe(bpe_gz)
    processor = make_blip2_processor(bpe_gz, bpe=(vocab, merges))
    processor.save_pretrained(tmp)
    # The hub layout's separate files too: preprocessor_config.json (read by
    # `BlipImageProcessorPil.from_pretrained`), vocab.json + merges.txt.
    processor.image_processor.save_pretrained(tmp)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    del processor
    model = make_model("blip2-opt", dtype=dtype)
    params = count_params(model)
    _save_model(model, tmp)
    return {
        "params": params,
        "tokenizer": "STAND-IN vocabulary: byte-level BPE of OPT's size (50,265 tokens + "
        "<image> = 50,266) learned from the CLIP vocabulary's words, OPT's specials at ids "
        "0-3; the real GPT-2/OPT vocabulary is not available offline",
        "eos_token_id": "2 (</s>); the published config stops at '\\n' (50118)",
    }


def _build_clip_l14(tmp: Path, dtype: str, bpe_gz) -> dict:
    write_clip_tokenizer(tmp, bpe_gz)
    _clip_image_processor().save_pretrained(tmp)
    model = make_model("clip-l14", dtype=dtype)
    params = count_params(model)
    _save_model(model, tmp)
    return {"params": params, "tokenizer": _CLIP_TOKENIZER_NOTE}


_BUILDERS = {
    "sd15": _build_sd15,
    "safety-checker": _build_safety_checker,
    "blip2-itm": _build_blip2_itm,
    "blip2-opt": _build_blip2_opt,
    "clip-l14": _build_clip_l14,
}

__all__ = [
    "DEFAULT_DTYPES",
    "ENV_VARS",
    "HUB_IDS",
    "MARKER",
    "PUBLISHED_PARAMS",
    "ROLES",
    "RealSizeError",
    "build",
    "build_all",
    "count_params",
    "is_complete",
    "make_model",
    "published_role_params",
    "real_clip_vocab",
]
