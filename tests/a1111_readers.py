"""The A1111 "parameters" readers a MythraGen PNG must satisfy, in one place for tests.

- sd-parsers (a dev dependency): `sd_parsers.ParserManager().parse(path)`.
- sd-prompt-reader: its package pins Pillow 10.3.0 and a Tk GUI, so it does not install
  beside this project's Pillow; when it is importable (e.g. installed with --no-deps into
  a folder on PYTHONPATH) its own `ImageDataReader` is used, otherwise `_PromptReaderRule`
  restates the rule of its A1111 parser (sd-prompt-reader 1.3.5, format/a1111.py, MIT):
  the prompt ends at the first "\\nNegative prompt:", the settings start at the first
  "\\nSteps:", and "key: value" pairs are read from the settings, first one wins.
- A1111 itself: `a1111_parse` restates `infotext_utils.parse_generation_parameters`: the
  last line holds the settings when it has 3+ "key: value" pairs; other lines are
  stripped; a line starting "Negative prompt:" starts the negative prompt; quoted values
  are JSON strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from PIL import Image

_A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@dataclass
class Read:
    """What one reader got out of a PNG."""

    prompt: str
    negative: str
    fields: dict[str, str] = field(default_factory=dict)


def parameters_text(path) -> str:
    with Image.open(path) as img:
        img.load()
        return img.text.get("parameters", "")


def a1111_parse(text: str) -> Read:
    *lines, last = text.strip().split("\n")
    if len(_A1111_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[16:].strip()
        (negative if in_negative else prompt).append(line)
    fields = {}
    for key, value in _A1111_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        fields.setdefault(key, value)
    return Read("\n".join(prompt), "\n".join(negative), fields)


def sd_parsers_read(path) -> Read:
    from sd_parsers import ParserManager

    info = ParserManager().parse(str(path))
    assert info is not None, "sd-parsers found no generation data"
    (sampler,) = info.samplers
    fields = {
        "Sampler": sampler.name,
        **{k: str(v) for k, v in sampler.parameters.items()},
        "Model": sampler.model.name if sampler.model else None,
        "Model hash": sampler.model.hash if sampler.model else None,
        **{k: v for k, v in info.metadata.items() if isinstance(v, str)},
    }
    hashes = info.metadata.get("Hashes") or {}
    fields.update({f"Hashes/{k}": v for k, v in hashes.items()})
    return Read(
        " ".join(p.value for p in sampler.prompts),
        " ".join(p.value for p in sampler.negative_prompts),
        fields,
    )


def _prompt_reader_rule(raw: str) -> Read:
    steps = raw.find("\nSteps:")
    setting, positive, negative = "", raw, ""
    if steps != -1:
        positive, setting = raw[:steps].strip(), raw[steps:].strip()
    if "Negative prompt:" in raw:
        start = raw.find("\nNegative prompt:")
        end = steps if steps != -1 else len(raw)
        negative = raw[start + len("Negative prompt:") + 1 : end].strip()
        positive = raw[:start].strip()
    fields = {}
    for key, value in re.findall(r"\s*([^:,]+):\s*([^,]+)", setting):
        fields.setdefault(key, value)
    return Read(positive, negative, fields)


def sd_prompt_reader_read(path) -> tuple[Read, str]:
    """(what sd-prompt-reader reads, "package" or "rule")."""
    try:
        from sd_prompt_reader.image_data_reader import ImageDataReader
    except ImportError:
        return _prompt_reader_rule(parameters_text(path)), "rule"
    reader = ImageDataReader(str(path))
    names = {"model": "Model", "sampler": "Sampler", "seed": "Seed", "cfg": "CFG scale"}
    names |= {"steps": "Steps", "size": "Size"}
    fields = {names[k]: v for k, v in reader.parameter.items() if k in names}
    for key, value in re.findall(r"\s*([^:,]+):\s*([^,]+)", reader.setting):
        fields.setdefault(key, value)
    return Read(reader.positive, reader.negative, fields), "package"


def every_reader(path) -> dict[str, Read]:
    """Each reader's reading of the PNG at `path`."""
    prompt_reader, _how = sd_prompt_reader_read(path)
    return {
        "sd-parsers": sd_parsers_read(path),
        "sd-prompt-reader": prompt_reader,
        "a1111": a1111_parse(parameters_text(path)),
    }
