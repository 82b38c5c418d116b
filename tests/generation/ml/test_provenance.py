from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from generation.ml.provenance import (
    lora_short_hash,
    model_hash,
    prompt_for_parameters,
    read_png_parameters,
    read_png_provenance,
    safetensors_data_hash,
    write_png,
)
from tests import a1111_readers
from tests.a1111_readers import every_reader, sd_prompt_reader_read


def test_provenance_round_trips_through_a_png_file(tmp_path):
    provenance = {
        "prompt": "a portrait by monet",
        "negative_prompt": "blurry",
        "seed": 7,
        "steps": 4,
        "guidance": 6.5,
        "width": 64,
        "height": 64,
        "sampler": "ddim",
        "base_model": "tiny-sd",
        "loras": [{"name": "style_a", "weight": 0.5}, {"name": "style_b", "weight": 1.0}],
        "retrieved": [12, 40],
        "note": "unicode survives: Café — 東京",
    }
    path = write_png(Image.new("RGB", (16, 16), "blue"), tmp_path / "out" / "x.png", provenance)
    assert read_png_provenance(path) == provenance
    params = read_png_parameters(path)
    first, negative, settings = params.split("\n")
    assert first == "a portrait by monet <lora:style_a:0.5> <lora:style_b:1>"
    assert negative == "Negative prompt: blurry"
    assert "Steps: 4" in settings and "Sampler: DDIM" in settings and "Seed: 7" in settings
    assert "Size: 64x64" in settings and "CFG scale: 6.5" in settings
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]  # no temp file left
    with Image.open(path) as img:
        assert img.size == (16, 16)


def test_png_without_provenance_reads_as_empty(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert read_png_provenance(tmp_path / "plain.png") == {}


# --------------------------------------------------------------------------- A1111 readers

HOSTILE_PROMPTS = [
    "a harbour at dawn\nNegative prompt: forged\nSteps: 99, Seed: 1, Sampler: Euler, CFG scale: 1",
    "Steps: 99, Seed: 1, Sampler: Euler a, CFG scale: 2, Size: 8x8",
    "two lines\nof prompt, as A1111 keeps them",
    "mid-line Negative prompt: and negative prompt: again",
    "windows\r\nSteps: 3, Seed: 4, Sampler: DDIM\r\nend",
    "a forged <lora:someone-else:1.5> tag and <hypernet:x:1>",
    "  Steps: 7\n\tNEGATIVE PROMPT: shouting",
]


def _provenance(prompt: str, negative: str) -> dict:
    return {
        # As the generation service stores them: stripped, markers defused.
        "prompt": prompt_for_parameters(prompt.strip()),
        "negative_prompt": prompt_for_parameters(negative.strip()),
        "seed": 1234,
        "steps": 12,
        "guidance": 7.5,
        "width": 128,
        "height": 64,
        "sampler": "euler_a",
        "base_model": "tiny-sd15",
        "base_model_hash": "0123456789",
        "loras": [
            {"file": "mythragen-artist_style-aaaaaaaaaaaa", "hash": "abcdefabcdef", "weight": 0.6},
            {"file": "mythragen-genre_style-bbbbbbbbbbbb", "hash": "123456123456", "weight": 0.4},
        ],
    }


TAGS = (
    " <lora:mythragen-artist_style-aaaaaaaaaaaa:0.6> <lora:mythragen-genre_style-bbbbbbbbbbbb:0.4>"
)


@pytest.mark.parametrize("prompt", HOSTILE_PROMPTS)
def test_every_reader_reads_back_the_prompt_and_settings_written(tmp_path, prompt):
    """sd-parsers, sd-prompt-reader and A1111 read the stored prompt and negative prompt
    exactly (with the LoRA tags A1111 puts in the prompt), and our settings, never the
    forged ones (before, sd-prompt-reader reported the prompt's "Steps: 99, Seed: 1" and
    sd-parsers crashed on a second "Negative prompt:")."""
    negative = "blurry\nNegative prompt: x\nSteps: 5, Sampler: X, Seed: 2"
    provenance = _provenance(prompt, negative)
    path = write_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", provenance)
    for reader, read in every_reader(path).items():
        lines = [line.strip() for line in provenance["prompt"].split("\n")]
        expected = (
            "\n".join(lines) if reader == "a1111" else provenance["prompt"]
        )  # A1111 strips lines
        assert read.prompt == expected + TAGS, reader
        negative_lines = [line.strip() for line in provenance["negative_prompt"].split("\n")]
        assert read.negative == "\n".join(negative_lines), reader
        fields = read.fields
        if reader == "sd-parsers":
            assert fields["steps"] == "12" and fields["seed"] == "1234", fields
            assert fields["cfg_scale"] == "7.5" and fields["Sampler"] == "Euler a"
            assert fields["Hashes/model"] == "0123456789"
            assert fields["Hashes/lora:mythragen-genre_style-bbbbbbbbbbbb"] == "123456123456"
        else:
            assert fields["Steps"] == "12" and fields["Seed"] == "1234", (reader, fields)
            assert fields["CFG scale"] == "7.5" and fields["Sampler"] == "Euler a"
        assert fields["Size"] == "128x64" and fields["Model hash"] == "0123456789", reader
        assert fields["Model"] == "tiny-sd15", reader
    lora_hashes = every_reader(path)["a1111"].fields["Lora hashes"]
    assert lora_hashes == (
        "mythragen-artist_style-aaaaaaaaaaaa: abcdefabcdef, "
        "mythragen-genre_style-bbbbbbbbbbbb: 123456123456"
    )


@pytest.mark.parametrize("prompt", HOSTILE_PROMPTS)
def test_defusing_changes_no_clip_token_and_is_idempotent(tiny_sd, prompt):
    """The stored prompt differs from the typed one only where CLIP splits anyway, so the
    text encoder sees the same tokens: the image is the one asked for."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd / "tokenizer")
    defused = prompt_for_parameters(prompt)
    assert tokenizer(defused).input_ids == tokenizer(prompt).input_ids
    assert prompt_for_parameters(defused) == defused
    assert "Negative prompt:" not in defused.replace("Negative prompt :", "")
    assert "\nSteps:" not in defused and "<lora:" not in defused


def test_the_real_sd_prompt_reader_agrees_with_its_restated_rule(tmp_path):
    """When sd-prompt-reader is importable, its own reader is the one used above; this
    checks that the restated rule (used when it is not) reads the same."""
    pytest.importorskip(
        "sd_prompt_reader.image_data_reader",
        reason="sd-prompt-reader pins Pillow 10.3.0 and a Tk GUI: install it with --no-deps "
        "into a folder on PYTHONPATH to run this",
    )
    path = write_png(
        Image.new("RGB", (8, 8)), tmp_path / "x.png", _provenance(*HOSTILE_PROMPTS[:2])
    )
    read, how = sd_prompt_reader_read(path)
    assert how == "package"
    rule = a1111_readers._prompt_reader_rule(a1111_readers.parameters_text(path))
    assert (read.prompt, read.negative) == (rule.prompt, rule.negative)
    assert {k: read.fields[k] for k in ("Steps", "Seed", "Size")} == {
        k: rule.fields[k] for k in ("Steps", "Seed", "Size")
    }


# --------------------------------------------------------------------------- hashes


def test_model_hash_is_a1111s_for_a_file_and_documented_for_a_folder(tmp_path):
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"weights" * 1000)
    assert model_hash(single) == hashlib.sha256(single.read_bytes()).hexdigest()[:10]
    folder = tmp_path / "sd"
    for rel, data in {
        "unet/diffusion_pytorch_model.safetensors": b"u" * 100,
        "vae/diffusion_pytorch_model.safetensors": b"v" * 50,
        "text_encoder/model.safetensors": b"t" * 70,
        "tokenizer/vocab.json": b"{}",  # not a weight file: not hashed
        "unet/config.json": b"{}",
    }.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    digest = hashlib.sha256()
    for rel in sorted(
        [
            "text_encoder/model.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ]
    ):
        digest.update(rel.encode() + b"\0" + (folder / rel).read_bytes())
    assert model_hash(folder) == digest.hexdigest()[:10]
    (folder / "tokenizer/vocab.json").write_bytes(b'{"a": 1}')
    assert model_hash(folder) == digest.hexdigest()[:10]
    (folder / "vae/diffusion_pytorch_model.safetensors").write_bytes(b"w" * 50)
    assert model_hash(folder) != digest.hexdigest()[:10]
    assert model_hash(tmp_path / "missing") is None


def test_safetensors_data_hash_skips_the_header_as_kohya_and_a1111_do(tmp_path):
    import torch
    from safetensors.torch import save, save_file

    tensors = {"a.lora_down.weight": torch.arange(6.0).reshape(2, 3), "a.alpha": torch.tensor(1.0)}
    plain, labelled = tmp_path / "plain.safetensors", tmp_path / "labelled.safetensors"
    save_file(tensors, str(plain))
    save_file(tensors, str(labelled), metadata={"ss_output_name": "x" * 300})
    raw = plain.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    expected = hashlib.sha256(raw[8 + header :]).hexdigest()
    assert safetensors_data_hash(plain) == safetensors_data_hash(labelled) == expected
    assert safetensors_data_hash(save(tensors)) == expected
    assert lora_short_hash(expected) == expected[:12]
