"""Errors raised by the labelling ML code (no Django, no torch)."""

from __future__ import annotations

REBUILD_HINT = "or run `python manage.py build_tiny_models`"


class ModelUnavailable(RuntimeError):
    """A model could not be loaded from its id or local path.

    Never swallowed and never replaced by a silent fallback: the message names the model
    id/path and, when known, the setting that chooses it.
    """

    def __init__(
        self, message: str, *, model_id: str | None = None, setting_name: str | None = None
    ):
        super().__init__(message)
        self.model_id = model_id
        self.setting_name = setting_name

    @classmethod
    def for_model(
        cls,
        model_id: str,
        *,
        what: str = "model",
        setting_name: str | None = None,
        reason: str | None = None,
    ) -> ModelUnavailable:
        """Build the standard message: what failed, from where, why, and how to fix it."""
        message = f"Could not load the {what} from {model_id!r}"
        if reason:
            message += f": {reason}"
        message += "."
        if setting_name:
            message += f" Set {setting_name} to a local folder, {REBUILD_HINT}."
        else:
            message += f" Pass a local folder that holds the model, {REBUILD_HINT}."
        return cls(message, model_id=model_id, setting_name=setting_name)


class LabellingInputError(ValueError):
    """Bad input to a labelling model: no genres, duplicate genres, a non-image, ..."""
