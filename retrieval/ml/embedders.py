"""The retrieval embedders' per-process registry, and the names callers import from here.

Two models, both returning float32 rows with unit L2 norm (inner product = cosine):
`MiniLMEmbedder` (`minilm.py`, 384-d, text only, the default) and `Blip2Embedder`
(`blip2.py`, 256-d, texts and images, as in the MythraGen paper). Their shared base class
and helpers are in `embedding.py`. Each (kind, model id, device, options) is built once
per process and loads lazily.
"""

from __future__ import annotations

import os
from typing import Any

from mlcore.role import RoleRegistry
from retrieval.ml.blip2 import (
    DEFAULT_BLIP2_RETRIEVAL_ID,
    IMAGE_POOLINGS,
    Blip2Embedder,
    pool_tokens,
)
from retrieval.ml.embedding import TextImageEmbedder, l2_normalise, max_token_scores, torch_threads
from retrieval.ml.minilm import MINILM_PACKAGED_ID, MiniLMEmbedder

__all__ = [
    "DEFAULT_BLIP2_RETRIEVAL_ID",
    "IMAGE_POOLINGS",
    "MINILM_PACKAGED_ID",
    "Blip2Embedder",
    "MiniLMEmbedder",
    "TextImageEmbedder",
    "clear_embedder_registry",
    "embedder_has_image",
    "embedder_image_cost",
    "embedder_model_id",
    "get_embedder",
    "l2_normalise",
    "max_token_scores",
    "pool_tokens",
    "torch_threads",
]

_EMBEDDER_CLASSES: dict[str, type[TextImageEmbedder]] = {
    "minilm": MiniLMEmbedder,
    "blip2": Blip2Embedder,
}
_DEFAULT_IDS = {"minilm": MINILM_PACKAGED_ID, "blip2": DEFAULT_BLIP2_RETRIEVAL_ID}
_registry = RoleRegistry()


def embedder_image_cost(kind: str) -> str:
    """What searching by image costs with embedders of `kind` ("" when nothing extra)."""
    cls = _EMBEDDER_CLASSES.get(kind)
    return getattr(cls, "image_side_cost", "") if cls is not None else ""


def embedder_has_image(kind: str) -> bool:
    """Whether embedders of `kind` embed images (read from the class: nothing is loaded).
    An unknown kind has none."""
    cls = _EMBEDDER_CLASSES.get(kind)
    return bool(cls is not None and cls.has_image)


def embedder_model_id(kind: str, model_id: str | os.PathLike | None) -> str:
    """The model id an embedder of `kind` gets for `model_id` (None or "": the default)."""
    return str(model_id) if model_id else _DEFAULT_IDS[kind]


def get_embedder(
    kind: str,
    model_id: str | os.PathLike | None,
    device: str = "cpu",
    setting: str | None = None,
    **options: Any,
) -> TextImageEmbedder:
    """The process-wide embedder for (kind, model_id, device, options), made on first
    request.

    `kind` is "minilm" or "blip2"; `model_id` None means that kind's default; `options`
    go to the class (`precision`; MiniLM: `prompt_runtime`, `onnx_dir`, `prompt_threads`).
    The instance is not loaded here: it loads lazily on first use (or call `.load()` to warm it up).
    """
    if kind not in _EMBEDDER_CLASSES:
        raise ValueError(
            f"unknown embedder kind {kind!r}; expected one of {sorted(_EMBEDDER_CLASSES)}"
        )
    resolved = embedder_model_id(kind, model_id)
    key = (kind, resolved, device, tuple(sorted((k, str(v)) for k, v in options.items())))
    return _registry.get(
        key,
        lambda: _EMBEDDER_CLASSES[kind](resolved, device=device, setting=setting, **options),
    )


def clear_embedder_registry() -> None:
    """Forget all cached embedders (for tests, or to free memory in a long-lived worker)."""
    _registry.clear()
