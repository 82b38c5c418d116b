"""Errors raised by the retrieval models.

`ModelUnavailable` means a model could not be loaded: its message names the model id or
path and, when the caller told us, the setting that chooses it. There is never a silent
fallback to another model: a search index built from one model's vectors is meaningless
with another model's queries.
"""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """A model could not be loaded (missing local copy, no hub access, wrong checkpoint)."""

    def __init__(
        self,
        label: str,
        model_id: str,
        *,
        setting_name: str | None = None,
        reason: str = "no local copy and no hub access",
        hint: str | None = None,
    ) -> None:
        self.label = label
        self.model_id = model_id
        self.setting_name = setting_name
        self.reason = reason
        message = f"Could not load {label} from {model_id!r} ({reason})."
        if setting_name:
            message += f" Set {setting_name} to a local folder"
            message += f", or {hint}." if hint else "."
        elif hint:
            message += f" You can {hint}."
        super().__init__(message)


class EmbedderError(ValueError):
    """Bad input to an embedder (e.g. a non-PIL image, or images for a text-only model)."""
