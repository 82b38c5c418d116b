"""The real-size stand-ins' tokenizers and image processors.

The real 49,408-token CLIP BPE vocabulary, fetched from the open-clip-torch wheel and
checked against its sha256 (`real_clip_vocab`), converted to CLIP's vocabulary and merges
and written as a `CLIPTokenizer` (SD 1.5 and CLIP); the stand-in vocabularies of the
published sizes built from its words for what is not available offline (bert-base-uncased
for BLIP-2's Q-Former, OPT's GPT-2 BPE for BLIP-2 OPT) and the `Blip2Processor` around the
latter; and the published CLIP and BLIP-2 image processors. Deterministic: the same BPE
file always gives the same files. transformers and tokenizers are imported inside the
functions that need them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from mlcore.bpe import bytes_to_unicode, opt_tokenizer

from .configs import (
    BERT_VOCAB_SIZE,
    BLIP2_IMAGE_SIZE,
    BLIP2_IMAGE_TOKEN_INDEX,
    BLIP2_ITM_QFORMER_CONFIG,
    BLIP2_NUM_QUERY_TOKENS,
    CLIP_VOCAB_SIZE,
    OPT_TOKENIZER_SIZE,
    RealSizeError,
)

OPEN_CLIP_VERSION = "3.3.0"
CLIP_BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_MEMBER = f"open_clip/{CLIP_BPE_NAME}"
CLIP_BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CLIP_NUM_MERGES = 48894  # 49,152 - 256 - 2 BPE lines of the file, as CLIP's tokenizer reads


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


def clip_vocab_and_merges(bpe_gz: str | os.PathLike) -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary (49,408 tokens) and merges (48,894) from the open_clip BPE file.

    Exactly as CLIP's `SimpleTokenizer` builds them: 256 byte characters, the same with
    "</w>", one token per merge, then <|startoftext|> and <|endoftext|>.
    """
    lines = gzip.decompress(Path(bpe_gz).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : CLIP_NUM_MERGES + 1]
    byte_chars = list(bytes_to_unicode().values())
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
    from transformers import Blip2Processor

    vocab, merges = bpe or opt_standin_bpe(bpe_gz)
    tokenizer = opt_tokenizer(vocab, merges, model_max_length=2048)
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
