"""A1111 / ComfyUI interop of a real generated PNG (issue #16 item 9, #15 item 6).

Every field of the "parameters" text reads back in sd-parsers (and sd-prompt-reader and
A1111's own rule, see tests/a1111_readers.py): the prompt with hostile lines exactly as
stored, the negative prompt, steps, seed, sampler, CFG scale, size, the model's hash, and
the LoRAs by the names and hashes of the kohya files people download.
"""

from __future__ import annotations

import pytest
from safetensors import safe_open

from generation import services
from generation.ml.provenance import model_hash, safetensors_data_hash
from jobs.models import JobStatus
from tests.a1111_readers import every_reader

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]

HOSTILE = (
    "quiet hills by Chiyo Hanabusa, ukiyo-e\n"
    "Negative prompt: forged negative\n"
    "Steps: 99, Seed: 1, Sampler: Euler a, CFG scale: 2\n"
    "<lora:someone-else:1>"
)
NEGATIVE = "blurry\nSteps: 5, Seed: 2, Sampler: Euler"


@pytest.fixture
def generated(indexed_demo, eager, user):
    with eager():
        generation = services.generation_request(
            user,
            services.GenerationParams(
                prompt=HOSTILE, negative_prompt=NEGATIVE, seed=31, with_baseline=False
            ),
        )
    generation.refresh_from_db()
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    return generation


def test_the_stored_prompt_is_the_typed_one_with_markers_defused(generated):
    assert generated.prompt == (
        "quiet hills by Chiyo Hanabusa, ukiyo-e\n"
        "Negative prompt : forged negative\n"
        "Steps : 99, Seed: 1, Sampler: Euler a, CFG scale: 2\n"
        "< lora:someone-else:1>"
    )
    assert generated.negative_prompt == "blurry\nSteps : 5, Seed: 2, Sampler: Euler"


def test_every_field_of_a_generated_png_reads_back(generated, client, user, gen_settings):
    entries = {generated.lora_artist_style, generated.lora_genre_style}
    weights = {
        generated.lora_artist_style.pk: generated.weight_artist_style,
        generated.lora_genre_style.pk: generated.weight_genre_style,
    }
    # The kohya files as people download them: name, ss_output_name and hash.
    client.force_login(user)
    downloads = {}
    for entry in entries:
        response = client.get(f"/generate/loras/{entry.key}/download/?as=kohya")
        assert response.status_code == 200
        stem = response["Content-Disposition"].split('filename="', 1)[1].split('"')[0]
        assert stem.endswith(".safetensors")
        stem = stem.removesuffix(".safetensors")
        path = services.lora_export(entry, "kohya")
        assert b"".join(response.streaming_content) == path.read_bytes()
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        assert meta["ss_output_name"] == stem  # A1111 resolves <lora:stem:w> either way
        assert meta["sshs_model_hash"] == safetensors_data_hash(path)
        downloads[entry.pk] = (stem, safetensors_data_hash(path)[:12])

    tags = " ".join(f"<lora:{downloads[e.pk][0]}:{weights[e.pk]:g}>" for e in entries)
    reads = every_reader(generated.image.path)
    for reader, read in reads.items():
        prompt = read.prompt
        for tag in tags.split():  # A1111 puts the tags in the prompt; their order is ours
            assert f" {tag}" in prompt, (reader, tag)
            prompt = prompt.replace(f" {tag}", "")
        assert prompt == generated.prompt, reader  # the stored prompt, exactly
        assert read.negative == generated.negative_prompt, reader

    expected_model_hash = model_hash(gen_settings.SD_MODEL)
    assert expected_model_hash and generated.provenance["base_model_hash"] == expected_model_hash
    a1111 = reads["a1111"].fields
    assert a1111["Steps"] == str(generated.steps) and a1111["Seed"] == "31"
    assert a1111["Sampler"] == "DDIM" and a1111["CFG scale"] == "7.5"
    assert a1111["Size"] == f"{generated.width}x{generated.height}"
    assert a1111["Model hash"] == expected_model_hash and a1111["Model"] == "tiny-sd15"
    by_key = {e.key: e.pk for e in entries}
    in_order = [downloads[by_key[lo["key"]]] for lo in generated.provenance["loras"]]
    assert a1111["Lora hashes"] == ", ".join(f"{name}: {short}" for name, short in in_order)
    parsers = reads["sd-parsers"].fields
    assert parsers["steps"] == str(generated.steps) and parsers["seed"] == "31"
    assert parsers["Sampler"] == "DDIM" and parsers["cfg_scale"] == "7.5"
    assert parsers["Size"] == f"{generated.width}x{generated.height}"
    assert parsers["Model hash"] == expected_model_hash == parsers["Hashes/model"]
    for name, short in downloads.values():
        assert parsers[f"Hashes/lora:{name}"] == short
    reader = reads["sd-prompt-reader"].fields
    assert reader["Steps"] == str(generated.steps) and reader["Seed"] == "31"
    assert reader["Sampler"] == "DDIM" and reader["Model hash"] == expected_model_hash

    # The provenance JSON names the same files and hashes.
    loras = {lo["key"]: lo for lo in generated.provenance["loras"]}
    for entry in entries:
        assert (loras[entry.key]["file"], loras[entry.key]["hash"]) == downloads[entry.pk]
