"""Small helpers shared by the generation ML modules (no Django, torch imported lazily)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

# numpy 2 + torch: schedulers that call np.array(tensor) (Euler, DPM, UniPC) emit this
# DeprecationWarning in set_timesteps. It is harmless; it is silenced only around the calls
# that trigger it so that `pytest -W error` stays usable.
_NUMPY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"

_quieted = False


def quiet_ml_logs() -> None:
    """Silence transformers/diffusers info logs and progress bars (once per process).

    Must run before `import diffusers`: transformers logs a torchvision fallback warning
    while diffusers imports its pipelines.
    """
    global _quieted
    if _quieted:
        return
    # bitsandbytes (imported by diffusers' loaders and by the 8-bit optimizer) calls
    # torch.compile at import, which imports torch.jit code that emits DeprecationWarnings.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.script_method.*", category=DeprecationWarning
        )
        # optional: without it training falls back to torch AdamW
        with contextlib.suppress(Exception):
            import bitsandbytes  # noqa: F401
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    _quieted = True


# peft warns whenever a second adapter is injected into a model: mixing LoRAs is exactly that.
_PEFT_MULTI_ADAPTER_WARNING = r"Already found a `peft_config` attribute in the model"


@contextlib.contextmanager
def multi_adapter_warning_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PEFT_MULTI_ADAPTER_WARNING, category=UserWarning)
        yield


# peft notes which adapter becomes active when the active one is deleted: expected when a
# pipeline swaps LoRAs (the renderer activates the ones it needs before every render).
_PEFT_ADAPTER_DELETED_WARNING = r"Adapter .* was active which is now deleted"


@contextlib.contextmanager
def adapter_deleted_warning_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_PEFT_ADAPTER_DELETED_WARNING, category=UserWarning
        )
        yield


@contextlib.contextmanager
def numpy_copy_warning_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NUMPY_COPY_WARNING, category=DeprecationWarning)
        yield


def sha256_text(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(final: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `final`; on success it replaces `final` with os.replace."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def model_fingerprint(base_model: str | Path) -> str:
    """A stable id for a base model: a hub id as is; a local folder by path + weight files.

    Rebuilding or replacing weights in the same folder changes the file stamps, so cached
    latents of an older model are never reused.
    """
    p = Path(base_model)
    if not p.is_dir():
        return str(base_model)
    stamps = []
    for sub in ("vae", "text_encoder", "unet"):
        d = p / sub
        if d.is_dir():
            for f in sorted(d.iterdir()):
                if f.is_file():
                    st = f.stat()
                    stamps.append((sub, f.name, st.st_size, st.st_mtime_ns))
    return f"{p.resolve()}#{sha256_text(stamps)[:16]}"
