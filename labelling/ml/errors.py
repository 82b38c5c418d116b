"""Errors raised by the labelling ML code (no Django, no torch)."""

from __future__ import annotations

from mlcore.errors import ModelInputError, ModelUnavailable

__all__ = ["LabellingInputError", "ModelUnavailable"]


class LabellingInputError(ModelInputError):
    """Bad input to a labelling model: no genres, duplicate genres, a non-image, ..."""
