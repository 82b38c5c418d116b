"""Tiny, randomly initialised BLIP-2 retrieval model for tests and the offline demo.

Nothing is downloaded: the model is built from a `Blip2Config` with the real classes
(`Blip2ForImageTextRetrieval`), a BERT word-piece tokenizer over a small hand-written
vocabulary, and a `BlipImageProcessorPil` at 32 px, all written with `save_pretrained`.
`Blip2Embedder(path)` then loads it exactly like the real `Salesforce/blip2-itm-vit-g`
folder (the same `from_pretrained` code path), so tests exercise the real loading code.

The weights are random (seeded, so builds are reproducible): vectors have the right
shapes, are deterministic and differ between inputs, but carry no meaning.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mlcore.stand_in import MARKER as TINY_MARKER

TINY_SEED = 20240917
TINY_IMAGE_SIZE = 32
# BERT's usual 0.02 makes a 32-wide random model nearly blind to its input: every image gave
# the same query-token vectors (cosine 0.9999 between images). At 0.3, different images
# give clearly different vectors (token cosine ~0.37 between images) and the 32 tokens of
# one image are correlated (~0.9), closer to how a trained Q-Former behaves.
TINY_INIT_RANGE = 0.3

# A small real vocabulary: special tokens, common English words and art words. Lower case,
# because the tokenizer lower-cases its input (like bert-base-uncased, BLIP-2's tokenizer).
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORD_LINES = (
    "a an the of in on at by with and or to for from is are was this that it its his her their",
    "as into over under near beside painting paintings portrait portraits landscape landscapes",
    "still life city cities harbour harbor boats boat ship ships sea river lake water mountain",
    "mountains tree trees forest field flowers flower garden sky clouds sun night day evening",
    "morning winter summer spring autumn snow rain light shadow man woman women men lady girl boy",
    "child children old young people figure figures face head horse dog cat bird birds house",
    "church street bridge village town road window table fruit bowl vase interior nude self",
    "religious mythological scene abstract style art artist genre sketch study drawing oil",
    "canvas watercolor watercolour colour color red blue green yellow white black dark bright",
    "monet picasso van gogh rembrandt cezanne renoir degas matisse klimt dali vermeer turner",
    "cubism impressionism expressionism realism romanticism baroque renaissance surrealism",
    "symbolism rococo pop minimalism fauvism pointillism post modern early high northern",
)
_WORDS = [word for line in _WORD_LINES for word in line.split()]
_PUNCT = list(".,;:!?'\"-()")
# Word pieces, so unknown words still split into something instead of a single [UNK].
_PIECES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##ism", "##ist", "##ian"]
_PIECES += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
_LETTERS = list("abcdefghijklmnopqrstuvwxyz")


def tiny_vocab() -> list[str]:
    """The tiny tokenizer's vocabulary in id order (special tokens first, no duplicates)."""
    seen: dict[str, None] = {}
    for token in _SPECIAL + _WORDS + _PUNCT + _LETTERS + _PIECES:
        seen.setdefault(token, None)
    return list(seen)


def _tiny_config():
    from transformers import Blip2Config, OPTConfig

    vocab_size = len(tiny_vocab())
    return Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 8,
            "initializer_range": TINY_INIT_RANGE,
        },
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "cross_attention_frequency": 1,
            "encoder_hidden_size": 32,
            "vocab_size": vocab_size,
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "use_qformer_text_input": True,
            "initializer_range": TINY_INIT_RANGE,
        },
        # The language model is unused for retrieval but part of the BLIP-2 config.
        text_config=OPTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=32,
            vocab_size=64,
            max_position_embeddings=64,
            word_embed_proj_dim=16,
        ).to_dict(),
        num_query_tokens=32,
        image_text_hidden_size=256,
        initializer_range=TINY_INIT_RANGE,
    )


def _is_complete(folder: Path) -> bool:
    needed = ["config.json", "preprocessor_config.json", TINY_MARKER]
    if not all((folder / name).is_file() for name in needed):
        return False
    has_weights = any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").exists()
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    return has_weights and has_tokenizer


def build_tiny_blip2_retrieval(out_dir: Path) -> Path:
    """Build the tiny BLIP-2 retrieval model into `out_dir` (idempotent) and return it.

    If `out_dir` already holds a complete build (weights, config, tokenizer, image
    processor and the tiny marker), it is returned untouched. Otherwise the model is built
    in a temporary sibling folder and renamed into place, so an interrupted build never
    leaves a half-written model that looks complete.
    """
    import torch
    from transformers import BertTokenizer, Blip2ForImageTextRetrieval
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    from transformers.utils import logging as hf_logging

    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        vocab = tiny_vocab()
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        # TRAP (transformers 5): BertTokenizer(vocab_file=...) silently ignores the file;
        # pass the vocabulary itself.
        tokenizer = BertTokenizer(
            vocab={token: i for i, token in enumerate(vocab)},
            do_lower_case=True,
            model_max_length=64,
        )
        tokenizer.save_pretrained(tmp)

        BlipImageProcessorPil(
            size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
        ).save_pretrained(tmp)

        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(TINY_SEED)
            model = Blip2ForImageTextRetrieval(_tiny_config()).eval()
            # BLIP-2 initialises the 32 learned query tokens to zeros, which makes all 32
            # query outputs identical. Trained checkpoints have distinct query tokens, so
            # give the tiny model distinct ones too (needed to exercise token pooling).
            with torch.no_grad():
                model.query_tokens.normal_(mean=0.0, std=1.0)
        finally:
            torch.random.set_rng_state(generator_state)
        verbosity = hf_logging.get_verbosity()
        bar_was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(tmp)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar_was_enabled:
                hf_logging.enable_progress_bar()

        marker = {
            "tiny": True,
            "kind": "blip2-retrieval",
            "seed": TINY_SEED,
            "note": "random weights, for tests and the offline demo",
        }
        (tmp / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")

        if out_dir.exists():
            # An incomplete earlier build: replace it.
            shutil.rmtree(out_dir)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; workers may run as another user
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
