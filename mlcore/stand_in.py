"""Stand-in models: checkpoints this project builds itself (random weights, real classes).

Every stand-in folder holds a marker file. Its `size` says which kind it is:
"tiny" (32-pixel models for tests and the offline demo) or "real-size" (the published
configuration with random weights, to prove memory, precision and shapes). The UI and
every output that a stand-in produced say so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = "MYTHRAGEN_TINY_MODEL.json"  # name kept: folders built by earlier versions carry it
TINY, REAL_SIZE = "tiny", "real-size"


def stand_in_info(path: str | os.PathLike | None) -> dict | None:
    """The marker of a stand-in folder (with "size" filled in), or None for a real model."""
    if not path:
        return None
    try:
        marker = Path(path).expanduser() / MARKER
        if not marker.is_file():
            return None
        info = json.loads(marker.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(info, dict):
        info = {}
    info.setdefault("size", TINY)
    return info


def is_stand_in(path: str | os.PathLike | None) -> bool:
    """True for any folder this project built with random weights (tiny or real-size)."""
    return stand_in_info(path) is not None


def is_tiny(path: str | os.PathLike | None) -> bool:
    """True for a tiny stand-in (its outputs are noise; sizes and steps are scaled down)."""
    info = stand_in_info(path)
    return info is not None and info["size"] == TINY


def write_marker(folder: str | os.PathLike, kind: str, size: str = TINY, **extra) -> Path:
    """Mark `folder` as a stand-in of `kind` ("stable-diffusion-1.5", "blip2-opt", ...)."""
    note = {
        TINY: "random weights: outputs are noise-like, for tests and the offline demo",
        REAL_SIZE: "published configuration with random weights: for memory, precision "
        "and shape checks, outputs are meaningless",
    }[size]
    path = Path(folder) / MARKER
    path.write_text(
        json.dumps({"tiny": size == TINY, "size": size, "kind": kind, "note": note, **extra}),
        encoding="utf-8",
    )
    return path
