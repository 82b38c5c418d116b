"""What every retrieval embedder shares: the `TextImageEmbedder` base class and helpers.

A `TextImageEmbedder` maps texts (and, if `has_image`, images) to float32 rows with unit
L2 norm, so inner product = cosine. The models are `minilm.MiniLMEmbedder` and
`blip2.Blip2Embedder`; `embedders` holds the per-process registry.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mlcore.images import check_images
from mlcore.role import ModelRole
from mlcore.threads import torch_threads
from retrieval.ml.errors import EmbedderError


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def max_token_scores(queries: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """BLIP-2 ITC scores: for each query row and image, the max cosine over its query tokens.

    `queries` (m, d) unit rows, `tokens` (n, T, d) unit token vectors -> (m, n) float32.
    Use it to re-rank the top hits of the single-vector index with BLIP-2's exact score.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    tokens = np.asarray(tokens, dtype=np.float32)
    if tokens.ndim != 3 or tokens.shape[2] != queries.shape[1]:
        raise EmbedderError(f"tokens must be (n, T, {queries.shape[1]}), got {tuple(tokens.shape)}")
    return np.einsum("md,ntd->mnt", queries, tokens).max(axis=2)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the duration of a load."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_enabled:
            hf_logging.enable_progress_bar()


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise EmbedderError("embed_texts takes a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbedderError(f"texts[{i}] is {type(text).__name__}, expected str")
    return texts


def check_image_batch(images: Sequence[Any]) -> list[Any]:
    return check_images(images, error=EmbedderError)


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EmbedderError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class TextImageEmbedder(ModelRole, abc.ABC):
    """A model that maps texts (and, if `has_image`, images) to unit vectors of size `dim`.

    A `ModelRole`: `load()` is lazy, idempotent and thread-safe, and loads what search
    needs (the text side); the embed methods call it. All outputs are float32 numpy arrays
    whose rows have unit L2 norm.
    """

    what = "embedding model"
    dim: int
    has_image: bool = False

    @abc.abstractmethod
    def _load(self) -> None:
        """Load weights; raise `self.unavailable(...)` on failure."""

    def embed_texts(
        self, texts: Sequence[str], batch_size: int = 64, *, threads: int | None = None
    ) -> np.ndarray:
        """Embed texts -> (n, dim) float32, unit rows. An empty list gives shape (0, dim).
        `threads` limits torch's threads for this call (see `torch_threads`)."""
        texts = check_texts(texts)
        batch_size = check_batch_size(batch_size)
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_texts(texts, batch_size))

    @abc.abstractmethod
    def _embed_texts(self, texts: list[str], batch_size: int) -> np.ndarray: ...

    def embed_images(
        self, images: Sequence[Any], batch_size: int = 32, *, threads: int | None = None
    ) -> np.ndarray:
        """Embed PIL images -> (n, dim) float32, unit rows (only if `has_image`)."""
        self._require_image_side()
        images = check_image_batch(images)
        batch_size = check_batch_size(batch_size)
        self.load()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_images(images, batch_size))

    def _embed_images(self, images: list[Any], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def embed_image_tokens(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Per-token image vectors (n, T, dim), for max-over-tokens re-ranking (BLIP-2 only)."""
        self._require_image_side()
        raise EmbedderError(f"{type(self).__name__} has no per-token image embeddings")

    def _require_image_side(self) -> None:
        if not self.has_image:
            raise EmbedderError(
                f"{type(self).__name__} ({self.model_id!r}) is a text-only model: it cannot "
                "embed images. Use the BLIP-2 embedder for image vectors."
            )
