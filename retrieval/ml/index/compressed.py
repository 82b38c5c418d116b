"""The compressed slot index: catalogs too large for fused float32 rows in memory.

The slot index (`slots.py`) keeps a float32 copy of every fused row (`vectors.npy`, 4 w
floats a row) for its exact paths, and scans every distinct content vector per query. At
ten million rows of 1,536-d fused vectors that is 61 GB, and a full fast scan is ~500 MB
of codes per query. The "compressed" kind keeps the same tables and search
(`SlotIndex.search_one`) but:

- in memory, content is an IVF index of 4-bit PQ fast-scan codes (w / 8 bytes a distinct
  content vector; `nprobe` of its lists scanned per query) over the distinct content
  vectors; the shortlist it proposes is re-scored exactly from `content.npy` (float32,
  memory-mapped from disk: only the pages read stay in the page cache);
- label slots are look-up tables (`slots.npz`), so no fused row is stored at all: exact
  and filtered paths score rows from their parts (`exact.slot_exact_rows`), and a fused
  vector is put together on demand (`LoadedIndex.vectors_of`);
- when the threshold step finds more rows able to reach the top k than it scores exactly
  (`SlotIndex.expand_max`), it ranks the rest by 8-bit codes of each row's content
  (`rowcodes.py`, `codes.npy`: w / 8 bytes a row) and re-scores the best exactly;
- it is built from `SlotParts` (content may be a memory map) chunk by chunk, so the build
  never holds the fused matrix either.

`build_index` picks it above `compressed_min` rows (`COMPRESSED_MIN`) for fused vectors.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from .exact import SlotParts
from .rowcodes import ROW_CODES_MIN, row_codes_name
from .slots import SlotIndex, slot_params, slot_tables_parts

COMPRESSED_MIN = 500_000  # rows above which `build_index(kind="auto", blocks=4)` picks it
# Lists scanned per query. Chosen on clustered synthetic catalogs of 1 M rows
# (bench/scale.py): see the README's sizing table for the recall it gave.
DEFAULT_NPROBE = 48
_TRAIN_PER_LIST = 40  # k-means training points per list (FAISS warns below 39)
_ADD_CHUNK = 65536


def compressed_refine(distinct: int) -> int:
    """Candidates re-scored exactly after the IVF scan: one per 3,000 distinct content
    vectors, 1,500 to 6,000. The 4-bit codes rank close neighbours loosely, and a larger
    catalog packs more of them near a query. Measured on bench/scale.py's catalogs (k 50,
    content prompts, nprobe 48): at 1 M rows recall@50 0.973 with 700, 0.985 with 1,500;
    at 10 M 0.849 with 700, 0.968 with 1,500, 0.998 with 3,000 (p50 2.3 ms)."""
    return int(min(6000, max(1500, distinct // 3000)))


def ivf_lists(distinct: int) -> int:
    """Number of IVF lists: a power of two near 2 * sqrt(distinct), 16 to 16,384."""
    target = 2 * math.sqrt(max(distinct, 1))
    return int(min(16384, max(16, 2 ** round(math.log2(target)))))


def compressed_build(
    parts: SlotParts, *, nprobe: int = DEFAULT_NPROBE, report=None
) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """(content index, its meta params, look-up tables) of the compressed kind."""
    report = report or (lambda fraction: None)
    w = parts.width
    if w % 4:
        raise ValueError(f"the compressed index needs a content width divisible by 4, got {w}")
    tables = slot_tables_parts(parts)
    report(0.2)
    first = np.sort(tables["content_rows"][tables["content_ptr"][:-1]].astype(np.int64))
    # Distinct content vectors in group order: group g's first row is the g-th smallest
    # first row (groups are numbered by first appearance), so `first` is in group order.
    distinct = len(first)
    nlist = min(ivf_lists(distinct), max(1, distinct // _TRAIN_PER_LIST))
    quantizer = faiss.IndexFlatIP(w)
    index = faiss.IndexIVFPQFastScan(quantizer, w, nlist, w // 4, 4, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample_size = min(distinct, max(65536, _TRAIN_PER_LIST * nlist))
    sample = np.sort(rng.choice(distinct, sample_size, replace=False))
    index.train(np.ascontiguousarray(parts.content[first[sample]], dtype=np.float32))
    report(0.5)
    for start in range(0, distinct, _ADD_CHUNK):
        rows = first[start : start + _ADD_CHUNK]
        index.add(np.ascontiguousarray(parts.content[rows], dtype=np.float32))
        report(0.5 + 0.5 * min(1.0, (start + _ADD_CHUNK) / distinct))
    index.nprobe = min(nprobe, nlist)
    params = slot_params(tables, f"ivf{nlist},pq{w // 4}x4fs")
    params.update({"nlist": nlist, "nprobe": int(index.nprobe), "vectors": "parts"})
    params["refine"] = compressed_refine(distinct)
    if parts.n >= ROW_CODES_MIN and row_codes_name(w):
        params["row_codes"] = row_codes_name(w)  # written beside content.npy (build.py)
    return index, params, tables


def loaded_parts(slots: SlotIndex) -> SlotParts:
    """The parts of a loaded slot index in `content.npy`'s order (position i is the row
    `combo_rows[i]`): content memory-mapped, labels from the tables."""
    t = slots.tables
    return SlotParts(
        content=slots.content,
        labels=(t["u0"], t["u1"], t["u2"]),
        label_of_row=np.ascontiguousarray(t["inverse"][t["combo_rows"]]),
    )
