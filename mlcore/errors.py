"""The one error every model role raises when a model cannot be loaded (pure Python)."""

from __future__ import annotations

TINY_HINT = "or run `python manage.py build_tiny_models` for the offline stand-ins"


class ModelUnavailable(RuntimeError):
    """A model (a checkpoint, a LoRA file, a tokenizer) could not be loaded.

    Never swallowed and never replaced by a silent fallback: the message says what failed,
    from which id or path, why, and, when known, the setting that chooses it.
    """

    def __init__(
        self,
        what: str,
        model: str,
        reason: str = "",
        *,
        setting: str | None = None,
        hint: str | None = TINY_HINT,
    ) -> None:
        self.what = what
        self.model = str(model)
        self.reason = reason
        self.setting = setting
        message = f"Could not load the {what} from {self.model!r}"
        if reason:
            message += f": {reason}"
        message += "."
        if setting:
            message += f" Set {setting} to a local folder or a hub id"
            message += f", {hint}." if hint else "."
        elif hint:
            message += f" Pass a local folder that holds the model, {hint}."
        super().__init__(message)


class ModelInputError(ValueError):
    """Bad input to a model role (a non-image, an empty prompt, an unknown precision...)."""
