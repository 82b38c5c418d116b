"""Byte-level BPE pieces shared by the tiny and the real-size tokenizers (no Django, no
torch; transformers is imported inside the function that needs it)."""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
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


def opt_tokenizer(vocab: dict[str, int], merges: list, **extra):
    """A `GPT2Tokenizer` set up as OPT's (BLIP-2's language model): `</s>` begins and ends
    every text. `extra`: further keyword arguments, e.g. `model_max_length`."""
    from transformers import GPT2Tokenizer

    # vocab=/merges= (never vocab_file=/merges_file=, which transformers 5 silently ignores).
    return GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,  # OPT prepends </s> to every text
        **extra,
    )
