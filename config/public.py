"""No server path leaves the server: what answers may say about files and models.

Model ids can be local folders (the demo's tiny models, a real checkpoint on disk), LoRA
training records hold file paths, fingerprints start with a resolved path. None of that
is for visitors: it tells them the server's layout (user names, mount points) and helps
nobody use the API. `scrub` / `scrub_bytes` replace every absolute path under one of the
server's folders (`server_roots`) by its last component, so "/srv/models/sd15" reads
"sd15", a hub id stays as it is, and "/home/ada/var/loras/loras/<key>.safetensors" reads
"<key>.safetensors".

Applied to every API answer by `config.renderers.JSONRenderer` (one regular expression
over the rendered bytes, run only when one of the folders occurs in them) and to each
generation's provenance (stored, shown and written into its PNG). The admin shows the
real paths.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# Settings that hold folders, and settings that hold model ids (a folder when local).
_FOLDER_SETTINGS = (
    "BASE_DIR",
    "VAR_DIR",
    "MEDIA_ROOT",
    "STATIC_ROOT",
    "MODELS_DIR",
    "LORA_DIR",
    "RETRIEVAL_INDEX_DIR",
    "RETRIEVAL_ONNX_DIR",
    "CELERY_BROKER_DIR",
)
_MODEL_SETTINGS = (
    "SD_MODEL",
    "CLIP_MODEL",
    "CAPTION_MODEL",
    "VQA_MODEL",
    "RETRIEVAL_BLIP2_MODEL",
    "RETRIEVAL_MINILM_MODEL",
    "SAFETY_CHECKER_MODEL",
)
# A path runs to the next character that cannot be part of one in text we produce.
_TAIL = r"(?:/[^\s\"'<>,;#)\]}]*)?"


def _roots_from(values: tuple) -> tuple[str, ...]:
    roots = set()
    for value in values:
        if not value:
            continue
        path = str(value).rstrip("/")
        if path.startswith("/"):  # never "/" itself
            roots.add(path)
    return tuple(sorted(roots, key=len, reverse=True))  # longest first


@lru_cache(maxsize=1)
def server_roots() -> tuple[str, ...]:
    """The server's folders whose paths are never shown (longest first). Computed once
    per process (and again when a test changes settings: `_settings_changed`)."""
    values = [getattr(settings, name, None) for name in _FOLDER_SETTINGS]
    for name in _MODEL_SETTINGS:
        model = str(getattr(settings, name, "") or "")
        if model.startswith("/"):
            values.append(Path(model).parent)
    values += [
        tempfile.gettempdir(),
        sys.prefix,
        os.environ.get("HF_HOME"),
        Path.home(),
    ]
    return _roots_from(tuple(str(v) for v in values if v))


@lru_cache(maxsize=8)
def _patterns(roots: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """The patterns of `roots`, and the outermost roots (a path under none of them is
    under no root: checking these few is the fast path of every answer)."""
    alternation = "|".join(re.escape(r) for r in roots)
    text = re.compile(rf"(?:{alternation}){_TAIL}")
    raw = re.compile(rf"(?:{alternation}){_TAIL}".encode())
    outer = [r for r in roots if not any(r.startswith(o + "/") for o in roots if o != r)]
    return text, raw, re.compile("|".join(re.escape(r) for r in outer).encode())


def _last_component(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def scrub_text(text: str) -> str:
    """`text` with every server path replaced by its last component."""
    roots = server_roots()
    if not roots or not any(r in text for r in roots):
        return text
    pattern = _patterns(roots)[0]
    return pattern.sub(lambda m: _last_component(m.group(0)), text)


@receiver(setting_changed)
def _settings_changed(**_kwargs) -> None:
    server_roots.cache_clear()


def scrub(value):
    """`value` (JSON-like: dicts, lists, strings) with server paths scrubbed, as a copy."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def scrub_bytes(data: bytes) -> bytes:
    """Rendered UTF-8 text (JSON) with server paths scrubbed; untouched if none occurs."""
    roots = server_roots()
    if not roots:
        return data
    _text, pattern, outer = _patterns(roots)
    if outer.search(data) is None:
        return data
    return pattern.sub(lambda m: m.group(0).rstrip(b"/").rsplit(b"/", 1)[-1], data)


def public_model_id(model: str | Path) -> str:
    """A model id as answers show it: a hub id as is, a local folder by its name."""
    text = str(model)
    return _last_component(text) if text.startswith("/") else text
