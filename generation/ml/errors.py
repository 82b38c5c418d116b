"""Errors raised by the generation ML layer (pure Python: importable without torch)."""

from __future__ import annotations

from mlcore.errors import ModelInputError, ModelUnavailable

__all__ = ["GenerationInputError", "ModelUnavailable", "TrainingCancelled"]


class GenerationInputError(ModelInputError):
    """A render or training parameter is invalid (steps < 1, size not a multiple of 8, ...)."""


class TrainingCancelled(Exception):
    """Training stopped because `should_stop()` returned True; a checkpoint was saved first."""

    def __init__(self, step: int | None = None, checkpoint: str | None = None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = f" at step {step}" if step is not None else ""
        saved = f" (checkpoint: {checkpoint})" if checkpoint else ""
        super().__init__(f"training cancelled{where}{saved}")
