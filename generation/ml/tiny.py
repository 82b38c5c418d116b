"""Tiny, randomly initialised models shaped like the real ones, built from configs.

Nothing is downloaded: the real classes (`UNet2DConditionModel`, `AutoencoderKL`,
`CLIPTextModel`, `CLIPModel`, `CLIPTokenizer`) are built from small configs, saved with
`save_pretrained` and reloaded from disk exactly like a real checkpoint. Tests and the
offline demo use them; their images are noise-like.

TOKENIZER TRAP (transformers 5): `CLIPTokenizer(vocab_file=..., merges_file=...)` silently
ignores the files (every word becomes unknown). The vocabulary is therefore written as
`vocab.json` + `merges.txt` and loaded with `CLIPTokenizer.from_pretrained(folder)`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from mlcore.bpe import bytes_to_unicode
from mlcore.stand_in import is_tiny, write_marker

from ._common import quiet_ml_logs

TINY_SEED = 0
TEXT_MAX_LENGTH = 77

# Words a prompt or caption in the demo is likely to contain: each becomes one token.
_TINY_TEXT = (
    "a an the of by in on with and style painting portrait landscape still life abstract "
    "expressionism impressionism cubism surrealism realism romanticism baroque renaissance "
    "pop art minimalism symbolism monet picasso van gogh rembrandt dali klimt cezanne "
    "woman man city sea sky river tree trees flowers mountain night blue red yellow green "
    "light dark oil canvas sketch drawing genre religious cityscape seascape nude "
    "mythological animal figure face old young house garden field forest water sun moon"
)
TINY_WORDS = tuple(_TINY_TEXT.split())


def _learn_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A minimal byte-level BPE learner: merge until every word is a single token.

    Applying learned merges in rank order reproduces the learned segmentation, so each word
    of `words` tokenizes to exactly one id, and any other text falls back to byte tokens
    (never to the unknown token).
    """
    byte_chars = list(bytes_to_unicode().values())
    vocab_tokens: list[str] = ["<|startoftext|>", "<|endoftext|>"]
    vocab_tokens += byte_chars + [c + "</w>" for c in byte_chars]
    enc = bytes_to_unicode()
    segs = {}
    for w in sorted(set(words)):
        chars = [enc[b] for b in w.encode("utf-8")]
        chars[-1] += "</w>"
        segs[w] = chars
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for seg in segs.values():
            for a, b in zip(seg, seg[1:], strict=False):
                pairs[(a, b)] += 1
        if not pairs:
            break
        # most frequent pair; ties broken lexicographically so the result is deterministic
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        if joined not in vocab_tokens:
            vocab_tokens.append(joined)
        for w, seg in segs.items():
            out, i = [], 0
            while i < len(seg):
                if i + 1 < len(seg) and (seg[i], seg[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seg[i])
                    i += 1
            segs[w] = out
    return {tok: i for i, tok in enumerate(vocab_tokens)}, merges


def write_tiny_tokenizer(out_dir: Path) -> Path:
    """Write `vocab.json` + `merges.txt` for a CLIP tokenizer and re-save it via transformers."""
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab, merges = _learn_bpe(list(TINY_WORDS))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": TEXT_MAX_LENGTH}),
        encoding="utf-8",
    )
    tok = CLIPTokenizer.from_pretrained(out_dir)
    unk = tok.unk_token_id
    ids = tok("painting", add_special_tokens=False).input_ids
    if ids == [unk] or unk in ids:  # the trap: files ignored, every word unknown
        raise RuntimeError("tiny tokenizer did not load its vocabulary")
    tok.save_pretrained(out_dir)
    return out_dir


def _finish(tmp: Path, out_dir: Path) -> Path:
    """Move a fully written temp folder into place (readers never see a half-built model)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def build_tiny_sd(out_dir: Path) -> Path:
    """Build (once) a tiny SD-1.5-shaped pipeline in diffusers format under `out_dir`.

    Idempotent: a folder that already carries the marker is returned as is.
    """
    out_dir = Path(out_dir)
    if is_tiny(out_dir) and (out_dir / "model_index.json").is_file():
        return out_dir
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    quiet_ml_logs()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-sd-", dir=out_dir.parent))
    try:
        tok_dir = write_tiny_tokenizer(tmp / "_tokenizer_src")
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        torch.manual_seed(TINY_SEED)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        torch.manual_seed(TINY_SEED + 1)
        vae = AutoencoderKL(
            block_out_channels=(16, 16, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
        )
        torch.manual_seed(TINY_SEED + 2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                hidden_size=32,
                intermediate_size=37,
                layer_norm_eps=1e-05,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tokenizer),
                max_position_embeddings=TEXT_MAX_LENGTH,
            )
        )
        scheduler = DDPMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            clip_sample=False,
            steps_offset=1,
            prediction_type="epsilon",
        )
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(tmp / "model", safe_serialization=True)
        write_marker(tmp / "model", "stable-diffusion-1.5")
        _finish(tmp / "model", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# The tiny CLIP vision tower of the CLIP evaluator and of the safety checker (32 px).
_TINY_CLIP_VISION = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "image_size": 32,
    "patch_size": 8,
}


def _tiny_clip_image_processor():
    """The PIL image processor for `_TINY_CLIP_VISION` (torchvision is not usable here)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def build_tiny_clip(out_dir: Path) -> Path:
    """Build (once) a tiny `CLIPModel` + tokenizer + PIL image processor under `out_dir`.

    Used for CLIP-T / CLIP-I evaluation in tests and the demo. The image processor is the
    PIL backend (`CLIPImageProcessorPil`): torchvision is not usable beside torch 2.13 CPU.
    """
    out_dir = Path(out_dir)
    if is_tiny(out_dir) and (out_dir / "config.json").is_file():
        return out_dir
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    quiet_ml_logs()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-clip-", dir=out_dir.parent))
    try:
        tok_dir = write_tiny_tokenizer(tmp / "_tokenizer_src")
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        config = CLIPConfig(
            text_config={
                "hidden_size": 32,
                "intermediate_size": 37,
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "vocab_size": len(tokenizer),
                "max_position_embeddings": TEXT_MAX_LENGTH,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config=dict(_TINY_CLIP_VISION),
            projection_dim=32,
        )
        torch.manual_seed(TINY_SEED + 3)
        model = CLIPModel(config)
        processor = _tiny_clip_image_processor()
        target = tmp / "model"
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
        processor.save_pretrained(target)
        write_marker(target, "clip")
        _finish(target, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


SAFETY_FLAGS = ("never", "always")


def build_tiny_safety_checker(out_dir: Path, flags: str = "never") -> Path:
    """Build (once) a tiny `StableDiffusionSafetyChecker` + PIL image processor.

    A tiny CLIP vision tower with random concept embeddings. Its behaviour is chosen by
    the thresholds, since random weights recognise nothing: `flags="never"` (thresholds
    above any cosine: nothing is flagged; what `build_tiny_models` writes) or
    `flags="always"` (thresholds below any cosine: every image is flagged), so tests
    exercise both verdicts through the real class. The marker records which.
    """
    from mlcore.stand_in import stand_in_info

    if flags not in SAFETY_FLAGS:
        raise ValueError(f"flags must be one of {SAFETY_FLAGS}, not {flags!r}")
    out_dir = Path(out_dir)
    info = stand_in_info(out_dir)
    if is_tiny(out_dir) and info.get("flags") == flags and (out_dir / "config.json").is_file():
        return out_dir
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    quiet_ml_logs()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-safety-", dir=out_dir.parent))
    try:
        config = CLIPConfig(
            # The checker uses only the vision tower; the text config must merely be valid.
            text_config={
                "hidden_size": 32,
                "intermediate_size": 37,
                "num_attention_heads": 4,
                "num_hidden_layers": 1,
                "vocab_size": 64,
                "bos_token_id": 0,
                "eos_token_id": 1,
                "pad_token_id": 1,
            },
            vision_config=dict(_TINY_CLIP_VISION),
            projection_dim=32,
        )
        torch.manual_seed(TINY_SEED + 4)
        model = StableDiffusionSafetyChecker(config).eval()
        threshold = 2.0 if flags == "never" else -2.0  # cosines lie in [-1, 1]
        with torch.no_grad():
            model.concept_embeds.copy_(torch.randn_like(model.concept_embeds))
            model.special_care_embeds.copy_(torch.randn_like(model.special_care_embeds))
            model.concept_embeds_weights.fill_(threshold)
            model.special_care_embeds_weights.fill_(2.0)
        processor = _tiny_clip_image_processor()
        target = tmp / "model"
        model.save_pretrained(target, safe_serialization=True)
        processor.save_pretrained(target)
        write_marker(target, "safety-checker", flags=flags)
        _finish(target, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
