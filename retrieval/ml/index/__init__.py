"""Versioned FAISS indexes of fused artwork vectors: atomic builds, hot swap, filtered search.

One module per responsibility:

- `versions.py`: the folders on disk (`CURRENT`, `versions/<v>/`), atomic switch, pruning.
- `build.py`: `build_index` writes a version (validate, build, fsync, rename, switch).
- `exact.py`: exact search in numpy: brute force, and the structure-aware exact search
  over fused rows kept as parts (`SlotParts`), the honest baseline of the slot indexes.
- `slots.py`: the slot index over MythraGen's fused [content, genre, artist, style] rows.
- `compressed.py`: the slot index's kind for catalogs too large for fused float32 rows.
- `gpu.py`: moving a flat index to a GPU (faiss-gpu builds only).
- `overlay.py`: vectors changed since a build (`OVERLAY.npz`), served without a rebuild.
- `loaded.py`: `LoadedIndex`, one version memory-mapped and searched.
- `store.py`: `IndexStore`, the current version of a root, reloaded when it changes.

Three kinds are built: ``flat`` (IndexFlatIP, exact) up to `exact_max` rows, ``slots``
above it for fused vectors (`build_index(..., blocks=4)`, what `retrieval.services` does),
and above `compressed_min` rows ``compressed`` (`compressed.py`: IVF fast-scan content
codes in memory, float content mapped from disk, no fused rows stored).
Vectors are expected L2-normalised (see `fusion.py`): inner product is the score.

This package imports FAISS; Django code imports it only when it searches or builds.
"""

from .build import KINDS, IndexInfo, build_index
from .exact import SlotParts, exact_search, slot_exact_search
from .gpu import GPU_MODES
from .loaded import LoadedIndex
from .overlay import (
    OVERLAY_FILE,
    OVERLAY_MARGIN_SECONDS,
    Overlay,
    overlay_compact,
    overlay_read,
    overlay_write,
)
from .store import IndexStore
from .versions import list_versions, prune_versions, read_current

__all__ = [
    "GPU_MODES",
    "KINDS",
    "OVERLAY_FILE",
    "OVERLAY_MARGIN_SECONDS",
    "IndexInfo",
    "IndexStore",
    "LoadedIndex",
    "Overlay",
    "SlotParts",
    "build_index",
    "exact_search",
    "list_versions",
    "overlay_compact",
    "overlay_read",
    "overlay_write",
    "prune_versions",
    "read_current",
    "slot_exact_search",
]
