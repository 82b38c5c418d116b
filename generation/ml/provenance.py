"""PNG files that carry their own provenance.

`write_png` stores the provenance dict as JSON in an iTXt chunk keyed "mythragen" and the
prompt and settings in a "parameters" text chunk in the AUTOMATIC1111 layout, which A1111's
"PNG Info" tab, ComfyUI and most image browsers read:

    <prompt> <lora:name:weight> ...
    Negative prompt: <negative prompt>
    Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 1, Size: 512x512, Model: ..., ...

The JSON records the safety checker's verdict too (`safety_checker`: the checker's model id
or "off: <reason>"; `flagged`: true/false, null when it did not run); the "parameters"
text stays exactly what A1111 writes, so other tools read it as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import atomic_path

PROVENANCE_KEY = "mythragen"
PARAMETERS_KEY = "parameters"


def a1111_parameters(provenance: dict[str, Any]) -> str:
    """The A1111 "parameters" text for a provenance dict (missing fields are left out)."""
    from .render import SAMPLER_LABELS

    prompt = str(provenance.get("prompt", ""))
    tags = []
    for lora in provenance.get("loras") or []:
        name = lora.get("name") if isinstance(lora, dict) else lora[0]
        weight = lora.get("weight") if isinstance(lora, dict) else lora[-1]
        tags.append(f"<lora:{name}:{float(weight):g}>")
    lines = [" ".join([prompt, *tags]).strip()]
    if provenance.get("negative_prompt"):
        lines.append(f"Negative prompt: {provenance['negative_prompt']}")
    fields = []
    sampler = provenance.get("sampler")
    for label, value in (
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
        ("Model", provenance.get("base_model")),
    ):
        if value is not None and value != "":
            fields.append(f"{label}: {value}")
    if fields:
        lines.append(", ".join(fields))
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
