"""Row codes: an 8-bit product-quantisation code of every row's content, for the compressed
kind's threshold step when too many rows can still reach the top k.

A content + style prompt on a large catalog lifts every row of one style (37,000 of 1 M
synthetic rows, 370,000 of 10 M); the top 50 is then the 50 best of those by content,
most of them far down the content ranking, where the content index's shortlist does not
reach. Scoring them all exactly reads 1.5 KB a row from `content.npy`; `SlotIndex`
stops after `expand_max` rows. With row codes it ranks the rest by their codes (w / 8
bytes a row, 48 for 384-d content, in `content.npy`'s order), and re-scores the best
exactly: approximate in what it may miss, exact in every score it returns.

    codes.npy   (n, w / 8) uint8, memory-mapped
    codes.pq    the product quantiser (FAISS `ProductQuantizer`, 256 centroids per 8 dims)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .versions import fsync_file

ROW_CODES_MIN = 256 * 39  # rows needed to train 256 centroids a sub-space (FAISS's minimum)
_TRAIN = 65536
_CHUNK = 65536
# Label scores closer than this share one scan (FAISS's scan ranks by content alone).
LABEL_BIN = 0.01


def row_codes_name(width: int) -> str | None:
    """The `row_codes` meta param for content of this width (None: no row codes)."""
    return f"pq{width // 8}x8" if width % 8 == 0 else None


def row_codes_write(folder: Path, report=None) -> None:
    """Train the quantiser on a sample of `folder`'s content.npy and write every row's code."""
    report = report or (lambda fraction: None)
    content = np.load(folder / "content.npy", mmap_mode="r")
    n, w = content.shape
    pq = faiss.ProductQuantizer(w, w // 8, 8)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, min(n, _TRAIN), replace=False))
    pq.train(np.ascontiguousarray(content[sample], dtype=np.float32))
    out = np.lib.format.open_memmap(
        folder / "codes.npy", mode="w+", dtype=np.uint8, shape=(n, pq.code_size)
    )
    for start in range(0, n, _CHUNK):
        block = np.ascontiguousarray(content[start : start + _CHUNK], dtype=np.float32)
        out[start : start + len(block)] = pq.compute_codes(block)
        report(min(1.0, (start + _CHUNK) / n))
    out.flush()
    del out
    fsync_file(folder / "codes.npy")
    faiss.write_ProductQuantizer(pq, str(folder / "codes.pq"))
    fsync_file(folder / "codes.pq")


@dataclass
class RowCodes:
    """The row codes of one loaded version."""

    pq: Any
    codes: np.ndarray  # (n, code_size) uint8, content.npy's order

    @classmethod
    def open(cls, folder: Path, n: int) -> RowCodes:
        codes = np.load(folder / "codes.npy", mmap_mode="r")
        pq = faiss.read_ProductQuantizer(str(folder / "codes.pq"))
        if codes.shape != (n, pq.code_size):
            raise ValueError(f"{folder}: codes.npy disagrees with meta.json")
        return cls(pq=pq, codes=codes.view(np.ndarray))

    def best(
        self, qc: np.ndarray, positions: np.ndarray, label: np.ndarray, count: int
    ) -> np.ndarray:
        """Which of `positions` (rows of content.npy) score best by approximate content
        plus `label` (each row's label score): indexes into `positions`, at most `count`.

        `label` must be non-increasing (rows in the threshold step's combination order).
        FAISS's scan keeps the best `count` by content alone, so rows are scanned in runs
        whose labels lie within `LABEL_BIN` of each other, and each run's best compete on
        content + label.
        """
        m = len(positions)
        if m <= count:
            return np.arange(m)
        q = np.ascontiguousarray(qc, dtype=np.float32)
        bins = np.floor(label / LABEL_BIN).astype(np.int64)
        edges = np.flatnonzero(np.diff(bins)) + 1
        starts = np.concatenate([[0], edges])
        stops = np.concatenate([edges, [m]])
        found, scores = [], []
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            take = min(count, stop - start)
            codes = np.ascontiguousarray(self.codes[positions[start:stop]])
            values = np.empty(take, dtype=np.float32)
            slots = np.empty(take, dtype=np.int64)
            heap = faiss.float_minheap_array_t()
            heap.nh, heap.k = 1, take
            heap.val, heap.ids = faiss.swig_ptr(values), faiss.swig_ptr(slots)
            self.pq.search_ip(faiss.swig_ptr(q), 1, faiss.swig_ptr(codes), stop - start, heap)
            keep = slots >= 0
            found.append(slots[keep] + start)
            scores.append(values[keep] + label[slots[keep] + start])
        found_all, scores_all = np.concatenate(found), np.concatenate(scores)
        if len(found_all) > count:
            found_all = found_all[np.argpartition(-scores_all, count - 1)[:count]]
        return found_all
