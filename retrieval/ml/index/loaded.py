"""One version of the index, loaded: memory-mapped files, id <-> row look-ups, search.

Two kinds are served (`build.py` decides which a build writes):

* ``flat``: a FAISS `IndexFlatIP` over every row (exact). A filtered search
  (`allowed_ids`) scans only the allowed rows through an `IDSelectorBitmap`; an
  unfiltered one runs on a GPU copy when there is one (`gpu.py`). A slot index on a GPU
  host searches its content exactly there (`SlotIndex.attach_gpu`).
* ``slots``: the slot index over MythraGen's fused vectors (`slots.py`). A filtered
  search allowing at most max(`exact_allowed_max`, `exact_allowed_fraction` * n) rows
  scans those rows exactly in numpy (`exact.py`); larger allowed sets take the slot
  search with the filter applied. Any query it answers with fewer than k rows (while k
  are allowed) is redone exactly.

* ``compressed``: the slot search over an IVF fast-scan content index, with no fused rows
  stored (`compressed.py`): exact and filtered scans score rows from their parts
  (`exact.slot_exact_rows`), `vectors_of` puts fused vectors together.

Flat search is exact; the slot search found 99.7% of the exact top 50 on the real catalog
at its defaults (`SlotIndex.refine`). Overlaid rows (`overlay.py`) are searched with their
new vectors.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .compressed import loaded_parts
from .exact import SlotParts, as_queries, exact_rows, merge_hits, slot_exact_rows
from .gpu import to_gpu, wants_gpu
from .overlay import AppliedOverlay, Overlay, overlay_apply
from .slots import SlotIndex
from .versions import FORMAT_VERSION

SERVED_KINDS = ("flat", "slots", "compressed")


@dataclass
class LoadedIndex:
    """One version of the index, memory-mapped and ready to search. Thread-safe for search.

    See the module docstring for how each kind searches, with and without a filter.
    """

    version: str
    path: Path
    kind: str
    n: int
    d: int
    meta: dict[str, Any]
    index: Any = field(repr=False)
    ids: np.ndarray = field(repr=False)
    vectors: np.ndarray | None = field(repr=False)  # None for "compressed" (see `parts`)
    device: str = "cpu"
    gpu_index: Any = field(default=None, repr=False)
    # Slot indexes: filters allowing at most this many rows (or this share of n) are
    # scanned exactly instead of taking the slot search.
    exact_allowed_max: int = 50_000
    exact_allowed_fraction: float = 0.2
    slots: SlotIndex | None = field(default=None, repr=False)
    # Slot kinds: the rows as parts, in content.npy's order (position -> row: combo_rows).
    parts: SlotParts | None = field(default=None, repr=False)
    _id_to_row: np.ndarray | None = field(default=None, repr=False)
    _sorted_ids: np.ndarray | None = field(default=None, repr=False)
    _sorted_rows: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Rows changed since the build (`overlay.py`); set by `apply_overlay`.
    _overlay: AppliedOverlay | None = field(default=None, repr=False)
    _neighbours: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path, *, use_gpu: str | None = None) -> LoadedIndex:
        """Load a version folder. `use_gpu` None follows what the build recorded."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported index format {meta.get('format')!r}")
        kind = meta["kind"]
        if kind not in SERVED_KINDS:
            # HNSW and IVF indexes were removed: neither was exact, and neither was built
            # by default for MythraGen's fused vectors.
            raise ValueError(
                f"{path}: index kind {kind!r} is no longer served: rebuild it "
                "(manage.py build_index)"
            )
        index = faiss.read_index(str(path / "index.faiss"), faiss.IO_FLAG_MMAP_IFC)
        ids = np.load(path / "ids.npy", mmap_mode="r")
        slotted = kind in ("slots", "compressed")
        vectors = None if kind == "compressed" else np.load(path / "vectors.npy", mmap_mode="r")
        n, d = int(meta["n"]), int(meta["d"])
        params = meta.get("params", {})
        index_d = d // 4 if slotted else d
        index_n = int(params.get("distinct_content", n)) if slotted else n
        if (
            index.ntotal != index_n
            or ids.shape != (n,)
            or (vectors is not None and vectors.shape != (n, d))
            or index.d != index_d
        ):
            raise ValueError(f"{path}: index, ids and vectors disagree with meta.json")
        loaded = cls(
            version=path.name,
            path=path,
            kind=kind,
            n=n,
            d=d,
            meta=meta,
            index=index,
            ids=ids,
            vectors=vectors,
        )
        if slotted:
            loaded.slots = SlotIndex.open(path, index, n, d, params)
        if slotted:
            # Exact and filtered scans score the parts (about a quarter of the fused
            # row's arithmetic and bytes), for both slot kinds.
            loaded.parts = loaded_parts(loaded.slots)
        if (path / "neighbours.npy").is_file():
            table = np.load(path / "neighbours.npy", mmap_mode="r")
            if table.shape[0] != n:
                raise ValueError(f"{path}: neighbours.npy disagrees with meta.json")
            loaded._neighbours = table
        if wants_gpu(use_gpu or meta.get("gpu", {}).get("use_gpu", "auto"), kind, n):
            # The content search moves; tables and mapped files stay on the CPU.
            if loaded.slots is not None:
                loaded.slots.attach_gpu()
            else:
                loaded.gpu_index = to_gpu(index)
            loaded.device = "cuda:0"
        return loaded

    # -- id <-> row ----------------------------------------------------------------------

    def _build_lookup(self) -> None:
        ids = np.asarray(self.ids)
        if ids.size and ids.min() >= 0 and ids.max() <= 4 * ids.size + 1024:
            # Catalog ids are mostly dense integers: a direct table is O(1) per id.
            table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            table[ids] = np.arange(ids.size, dtype=np.int64)
            self._id_to_row = table
        else:
            order = np.argsort(ids, kind="stable")
            self._sorted_rows = order.astype(np.int64)
            self._sorted_ids = ids[order]

    def _rows_of(self, artwork_ids: np.ndarray) -> np.ndarray:
        """Row numbers of the given ids, in input order; -1 where an id is not indexed."""
        wanted = np.asarray(artwork_ids, dtype=np.int64).reshape(-1)
        if self._id_to_row is None and self._sorted_ids is None:
            with self._lock:
                if self._id_to_row is None and self._sorted_ids is None:
                    self._build_lookup()
        if self._id_to_row is not None:
            table = self._id_to_row
            inside = (wanted >= 0) & (wanted < table.size)
            rows = np.full(wanted.shape, -1, dtype=np.int64)
            rows[inside] = table[wanted[inside]]
            return rows
        sorted_ids, sorted_rows = self._sorted_ids, self._sorted_rows
        if sorted_ids.size == 0:
            return np.full(wanted.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == wanted, sorted_rows[pos], -1)

    def rows_of(self, artwork_ids: np.ndarray) -> np.ndarray:
        """Sorted, unique row numbers of the given catalog ids (unknown ids are skipped)."""
        rows = self._rows_of(artwork_ids)
        return np.unique(rows[rows >= 0])

    def vector_of(self, artwork_id: int) -> np.ndarray | None:
        """A copy of the vector of one artwork (its overlay entry when it changed since the
        build), or None if it is not indexed."""
        row = int(self._rows_of(np.array([artwork_id]))[0])
        if row < 0:
            return None
        return self.vectors_of([artwork_id])[0]

    def vectors_of(self, artwork_ids) -> np.ndarray:
        """Copies of the vectors of the given artworks, in order (all indexed); overlaid
        rows give their new vectors."""
        rows = self._rows_of(np.asarray(artwork_ids, dtype=np.int64))
        if (rows < 0).any():
            raise KeyError("some artworks are not in this index version")
        if self.parts is not None:
            out = self.parts.fused(self.slots.tables["position_of_row"][rows])
        else:
            order = np.argsort(rows)  # read the mapped file in order
            out = np.empty((len(rows), self.d), dtype=np.float32)
            out[order] = self.vectors[rows[order]]
        overlay = self._overlay
        if overlay is not None:
            changed = overlay.mask[rows]
            if changed.any():
                at = np.searchsorted(overlay.rows, rows[changed])
                out[changed] = overlay.vectors[at]
        return out

    def neighbours_of(self, artwork_ids) -> np.ndarray | None:
        """(m, k) catalog ids of each artwork's nearest neighbours as found when the
        version was built (-1: none, or the artwork is not indexed), or None when the
        version stores none (see `build_index`'s `neighbours`)."""
        table = self._neighbours
        if table is None:
            return None
        rows = self._rows_of(np.asarray(artwork_ids, dtype=np.int64))
        out = np.full((len(rows), table.shape[1]), -1, dtype=np.int64)
        inside = rows >= 0
        out[inside] = table[rows[inside]]
        return out

    @property
    def snapshot_at(self) -> float | None:
        value = self.meta.get("snapshot_at")
        return float(value) if value is not None else None

    @property
    def overlaid(self) -> int:
        """How many rows are served from the overlay."""
        overlay = self._overlay
        return 0 if overlay is None else len(overlay.rows)

    def apply_overlay(self, overlay: Overlay | None) -> None:
        """Serve the overlay's entries that are newer than this version (and of its rows)."""
        applied = overlay_apply(overlay, self._rows_of, self.n, self.d, self.snapshot_at)
        self._overlay = applied  # one assignment: searches see the old or the new one

    # -- search --------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores (m, k'), catalog ids (m, k')), best first.

        k' = min(k, number of searchable rows); with `allowed_ids` only those artworks are
        searched (unknown ids are ignored). Fewer than k results come back only when fewer
        rows exist or are allowed: whenever the slot search returns fewer, exact search fills in.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        q = as_queries(queries, self.d)
        overlay = self._overlay  # one snapshot for the whole search
        if overlay is None:
            if allowed_ids is None:
                return self._search_all(q, k)
            return self._search_mask(q, k, self._mask_of(allowed_ids))
        # Overlaid rows: the version's copy is out of date, so it is searched without them,
        # and their new vectors are scored exactly and merged in.
        allowed = None if allowed_ids is None else self._mask_of(allowed_ids)
        base = ~overlay.mask if allowed is None else allowed & ~overlay.mask
        scores, ids = self._search_mask(q, k, base)
        extra = np.ones(len(overlay.rows), bool) if allowed is None else allowed[overlay.rows]
        if not extra.any():
            return scores, ids
        extra_scores = (q @ overlay.vectors[extra].T).astype(np.float32)
        extra_ids = np.broadcast_to(
            np.asarray(self.ids)[overlay.rows[extra]], extra_scores.shape
        ).astype(np.int64)
        return merge_hits(scores, ids, extra_scores, extra_ids, k)

    def _mask_of(self, allowed_ids) -> np.ndarray:
        rows = self._rows_of(allowed_ids)
        mask = np.zeros(self.n, dtype=bool)
        mask[rows[rows >= 0]] = True
        return mask

    def _search_mask(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the rows where `mask` is True: (scores, catalog ids)."""
        count = int(mask.sum())
        if count == 0:
            m = q.shape[0]
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        if count == self.n:
            return self._search_all(q, k)
        k_eff = min(k, count)
        small = count <= max(self.exact_allowed_max, self.exact_allowed_fraction * self.n)
        if self.slots is not None and not small:
            scores, rows = self.slots.search(q, k_eff, mask)
            scores, rows = self._fill_short(q, scores, rows, k_eff, mask)
        else:
            scores, rows = self._exact(q, k_eff, mask)
        return scores.astype(np.float32, copy=False), np.asarray(self.ids)[rows]

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k_eff = min(k, self.n)
        if k_eff == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        if self.slots is not None:
            scores, rows = self.slots.search(q, k_eff, None)
            scores, rows = self._fill_short(q, scores, rows, k_eff, None)
        else:
            index = self.gpu_index if self.gpu_index is not None else self.index
            scores, rows = index.search(q, k_eff)
        return scores.astype(np.float32, copy=False), np.asarray(self.ids)[rows]

    def _exact(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed rows (all rows when `mask` is None): the flat index
        with a bitmap selector, or a numpy scan of the mapped vectors (slot indexes)."""
        if self.kind == "flat":
            if mask is None:
                return self.index.search(q, k)
            bits = np.packbits(mask, bitorder="little")  # IDSelectorBitmap's bit order
            selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits))
            found = self.index.search(q, k, params=faiss.SearchParameters(sel=selector))
            del bits  # the selector points into it: keep it alive until here
            return found
        rows = None if mask is None else np.flatnonzero(mask)
        if self.parts is not None:  # score the parts, in content.npy's order
            positions = (
                None if rows is None else np.sort(self.slots.tables["position_of_row"][rows])
            )
            scores, found = slot_exact_rows(self.parts, q, k, positions)
            return scores, self.slots.tables["combo_rows"][found].astype(np.int64)
        return exact_rows(self.vectors, q, k, rows)

    def _fill_short(self, q, scores, rows, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Redo with exact search any query for which the slot search returned fewer than k
        rows (its threshold step stops after `SlotIndex.expand_max` rows)."""
        short = (rows < 0).any(axis=1)
        if short.any():
            exact_scores, exact_found = self._exact(q[short], k, mask)
            scores, rows = scores.copy(), rows.copy()
            scores[short] = exact_scores
            rows[short] = exact_found
        return scores, rows
