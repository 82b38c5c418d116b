"""The slot index: exact top-k over MythraGen's fused [content, genre, artist, style] rows.

The default index above `exact_max` rows (`build_index(..., blocks=4)`). It is built on the
score's structure: score(row) = content(row) . q_content + label(row), and the label score
takes one value per distinct (genre, artist, style) combination (7,101 of them for 81,446
works). A compressed scan over the distinct content vectors proposes candidates, which are
re-scored exactly; the content score of the worst trusted candidate then bounds every row
not proposed, so only the label combinations that can still reach the top k are scored
exactly (see `SlotIndex.search_one`). On disk, beside the version's other files:

    index.faiss    the content index over the distinct content vectors (d / 4 wide)
    slots.npz      the look-up tables (`slot_tables`)
    content.npy    the content blocks in label-combination order, so the rows of one
                   combination are one contiguous slice (scored without gathering)

Every product runs on FAISS's one-thread SIMD kernels (`kernels.py`) straight
from the mapped file: no gathered copy, no BLAS thread pool.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .exact import SlotParts
from .gpu import GPU_MAX_K, gpu_flat
from .kernels import dot_all, dot_rows
from .rowcodes import RowCodes
from .versions import fsync_file

SLOT_LAYOUT = 3  # version of the slot index layout; older slot indexes must be rebuilt
SLOT_PQ_MIN = 4096  # fewer distinct content vectors: exact flat content index


def slot_build(vectors: np.ndarray) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """(content index, its meta params, look-up tables) for fused rows of 4 equal blocks."""
    parts = SlotParts.from_fused(vectors)
    tables = slot_tables_parts(parts)
    groups = tables["content_rows"][tables["content_ptr"][:-1]]
    index, content_index = _content_index(np.ascontiguousarray(parts.content[groups]))
    return index, slot_params(tables, content_index), tables


def slot_params(tables: dict[str, np.ndarray], content_index: str) -> dict[str, Any]:
    return {
        "blocks": 4,
        "slot_layout": SLOT_LAYOUT,
        "content_index": content_index,
        "distinct_content": int(len(tables["content_ptr"]) - 1),
        "label_combinations": int(tables["combo_labels"].shape[0]),
    }


def _content_index(content: np.ndarray) -> tuple[Any, str]:
    """The content part of a slot index: 4-bit product-quantisation fast scan (one 4-bit
    code per 4 dimensions, 48 bytes per 384-d vector) over every distinct content vector;
    search refines its candidates with exact inner products. Below SLOT_PQ_MIN vectors (or
    for dimensions that do not split in fours) an exact flat index.

    Why not HNSW: on the real catalog (70,782 distinct MiniLM content vectors) an HNSW
    (M 32, efConstruction 80-200, efSearch 128-512) found only 85-94% of the true top 50
    by content for title prompts: queries carry no genre term while stored content does,
    so they fall between the graph's clusters. A scan has no such blind spot: 0.995 with
    1,000 refined candidates (0.997 for the final top 50 with 700, the default), in under
    a millisecond, and builds in ~2 s instead of ~50 s.
    """
    n, d = content.shape
    if n < SLOT_PQ_MIN or d % 4:
        index = faiss.IndexFlatIP(d)
        index.add(content)
        return index, "flat"
    m = d // 4
    index = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = content if n <= 65536 else content[np.sort(rng.choice(n, 65536, replace=False))]
    index.train(train)
    index.add(content)
    return index, f"pq{m}x4fs"


def slot_tables(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """The look-up tables of a slot index over fused rows (see `slot_tables_parts`)."""
    return slot_tables_parts(SlotParts.from_fused(vectors))


def slot_tables_parts(parts: SlotParts) -> dict[str, np.ndarray]:
    """The look-up tables of a slot index (see `SlotIndex.search_one`).

    - `inverse` (n, 3) and `u0..u2`: for each label block (genre, artist, style) its
      distinct rows and which one each catalog row holds (a few thousand labels stand for
      81k rows);
    - `combo_labels` (c, 3), `combo_of_row` (n,), `combo_ptr` (c+1,), `combo_rows` (n,):
      the distinct (genre, artist, style) combinations, and the rows of combination i as
      `combo_rows[combo_ptr[i]:combo_ptr[i+1]]`; all rows of one combination share one
      label score, whatever the query;
    - `content_of_row` (n,), `content_ptr`, `content_rows`: the same grouping for identical
      content blocks (the content index holds each distinct content vector once: many
      works share a title such as "Untitled").
    """
    n = parts.n
    inverse = np.ascontiguousarray(parts.label_of_row, dtype=np.int32)
    tables: dict[str, np.ndarray] = {f"u{b}": parts.labels[b] for b in range(3)}
    tables["inverse"] = inverse
    combos, combo_of_row = np.unique(inverse, axis=0, return_inverse=True)
    tables["combo_labels"] = combos.astype(np.int32)
    for name, groups, count in (
        ("combo", combo_of_row.reshape(-1), len(combos)),
        ("content", content_groups(parts.content), None),
    ):
        if count is None:
            count = int(groups.max()) + 1 if n else 0
        order = np.argsort(groups, kind="stable").astype(np.int32)
        ptr = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(groups, minlength=count), out=ptr[1:])
        tables[f"{name}_of_row"] = groups.astype(np.int32)
        tables[f"{name}_ptr"] = ptr
        tables[f"{name}_rows"] = order
    position = np.empty(n, dtype=np.int32)
    position[tables["combo_rows"]] = np.arange(n, dtype=np.int32)
    tables["position_of_row"] = position  # row -> its line in content.npy
    return tables


def content_groups(content: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """For each row, the number of its distinct content vector (first-seen order).

    Rows are hashed chunk by chunk (a random odd multiplier per 64-bit word, summed with
    wrap-around), so a memory-mapped (n, w) block is never copied whole; every row is
    then compared with its group's first row, and a collision (never seen) falls back to
    sorting the rows themselves.
    """
    n, w = content.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    words = (w * content.dtype.itemsize + 7) // 8
    multipliers = np.random.default_rng(0).integers(1, 2**63, words, dtype=np.uint64) | 1
    keys = np.empty(n, dtype=np.uint64)
    for start in range(0, n, chunk):
        block = _row_words(content[start : start + chunk], words)
        with np.errstate(over="ignore"):
            keys[start : start + chunk] = (block * multipliers).sum(axis=1, dtype=np.uint64)
    _uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        leaders = first[inverse[start:stop]]
        if not np.array_equal(np.asarray(content[start:stop]), np.asarray(content[leaders])):
            return _content_groups_sorted(content)  # a hash collision
    return _first_seen_order(first, inverse)


def _row_words(block: np.ndarray, words: int) -> np.ndarray:
    raw = np.ascontiguousarray(block).view(np.uint8).reshape(len(block), -1)
    if raw.shape[1] != words * 8:
        raw = np.pad(raw, ((0, 0), (0, words * 8 - raw.shape[1])))
    return raw.view(np.uint64)


def _first_seen_order(first: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    # Renumber by first appearance so unique content i is row-ordered (stable, readable).
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _content_groups_sorted(content: np.ndarray) -> np.ndarray:
    content = np.ascontiguousarray(content, dtype=np.float32)
    keys = content.view(np.dtype((np.void, content.dtype.itemsize * content.shape[1])))
    _uniq, first, inverse = np.unique(keys.reshape(-1), return_index=True, return_inverse=True)
    return _first_seen_order(first, inverse)


def slot_tables_write(
    folder: Path, tables: dict[str, np.ndarray], content: np.ndarray, chunk: int = 65536
) -> None:
    """slots.npz, and content.npy: the content blocks (`content`, (n, w), may be mapped)
    in combination order, so the rows of one label combination are one contiguous slice
    (scored without gathering). Written chunk by chunk."""
    with open(folder / "slots.npz", "wb") as fh:
        np.savez(fh, **tables)
        fh.flush()
        os.fsync(fh.fileno())
    order = tables["combo_rows"]
    out = np.lib.format.open_memmap(
        folder / "content.npy", mode="w+", dtype=np.float32, shape=(len(order), content.shape[1])
    )
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        sorted_rows = np.sort(rows)  # read a mapped input in order
        block = np.asarray(content[sorted_rows], dtype=np.float32)
        out[start : start + len(rows)] = block[np.searchsorted(sorted_rows, rows)]
    out.flush()
    del out
    fsync_file(folder / "content.npy")


def _expand(ptr: np.ndarray, members: np.ndarray, groups: np.ndarray):
    """Rows of the given groups of a CSR grouping (their positions in it when `members` is
    None), and for each row its position in `groups`."""
    starts, ends = ptr[groups], ptr[groups + 1]
    sizes = (ends - starts).astype(np.int64)
    if len(sizes) and (sizes == 1).all():  # the usual case for content groups
        owner = np.arange(len(groups))
        return (starts, owner) if members is None else (members[starts].astype(np.int64), owner)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(groups)), sizes)
    offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions = starts[owner] + offsets
    if members is None:
        return positions, owner
    return members[positions].astype(np.int64), owner


HOT_HEAD = 2048  # combinations sorted at first by the threshold step (`_best_first`)


def _best_first(combos: np.ndarray, label: np.ndarray, head: int):
    """(the `head` best of `combos` by label, best first; the others unsorted, or None)."""
    if len(combos) <= head:
        return combos[np.argsort(-label[combos], kind="stable")], None
    values = label[combos]
    candidates = _at_least_head(values, head)
    part = candidates[np.argpartition(-values[candidates], head - 1)[:head]]
    rest = np.ones(len(combos), dtype=bool)
    rest[part] = False
    first = combos[part]
    return first[np.argsort(-label[first], kind="stable")], combos[rest]


def _at_least_head(values: np.ndarray, head: int) -> np.ndarray:
    """Positions of `values` that include its `head` largest: for many values, those at or
    above a cut read off an evenly spaced sample (~4 * head of them), so that the selection
    runs over those instead of all (at 10 M rows: 1.2 M label combinations, a 2,048 head);
    every position when the cut keeps too few."""
    n = len(values)
    if n <= 32 * head:
        return np.arange(n)
    step = n // (8 * head)
    sample = values[::step]
    rank = max(1, 4 * head // step)  # of the sample's largest, standing for ~4 * head
    cut = np.partition(sample, len(sample) - rank)[len(sample) - rank]
    above = np.flatnonzero(values >= cut)
    # At least `head` values >= cut: the head-th largest is >= cut, so all of the head are.
    return above if len(above) >= head else np.arange(n)


def _still_reaching(head, pending, label, floor) -> np.ndarray:
    """The combinations of `head` (sorted, best label first) and `pending` (unsorted, all
    lower, or None) whose label exceeds `floor`, best first."""
    head = head[label[head] > floor]
    if pending is None:
        return head
    rest = pending[label[pending] > floor]
    return np.concatenate([head, rest[np.argsort(-label[rest], kind="stable")]])


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_set` (sorted, unique)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


@dataclass
class SlotIndex:
    """A loaded slot index: the content index, the tables and the mapped content blocks."""

    index: Any = field(repr=False)
    tables: dict[str, np.ndarray] = field(repr=False)
    content: np.ndarray = field(repr=False)
    n: int = 0
    d: int = 0
    # Distinct content vectors re-scored exactly after the compressed scan, and how many of
    # the best are trusted as the true top (see `search_one`). On the real catalog (400
    # bench prompts, k 50, one run): 1,000 candidates gave recall@50 0.998, 700 0.997, 600
    # 0.995, 500 0.993; 700 took ~20% less time than 1,000. The compressed kind records
    # its own, by catalog size (`compressed.compressed_refine`).
    refine: int = 700
    content_candidates: int = 200
    # At most this many rows are re-scored by the threshold step of one search. Beyond
    # them, an index with row codes (the compressed kind, `rowcodes.py`) ranks up to
    # `overflow_max` more by code and re-scores the best `overflow_refine` (or 1/64 of
    # them) exactly; one without stops there.
    expand_max: int = 30_000
    overflow_max: int = 4_000_000
    overflow_refine: int = 2000
    row_codes: RowCodes | None = field(default=None, repr=False)
    # On a GPU host: an exact flat index of the distinct content vectors (`attach_gpu`).
    gpu_index: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path, index, n: int, d: int, params: dict) -> SlotIndex:
        """The slot parts of the version folder `path` (`index` is its content index)."""
        if params.get("slot_layout") != SLOT_LAYOUT:
            raise ValueError(
                f"{path}: slot index of an older layout: rebuild it (manage.py build_index)"
            )
        with np.load(path / "slots.npz") as stored:
            tables = {name: np.ascontiguousarray(stored[name]) for name in stored}
        tables["combo_sizes"] = np.diff(tables["combo_ptr"])
        for b in range(3):  # contiguous columns gather faster
            tables[f"combo_label{b}"] = np.ascontiguousarray(tables["combo_labels"][:, b])
        tables["position_of_row"] = tables["position_of_row"].astype(np.int64)
        content = np.load(path / "content.npy", mmap_mode="r")
        if content.shape != (n, d // 4):
            raise ValueError(f"{path}: content.npy disagrees with meta.json")
        if "nprobe" in params:  # the compressed kind's IVF content index
            faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
        # A plain array view of the mapped file: faster indexing.
        row_codes = RowCodes.open(path, n) if params.get("row_codes") else None
        return cls(
            index=index,
            tables=tables,
            content=content.view(np.ndarray),
            n=n,
            d=d,
            refine=int(params.get("refine", cls.refine)),
            row_codes=row_codes,
        )

    def distinct_content(self, chunk: int = 65536):
        """The distinct content vectors in the content index's order, in chunks."""
        t = self.tables
        first = t["position_of_row"][t["content_rows"][t["content_ptr"][:-1]]]
        for start in range(0, len(first), chunk):
            yield np.ascontiguousarray(self.content[first[start : start + chunk]])

    def attach_gpu(self) -> None:
        """Search content on GPU 0: an exact flat copy of the distinct content vectors,
        on the process's shared GPU resources (`gpu.py`). Exact, so step 1 of `search_one`
        needs no compressed scan and its bound is exact."""
        self.gpu_index = gpu_flat(self.d // 4, self.distinct_content())

    def search(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of each query row of `q`, among rows where `mask` (None: all)."""
        results = [self.search_one(row, k, mask) for row in q]
        scores = np.stack([r[0] for r in results]).astype(np.float32)
        rows = np.stack([r[1] for r in results]).astype(np.int64)
        return scores, rows

    def search_one(self, q, k, mask) -> tuple[np.ndarray, np.ndarray]:
        """Slot-decomposed search over fused [content, genre, artist, style] vectors.

        score(row) = content(row) . q_content + label(row), where label(row) is the sum over
        the genre, artist and style blocks of block . q_block. Label blocks take few values,
        so label scores are computed once per distinct (genre, artist, style) combination
        (a few thousand, against 81k rows), and every row of a combination shares one.

        1. The content index (PQ fast scan, re-scored exactly) returns the M best distinct
           content vectors with exact scores; c_M, the M-th best, bounds the content score
           of every row it did not return.
        2. Those rows are scored exactly (content + label of their combination).
        3. Threshold step: a row outside step 1 scores at most c_M + label(row), so only
           combinations with label + c_M > the current k-th best total can still place a
           row in the top k. They are scored exactly, best label first, in batches that
           start small and double (the first few hundred rows usually settle it),
           re-tightening the k-th best after each and stopping at the first combination
           that cannot reach it.

        Exact whenever step 1 returns the true top M by content (ties aside). Returns
        (scores, rows), padded with -inf / -1 (the caller fills short results exactly).
        """
        t = self.tables
        d4 = self.d // 4
        q = np.ascontiguousarray(q, dtype=np.float32)
        qc = q[:d4]
        combo_label = np.zeros(len(t["combo_labels"]), dtype=np.float32)
        for b in range(3):
            qb = q[(b + 1) * d4 : (b + 2) * d4]
            if qb.any():
                combo_label += dot_all(t[f"u{b}"], qb)[t[f"combo_label{b}"]]
        has_content = bool(qc.any())
        if has_content:
            groups, c_scores, bound = self._content_best(qc, k, mask)
            scored, owner = _expand(t["content_ptr"], t["content_rows"], groups)
            totals = c_scores[owner] + combo_label[t["combo_of_row"][scored]]
            if mask is not None:
                keep = mask[scored]
                scored, totals = scored[keep], totals[keep]
        else:
            bound = 0.0  # every row's content part is 0
            scored = np.zeros(0, dtype=np.int64)
            totals = np.zeros(0, dtype=np.float32)
        kth = float(np.partition(totals, -k)[-k]) if len(totals) >= k else -np.inf
        # Threshold step over combinations, best label score first. (Rows that could only
        # tie with the k-th best are not needed: ties may go either way.)
        hot = np.flatnonzero(combo_label > kth - bound) if bound > -np.inf else np.zeros(0, int)
        if len(hot):
            # Sorted lazily: the best HOT_HEAD combinations first (usually all a search
            # needs), the rest only if the loop reaches them (label-only queries on a
            # catalog with 10^5 combinations would otherwise sort them all every time).
            hot, pending = _best_first(hot, combo_label, HOT_HEAD)
            falling = -combo_label[hot]  # ascending
            ends = np.cumsum(t["combo_sizes"][hot])
            # Rows already scored: those of step 1 (combinations never share rows).
            seen = np.sort(scored)
            budget = self.expand_max
            start, batch = 0, 256
            while start < len(hot) or pending is not None:
                if budget <= 0 and (self.row_codes is None or not has_content):
                    break  # (with row codes, the next batch goes to `_overflow`)
                # Combinations that can still beat the k-th best: label > kth - bound.
                cut = int(np.searchsorted(falling, bound - kth, side="left"))
                if start >= len(hot):
                    # The sorted head is spent and its last one could still reach the top
                    # k (else the loop would have stopped): sort the rest, whose labels
                    # are all lower. (Only now: a label-only query has no k-th best yet
                    # when it starts, and its first batch usually ends it.)
                    more, pending = _best_first(pending, combo_label, len(pending))
                    hot = np.concatenate([hot, more])
                    falling = -combo_label[hot]
                    ends = np.cumsum(t["combo_sizes"][hot])
                    continue
                if cut <= start:
                    break
                before = ends[start - 1] if start else 0
                stop = int(np.searchsorted(ends, before + batch, side="left")) + 1
                stop = min(max(stop, start + 1), cut)
                positions, _owner = _expand(t["combo_ptr"], None, hot[start:stop])
                rows = t["combo_rows"][positions]
                keep = ~_member(rows, seen)
                if mask is not None:
                    keep &= mask[rows]
                positions, rows = positions[keep], rows[keep]
                if len(rows) > budget and self.row_codes is not None and has_content:
                    # More rows can still reach the top k than `expand_max`: rank them
                    # all by their row codes instead, and score the best exactly.
                    rest = _still_reaching(hot[start:], pending, combo_label, kth - bound)
                    rows, add = self._overflow(qc, rest, seen, mask, combo_label)
                    scored = np.concatenate([scored, rows])
                    totals = np.concatenate([totals, add])
                    break
                start, batch = stop, batch * 2
                positions, rows = positions[:budget], rows[:budget]
                if not len(rows):
                    continue
                budget -= len(rows)
                add = combo_label[t["combo_of_row"][rows]]
                if has_content:
                    add = add + dot_rows(self.content, qc, positions)
                scored = np.concatenate([scored, rows])
                totals = np.concatenate([totals, add])
                if len(totals) >= k:
                    kth = float(np.partition(totals, -k)[-k])
                    if not has_content:
                        break  # label-only: best combinations first, the rest can only tie
        top = np.argpartition(-totals, k - 1)[:k] if len(totals) > k else np.arange(len(totals))
        top = top[np.argsort(-totals[top], kind="stable")]
        scores = np.full(k, -np.inf, dtype=np.float32)
        out = np.full(k, -1, dtype=np.int64)
        scores[: len(top)] = totals[top]
        out[: len(top)] = scored[top]
        return scores, out

    def _overflow(self, qc, combos, seen, mask, combo_label) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact totals) of the best rows of `combos` (label order), ranked by their
        row codes: the `overflow_refine` best, or 1/64 of them if more, up to
        `overflow_max` rows ranked (the best labels first)."""
        t = self.tables
        ends = np.cumsum(t["combo_sizes"][combos])
        combos = combos[: int(np.searchsorted(ends, self.overflow_max, side="right")) or 1]
        positions, _owner = _expand(t["combo_ptr"], None, combos)
        rows = t["combo_rows"][positions]
        keep = ~_member(rows, seen)
        if mask is not None:
            keep &= mask[rows]
        positions, rows = positions[keep], rows[keep]
        label = combo_label[t["combo_of_row"][rows]]
        count = max(self.overflow_refine, len(rows) // 64)
        best = self.row_codes.best(qc, positions, label, count)
        return rows[best], label[best] + dot_rows(self.content, qc, positions[best])

    def _content_best(self, qc, k, mask) -> tuple[np.ndarray, np.ndarray, float]:
        """Best distinct content vectors for `qc` with exact scores, best first, and the
        bound on the content score of every other row (-inf when all were scored)."""
        t = self.tables
        total = self.index.ntotal
        wanted = max(k, self.content_candidates)
        refine = max(self.refine, wanted)
        if mask is not None:
            # Candidates are filtered after the scan: scan more, by 1 / fraction allowed.
            fraction = max(float(mask.mean()), 1e-6)
            refine = int(math.ceil(refine / fraction))
            wanted = int(math.ceil(wanted / fraction))
        index = self.index
        if self.gpu_index is not None and wanted <= GPU_MAX_K:
            index, refine = self.gpu_index, wanted  # exact: nothing to refine
        refine = min(refine, total)
        _approx, groups = index.search(qc[None, :], refine)
        groups = groups[0][groups[0] >= 0]
        first = t["content_rows"][t["content_ptr"][groups]]
        exact = dot_rows(self.content, qc, t["position_of_row"][first])
        if len(groups) < total:
            best = np.argpartition(-exact, wanted - 1)[:wanted] if len(exact) > wanted else None
            if best is None:
                best = np.arange(len(exact))
            # Fewer than asked for (an IVF index scans only `nprobe` lists): the worst
            # returned is still the bound; with none returned nothing is bounded.
            bound = float(exact[best].min()) if len(best) else np.inf
        else:
            best = np.arange(len(exact))
            bound = -np.inf  # every distinct content vector was scored
        return groups[best], exact[best], bound
