"""The GPU side of search: only on a faiss-gpu build that sees a CUDA device.

`use_gpu` is "auto" (a GPU when there is one), "always" (an error without one) or
"never". Where a GPU is used, the content search runs there: a flat index moves whole
(`to_gpu`); a slot index keeps its tables and memory-mapped content on the CPU and puts an
exact flat copy of its distinct content vectors on the GPU (`gpu_flat`), which replaces the
compressed scan (exact, so its bound is too). Filtered flat searches stay on the CPU index
(GPU indexes take no ID selectors).

One `StandardGpuResources` per process (`gpu_resources`), created on first use and shared by
every index version the process loads: each one reserves scratch memory and CUDA streams,
so a resource per version would grow with every rebuild the process swaps in.

Installing: faiss-gpu and faiss-cpu are both the module `faiss` and must never share an
environment; `make install GPU=1` installs the `gpu` extra (faiss-gpu-cu12) instead of
faiss-cpu (see the Makefile).
"""

from __future__ import annotations

import threading
from typing import Any

import faiss

GPU_MODES = ("auto", "always", "never")
GPU_KINDS = ("flat", "slots", "compressed")
# FAISS's GPU k-selection handles at most this many results per query (2048 in FAISS
# 1.7-1.15); a larger k is searched on the CPU index.
GPU_MAX_K = 2048

_resources: Any = None
_resources_lock = threading.Lock()


def gpu_count() -> int:
    """CUDA devices this FAISS build can use (0 on faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    if get is None:
        return 0
    try:
        return int(get())
    except Exception:  # a CPU build that exposes the symbol but cannot query CUDA
        return 0


def check_gpu_mode(use_gpu: str) -> str:
    if use_gpu not in GPU_MODES:
        raise ValueError(f"use_gpu must be one of {GPU_MODES}, got {use_gpu!r}")
    if use_gpu == "always" and gpu_count() == 0:
        raise RuntimeError(
            "use_gpu='always' but this FAISS build sees no GPU (faiss-cpu, or no CUDA device)"
        )
    return use_gpu


def wants_gpu(mode: str, kind: str, n: int) -> bool:
    """Whether a reader searches this index's content on GPU 0 (raises for "always"
    without a GPU)."""
    if mode == "always" and gpu_count() == 0:
        raise RuntimeError("use_gpu='always' but this FAISS build sees no GPU")
    return mode != "never" and kind in GPU_KINDS and n > 0 and gpu_count() > 0


def gpu_resources() -> Any:
    """This process's one `StandardGpuResources` (created on first use, then reused)."""
    global _resources
    if _resources is None:
        with _resources_lock:
            if _resources is None:
                _resources = faiss.StandardGpuResources()
    return _resources


def to_gpu(index) -> Any:
    """A copy of `index` on GPU 0, on the process's shared resources."""
    return faiss.index_cpu_to_gpu(gpu_resources(), 0, index)


def gpu_flat(d: int, chunks) -> Any:
    """An exact inner-product index on GPU 0 filled from `chunks` (float32 (m, d) arrays,
    added one at a time, so the host never holds them all at once)."""
    index = faiss.GpuIndexFlatIP(gpu_resources(), d)
    for chunk in chunks:
        index.add(chunk)
    return index
