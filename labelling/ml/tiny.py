"""Tiny BLIP-2 (OPT) models built from configs, for tests and the offline demo.

Nothing is downloaded: the model is built with the real classes
(`Blip2ForConditionalGeneration`, `Blip2Processor`, a byte-level BPE `GPT2Tokenizer` as
OPT uses) from small configs, saved with `save_pretrained`, and loaded back by the same
`from_pretrained` code path as the real `Salesforce/blip2-opt-2.7b` checkpoint. One tiny
model serves captioning and VQA, like the real checkpoint.

The weights are random, so captions and genre guesses are meaningless. Two deliberate
tweaks make its output readable in the demo (still random, still meaningless): the
language model's output head is untied from its input embeddings (a tied random model
just repeats its last input token, i.e. ends every caption at once), and its rows are
scaled so that greedy decoding picks lower-case whole words rather than stray bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mlcore.bpe import opt_tokenizer
from mlcore.stand_in import MARKER as TINY_MARKER
from mlcore.stand_in import stand_in_info

from .errors import LabellingInputError

TINY_BLIP2_KIND = "blip2-vqa"
# Bump when the tiny model changes shape: an older build is then replaced on the next call.
TINY_BLIP2_VERSION = 1
TINY_SEED = 1234

# The ten WikiArt genres in human form; every word becomes one whole token.
WIKIART_GENRE_TEXTS = [
    "abstract painting",
    "cityscape",
    "genre painting",
    "illustration",
    "landscape",
    "nude painting",
    "portrait",
    "religious painting",
    "sketch and study",
    "still life",
]
_QUESTION_WORDS = (
    "question answer what which is are the this that a an of in on with and genre "
    "painting artwork picture photo image style kind type by"
)
_CAPTION_WORDS = (
    "man woman men women child people girl boy figure saint angel horse dog bird cat tree "
    "trees forest river lake sea boat ship beach mountain mountains hill field garden sky "
    "clouds sun moon night house houses church city street bridge village road flowers "
    "vase fruit bowl table bottle book window room chair dress hat red blue green yellow "
    "white black dark light small large old young standing sitting lying walking holding "
    "near under over at from two three many some colorful abstract shapes lines circles"
)
_PUNCTUATION_LINES = ["Question: what? Answer:", "a, b. c: d? e!", "it's (one) - two; three"]

_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3, as in OPT's vocabulary
_IMAGE_SIZE = 32
_NUM_QUERY_TOKENS = 8


def _read_marker(path: Path) -> dict | None:
    return stand_in_info(path)


def _words() -> list[str]:
    genre_words = {w for text in WIKIART_GENRE_TEXTS for w in text.split()}
    return sorted(genre_words | set(_QUESTION_WORDS.split()) | set(_CAPTION_WORDS.split()))


def _corpus() -> list[str]:
    lines = []
    for word in _words():
        # Each word at the start of a text, after a space, and capitalised: so "landscape",
        # " landscape" and " Landscape" all end up as single tokens.
        lines.append(f"{word} a {word} A {word.capitalize()} {word.capitalize()}")
    lines += [
        f"Question: What is the genre of this painting? Answer: {g}" for g in WIKIART_GENRE_TEXTS
    ]
    lines += ["a photo of a painting", "a painting of"] + _PUNCTUATION_LINES
    return lines


def _train_tokenizer_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a small byte-level BPE (OPT/GPT-2 style) vocab + merges, deterministically."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=4096,  # larger than needed: merging stops once every word is one token
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=_SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _make_processor():
    from transformers import Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab, merges = _train_tokenizer_files()
    tokenizer = opt_tokenizer(vocab, merges)
    image_processor = BlipImageProcessorPil(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})
    # Adds the <image> special token to the tokenizer.
    return Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=_NUM_QUERY_TOKENS
    )


def _make_model(tokenizer):
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    vocab_size = len(tokenizer)
    config = Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": _IMAGE_SIZE,
            "patch_size": 8,
        },
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "cross_attention_frequency": 1,
            "vocab_size": vocab_size,
        },
        text_config={
            "model_type": "opt",
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "word_embed_proj_dim": 32,
            "num_hidden_layers": 2,
            "ffn_dim": 64,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": False,
        },
        num_query_tokens=_NUM_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # deterministic, and the caller's RNG is untouched
        torch.manual_seed(TINY_SEED)
        model = Blip2ForConditionalGeneration(config).eval()
        head = model.language_model.get_output_embeddings().weight
        with torch.no_grad():
            # Whole lower-case words get random logits, bytes/fragments/capitals none and
            # </s> a small chance: greedy decoding then emits words (see the docstring).
            scale = torch.zeros(head.shape[0])
            vocab = tokenizer.get_vocab()
            for word in _words():
                if f"Ġ{word}" in vocab:
                    scale[vocab[f"Ġ{word}"]] = 8.0
            scale[tokenizer.eos_token_id] = 1.0
            head.mul_(scale[:, None])
    return model


def build_tiny_blip2_vqa(out_dir: str | os.PathLike) -> Path:
    """Build (once) a tiny BLIP-2 OPT captioning/VQA model + processor in `out_dir`.

    Idempotent: a folder that already holds this version's marker is returned as is.
    The build happens in a temporary sibling folder that is renamed into place, so a
    crash never leaves a half-written model behind. Refuses to overwrite a non-empty
    folder that is not a tiny model.
    """
    out = Path(out_dir)
    marker = _read_marker(out)
    if (
        marker
        and marker.get("kind") == TINY_BLIP2_KIND
        and marker.get("version") == TINY_BLIP2_VERSION
    ):
        return out
    if out.exists() and not (out.is_dir() and (marker or not any(out.iterdir()))):
        raise LabellingInputError(
            f"{out} exists and is not a tiny model folder: refusing to overwrite it"
        )

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    processor = _make_processor()
    model = _make_model(processor.tokenizer)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / TINY_MARKER).write_text(
            json.dumps(
                {
                    "tiny": True,
                    "kind": TINY_BLIP2_KIND,
                    "version": TINY_BLIP2_VERSION,
                    "seed": TINY_SEED,
                    "note": "random weights: captions and genre guesses are meaningless, "
                    "for tests and the offline demo",
                },
                indent=2,
            )
            + "\n"
        )
        if out.exists():
            shutil.rmtree(out)  # empty, or an older tiny build (checked above)
        try:
            tmp.rename(out)
        except OSError:
            if _read_marker(out) is None:  # not another process that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
