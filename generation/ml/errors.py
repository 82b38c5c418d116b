"""Errors raised by the generation ML layer (pure Python: importable without torch)."""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """A model (base pipeline, LoRA file, CLIP backbone) could not be loaded.

    The message names the model id or path and, when known, the setting that points at it,
    so an operator knows what to change.
    """

    def __init__(
        self,
        model: str,
        reason: str = "",
        *,
        setting: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.model = str(model)
        self.reason = reason
        self.setting = setting
        parts = [f"Model {self.model!r} is unavailable"]
        if reason:
            parts[0] += f": {reason}"
        if setting:
            parts.append(
                hint
                or f"Set {setting} to a local folder of Stable Diffusion 1.5 in diffusers format, "
                "or run `python manage.py build_tiny_models`"
            )
        elif hint:
            parts.append(hint)
        super().__init__(". ".join(parts))


class GenerationInputError(ValueError):
    """A render or training parameter is invalid (steps < 1, size not a multiple of 8, ...)."""


class TrainingCancelled(Exception):
    """Training stopped because `should_stop()` returned True; a checkpoint was saved first."""

    def __init__(self, step: int | None = None, checkpoint: str | None = None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = f" at step {step}" if step is not None else ""
        saved = f" (checkpoint: {checkpoint})" if checkpoint else ""
        super().__init__(f"training cancelled{where}{saved}")
