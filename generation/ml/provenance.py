"""PNG files that carry their own provenance, readable by A1111 tools.

`write_png` stores the provenance dict as JSON in an iTXt chunk keyed "mythragen" and the
prompt and settings in a "parameters" text chunk in the AUTOMATIC1111 layout, which A1111's
"PNG Info" tab, ComfyUI, sd-parsers, sd-prompt-reader and most image browsers read:

    <prompt> <lora:name:weight> ...
    Negative prompt: <negative prompt>
    Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 1, Size: 512x512, Model hash: <10 hex>,
    Model: <name>, Lora hashes: "<name>: <12 hex>, ...", Hashes: {"model": ..., "lora:<name>": ...}

(the last line is one line). As A1111 does, prompts keep their newlines. The readers find
the fields by text markers, though: sd-parsers splits at every "Negative prompt:", and
sd-prompt-reader takes the first "\\nSteps:" as the settings line, so a prompt holding such
a line forged the seed and steps they report (or crashed sd-parsers). `prompt_for_parameters`
defuses those markers by inserting one space where CLIP's tokenizer already splits
("Negative prompt :", "\\nSteps :", "< lora:"): Stable Diffusion's text encoder sees exactly
the same tokens, so the image is the one asked for, and the generation service stores
prompts in this form so that every reader gets back exactly the stored prompt.

Hashes, as A1111 writes them:
- `Model hash`: the first 10 hex digits of the SHA-256 of the checkpoint file (A1111's
  "AutoV2"). A diffusers folder has no single file: `model_hash` hashes its weight files
  (unet, vae, text encoders; each file's path relative to the folder, a NUL byte, then its
  bytes, in sorted path order). It names the model exactly but is not the hash A1111 shows
  for the same model converted to one file.
- `Lora hashes`: "name: hash" for each LoRA, the hash being the first 12 hex digits of the
  SHA-256 of the safetensors data after its header (kohya-ss' `sshs_model_hash`, A1111's
  `addnet_hash_safetensors`, Civitai's "AutoV3") of the kohya file users download, whose
  stem (and `ss_output_name`) is the name in the `<lora:...>` tags. The same hashes are
  repeated as Civitai's `Hashes` JSON, which sd-parsers reads (it cannot read the quoted
  `Lora hashes` value of more than one LoRA).

The JSON records the safety checker's verdict too (`safety_checker`: the checker's model id
or "off: <reason>"; `flagged`: true/false, null when it did not run); the "parameters"
text has only what A1111 writes, so other tools read it as before.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ._common import atomic_path

PROVENANCE_KEY = "mythragen"
PARAMETERS_KEY = "parameters"

# Markers the readers look for inside the text (see the module docstring). Each gets one
# space at a point where CLIP's pre-tokenizer splits anyway (between a word and ":", after
# "<"), so the token ids do not change.
_NEGATIVE_MARKER = re.compile(r"(negative prompt)(:)", re.I)
_STEPS_LINE = re.compile(r"(\n[ \t]*steps)(:)", re.I)
_EXTRA_NETWORK = re.compile(r"<(?=[^\W_]\w*:)")  # A1111's <lora:name:w>, <hypernet:...>
# Weight files of a diffusers Stable Diffusion folder that decide the image.
_MODEL_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt")


def prompt_for_parameters(text: str) -> str:
    """`text` with A1111 field markers defused (same CLIP tokens; idempotent)."""
    text = _NEGATIVE_MARKER.sub(r"\1 \2", text)
    text = _STEPS_LINE.sub(r"\1 \2", text)
    return _EXTRA_NETWORK.sub("< ", text)


def _quote(value: Any) -> str:
    """A1111's `infotext_utils.quote`: JSON-quoted when it holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def parameter_name(name: str) -> str:
    """A name as A1111 can read it back unquoted (a model or LoRA name)."""
    return re.sub(r'[,:"\n\r]+', "_", str(name)).strip() or "model"


def a1111_parameters(provenance: dict[str, Any]) -> str:
    """The A1111 "parameters" text for a provenance dict (missing fields are left out).

    LoRA entries name themselves by "file" (the downloadable kohya file's stem) when they
    have one, else by "name"; "hash" is their short hash. `base_model_hash` is the model's.
    """
    from .render import SAMPLER_LABELS

    prompt = prompt_for_parameters(str(provenance.get("prompt", "")))
    tags, lora_hashes = [], []
    for lora in provenance.get("loras") or []:
        if isinstance(lora, dict):
            name, weight = lora.get("file") or lora.get("name"), lora.get("weight")
            short = lora.get("hash")
        else:
            name, weight, short = lora[0], lora[-1], None
        name = parameter_name(name)
        tags.append(f"<lora:{name}:{float(weight):g}>")
        if short:
            lora_hashes.append((name, str(short)))
    lines = [" ".join([prompt, *tags]).strip()]
    if provenance.get("negative_prompt"):
        negative = prompt_for_parameters(str(provenance["negative_prompt"]))
        lines.append(f"Negative prompt: {negative}")
    sampler = provenance.get("sampler")
    model = provenance.get("base_model")
    model_hash = provenance.get("base_model_hash")
    hashes = {"model": model_hash} if model_hash else {}
    hashes.update({f"lora:{name}": short for name, short in lora_hashes})
    fields = [
        ("Steps", provenance.get("steps")),
        ("Sampler", SAMPLER_LABELS.get(sampler, sampler) if sampler else None),
        ("CFG scale", provenance.get("guidance")),
        ("Seed", provenance.get("seed")),
        (
            "Size",
            f"{provenance['width']}x{provenance['height']}"
            if "width" in provenance and "height" in provenance
            else None,
        ),
        ("Model hash", model_hash),
        ("Model", parameter_name(Path(str(model)).name) if model else None),
        ("Lora hashes", ", ".join(f"{n}: {h}" for n, h in lora_hashes) or None),
    ]
    text = [f"{label}: {_quote(value)}" for label, value in fields if value not in (None, "")]
    if hashes:  # Civitai's form, unquoted JSON (as Civitai writes it)
        text.append(f"Hashes: {json.dumps(hashes, ensure_ascii=False)}")
    if text:
        lines.append(", ".join(text))
    return "\n".join(lines)


def write_png(image, path: str | Path, provenance: dict[str, Any]) -> Path:
    """Save `image` as PNG at `path` (atomically) with the provenance embedded."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    info.add_itxt(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True, default=str))
    info.add_text(PARAMETERS_KEY, a1111_parameters(provenance))
    with atomic_path(path, ".png") as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_png_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance dict stored by `write_png` ({} for a PNG without one)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        raw = getattr(img, "text", {}).get(PROVENANCE_KEY) or img.info.get(PROVENANCE_KEY)
    if not raw:
        return {}
    return json.loads(raw)


def read_png_parameters(path: str | Path) -> str:
    """The A1111 "parameters" text ("" when absent)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return getattr(img, "text", {}).get(PARAMETERS_KEY, "")


# --------------------------------------------------------------------------- hashes


def _sha256_file(path: Path, digest=None, offset: int = 0):
    digest = digest or hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def safetensors_data_hash(source: str | Path | bytes) -> str:
    """SHA-256 (64 hex) of a safetensors file's bytes after its header: kohya-ss'
    `sshs_model_hash`, A1111's `addnet_hash_safetensors`, Civitai's AutoV3 (12 digits)."""
    if isinstance(source, bytes):
        n = int.from_bytes(source[:8], "little")
        return hashlib.sha256(source[8 + n :]).hexdigest()
    path = Path(source)
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
    return _sha256_file(path, offset=8 + n).hexdigest()


def lora_short_hash(full: str) -> str:
    """A1111's short LoRA hash: the first 12 hex digits."""
    return full[:12]


def model_hash(path: str | Path) -> str | None:
    """A1111's `Model hash` (10 hex digits) of a checkpoint file, or of a diffusers folder's
    weight files as the module docstring says; None when `path` is neither."""
    path = Path(path)
    if path.is_file():
        return _sha256_file(path).hexdigest()[:10]
    if not path.is_dir():
        return None
    files = sorted(
        f
        for part in _MODEL_PARTS
        if (path / part).is_dir()
        for f in (path / part).iterdir()
        if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES)
    )
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        _sha256_file(f, digest)
    return digest.hexdigest()[:10]
