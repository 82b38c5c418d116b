"""`ModelRole`: the one shape of every model wrapper (lazy load, unload, device, precision).

A subclass sets `what` (how errors name it) and `cuda_precision`, and implements
`_load()` (read weights; raise `self.unavailable(...)` on failure) and, if it holds more
than attributes that `_unload` can drop, `_unload()`. Callers use:

    role = SomeRole(model_id, device="cpu", precision="auto", setting="MYTHRAGEN_X")
    role.load()          # idempotent, thread-safe; later calls return at once
    role.is_stand_in     # a folder this project built (random weights): say so in outputs
    role.unload()        # free the weights (a long-lived worker switching models)
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

from .errors import TINY_HINT, ModelUnavailable
from .precision import resolve_device, resolve_precision, torch_dtype
from .stand_in import stand_in_info


def looks_local(source: str) -> bool:
    """Whether `source` is meant as a local folder rather than a hub id ("org/name")."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or "\\" in source
    )


class ModelRole:
    """Base of every model wrapper; see the module docstring."""

    what: str = "model"
    cuda_precision: str = "bfloat16"  # what precision "auto" means on CUDA

    def __init__(
        self,
        model_id: str | os.PathLike,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = None,
    ) -> None:
        self.model_id = str(model_id)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, cuda_default=self.cuda_precision)
        self.setting = setting
        self._lock = threading.RLock()
        self._loaded = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.model_id!r}, device={self.device!r}, "
            f"precision={self.precision!r})"
        )

    # ---------------------------------------------------------------- what it is
    @property
    def dtype(self):
        """The torch dtype weights are loaded in."""
        return torch_dtype(self.precision)

    @property
    def stand_in(self) -> dict | None:
        """The stand-in marker (kind, size "tiny"/"real-size") or None for a real model."""
        return stand_in_info(self.model_id)

    @property
    def is_stand_in(self) -> bool:
        return self.stand_in is not None

    @property
    def is_tiny(self) -> bool:
        info = self.stand_in
        return info is not None and info["size"] == "tiny"

    # ---------------------------------------------------------------- life cycle
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self):
        """Load the weights once (thread-safe); raise ModelUnavailable when they can't be."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                self._check_device()
                self._load()
                self._loaded = True
        return self

    def unload(self) -> None:
        """Drop the weights; the next call loads them again."""
        with self._lock:
            if self._loaded:
                self._unload()
                self._loaded = False
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _load(self) -> None:
        raise NotImplementedError

    def _unload(self) -> None:
        """Default: forget every attribute whose name starts with `_model`/`_pipe`."""
        for name in list(vars(self)):
            if name.startswith(("_model", "_pipe")):
                setattr(self, name, None)

    # ---------------------------------------------------------------- errors
    def unavailable(self, reason: str, exc: BaseException | None = None) -> ModelUnavailable:
        """The ModelUnavailable for this role, naming its model and setting."""
        error = ModelUnavailable(
            self.what, self.model_id, reason, setting=self.setting, hint=TINY_HINT
        )
        if exc is not None:
            error.__cause__ = exc
        return error

    def check_local(self, source: str | None = None) -> None:
        """Fail fast (no hub round trip) when a local folder was meant but is missing."""
        source = str(source or self.model_id)
        if looks_local(source) and not Path(source).expanduser().is_dir():
            raise self.unavailable("no such folder")

    def _check_device(self) -> None:
        if not self.device.startswith("cuda"):
            return
        import torch

        if not torch.cuda.is_available():
            raise self.unavailable(f"device {self.device!r} asked for, but CUDA is not available")


class RoleRegistry:
    """A per-process registry of model roles: one instance per key, made on first use under
    a lock (so two threads asking at once share one model), forgotten by `clear()`."""

    def __init__(self) -> None:
        self._roles: dict = {}
        self._lock = threading.Lock()

    def get(self, key, make):
        """The role registered under `key`, made by `make()` the first time."""
        with self._lock:
            role = self._roles.get(key)
            if role is None:
                role = self._roles[key] = make()
            return role

    def clear(self) -> None:
        """Forget every registered role (tests; a worker reloading settings)."""
        with self._lock:
            self._roles.clear()
