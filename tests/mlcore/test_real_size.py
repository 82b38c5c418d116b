"""mlcore.real_size without building anything heavy: published configs counted on the meta
device, the random initialisation of one small model, and the guards of `build`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlcore import real_size
from mlcore.errors import ModelInputError
from mlcore.stand_in import MARKER, REAL_SIZE, write_marker


def test_public_api():
    assert real_size.ROLES == ("sd15", "safety-checker", "blip2-itm", "blip2-opt", "clip-l14")
    assert set(real_size.PUBLISHED_PARAMS) == {
        "sd15/unet",
        "sd15/vae",
        "sd15/text_encoder",
        "safety-checker",
        "blip2-itm",
        "blip2-opt",
        "clip-l14",
    }
    for table in (real_size.HUB_IDS, real_size.KINDS, real_size.DEFAULT_DTYPES):
        assert set(table) == set(real_size.ROLES)
    assert real_size.ENV_VARS["blip2-opt"] == ("MYTHRAGEN_VQA_MODEL",)
    assert real_size.published_role_params("sd15") == 859_520_964 + 83_653_863 + 123_060_480


def test_importing_it_loads_neither_torch_nor_django():
    code = (
        "import sys, mlcore.real_size; "
        "print([m for m in ('torch', 'django', 'transformers', 'diffusers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(real_size.PUBLISHED_PARAMS))
def test_published_configuration_has_the_published_parameter_count(name):
    model = real_size.make_model(name, device="meta")
    count = real_size.count_params(model)
    published = real_size.PUBLISHED_PARAMS[name]
    assert abs(count - published) / published < 0.01, (name, count, published)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_blip2_opt_has_tied_embeddings_and_the_image_token():
    model = real_size.make_model("blip2-opt", device="meta")
    lm = model.language_model
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    assert model.config.image_token_index == real_size.BLIP2_IMAGE_TOKEN_INDEX
    assert model.config.num_query_tokens == 32
    assert model.config.text_config.hidden_size == 2560


def test_make_model_initialises_in_the_target_dtype_reproducibly():
    import torch

    first = real_size.make_model("sd15/vae", dtype="bfloat16")
    second = real_size.make_model("sd15/vae", dtype="bf16")
    params = dict(first.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.bfloat16}
    assert all(torch.isfinite(p).all() for p in params.values())
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )
    conv = params["encoder.conv_in.weight"].float()
    assert 0.0 < conv.std() <= 0.021 and conv.abs().max() > 0  # random, not degenerate
    bias = params["encoder.conv_in.bias"]
    assert torch.equal(bias, torch.zeros_like(bias))
    norm = params["encoder.conv_norm_out.weight"]
    assert torch.equal(norm, torch.ones_like(norm))


def test_tied_weights_stay_tied_when_built_without_memory():
    import torch
    from torch import nn

    from mlcore.real_size.models import _materialize, _parameters_on_meta

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight
            self.norm = nn.LayerNorm(4)
            self.register_buffer("steps", torch.arange(3), persistent=False)

    with _parameters_on_meta():
        model = Tied()
    assert model.embed.weight.device.type == "meta" and model.steps.tolist() == [0, 1, 2]
    _materialize(model, torch.float16, seed=1)
    assert model.head.weight is model.embed.weight
    assert real_size.count_params(model) == 10 * 4 + 4 + 4
    assert model.embed.weight.dtype == torch.float16 and model.embed.weight.std() > 0
    assert model.norm.weight.tolist() == [1.0] * 4


def test_unknown_names_are_input_errors(tmp_path):
    with pytest.raises(ModelInputError):
        real_size.make_model("sd21/unet", device="meta")
    with pytest.raises(ModelInputError):
        real_size.build("sdxl", tmp_path / "x")
    with pytest.raises(ModelInputError):
        real_size.make_model("sd15/vae", dtype="int8", device="meta")


def test_build_refuses_a_folder_that_is_not_its_stand_in(tmp_path):
    folder = tmp_path / "clip-l14"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(real_size.RealSizeError, match="refusing"):
        real_size.build("clip-l14", folder, cache_dir=tmp_path / "cache")
    assert (folder / "precious.txt").read_text() == "keep me"


def test_is_complete_needs_this_role_version_files_and_weights(tmp_path):
    folder = tmp_path / "safety-checker"
    folder.mkdir()
    assert not real_size.is_complete(folder, "safety-checker")
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    version = real_size.REAL_SIZE_VERSION
    write_marker(folder, "safety-checker", size=REAL_SIZE, role="safety-checker", version=version)
    assert real_size.is_complete(folder, "safety-checker")
    assert not real_size.is_complete(folder, "clip-l14")
    marker = json.loads((folder / MARKER).read_text())
    marker["version"] = version - 1
    (folder / MARKER).write_text(json.dumps(marker))
    assert not real_size.is_complete(folder, "safety-checker")


def test_a_complete_folder_is_returned_as_is(tmp_path):
    folder = tmp_path / "safety-checker"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    write_marker(
        folder,
        "safety-checker",
        size=REAL_SIZE,
        role="safety-checker",
        version=real_size.REAL_SIZE_VERSION,
    )
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert real_size.build("safety-checker", folder) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_clip_vocab_comes_from_the_cache_without_pip(tmp_path, monkeypatch):
    import gzip
    import hashlib
    import zipfile

    from mlcore.real_size import tokenizers

    # A wheel in the cache is used as is (no pip run); a file that is not CLIP's is refused.
    fake = gzip.compress(b"#version\na b\n")
    with zipfile.ZipFile(tmp_path / "open_clip_torch-0.0.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr(real_size.CLIP_BPE_MEMBER, fake)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    with pytest.raises(real_size.RealSizeError, match="not the known CLIP vocabulary"):
        real_size.real_clip_vocab(tmp_path)
    monkeypatch.setattr(tokenizers, "CLIP_BPE_SHA256", hashlib.sha256(fake).hexdigest())
    path = real_size.real_clip_vocab(tmp_path)
    assert path.read_bytes() == fake


def test_clip_vocab_names_the_failed_download(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for open-clip-torch==3.3.0"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(real_size.RealSizeError, match="open-clip-torch") as caught:
        real_size.real_clip_vocab(tmp_path)
    assert "pip download" in str(caught.value) and "No matching distribution" in str(caught.value)
