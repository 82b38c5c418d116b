"""Errors raised by the retrieval models.

`ModelUnavailable` (shared by every model role, see `mlcore.errors`) means a model could
not be loaded; there is never a silent fallback to another model: a search index built
from one model's vectors is meaningless with another model's queries.
"""

from __future__ import annotations

from mlcore.errors import ModelInputError, ModelUnavailable

__all__ = ["EmbedderError", "ModelUnavailable"]


class EmbedderError(ModelInputError):
    """Bad input to an embedder (e.g. a non-PIL image, or images for a text-only model)."""
