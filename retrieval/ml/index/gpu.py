"""Moving a flat index to a GPU: only on a faiss-gpu build that sees a CUDA device.

`use_gpu` is "auto" (a GPU when there is one), "always" (an error without one) or
"never". Only flat indexes move: the slot index's searches run on FAISS's one-thread CPU
kernels over memory-mapped files. Filtered searches stay on the CPU index (GPU indexes
take no ID selectors).
"""

from __future__ import annotations

from typing import Any

import faiss

GPU_MODES = ("auto", "always", "never")


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
    """Whether a reader moves this index to GPU 0 (raises for "always" without a GPU)."""
    if mode == "always" and gpu_count() == 0:
        raise RuntimeError("use_gpu='always' but this FAISS build sees no GPU")
    return mode != "never" and kind == "flat" and n > 0 and gpu_count() > 0


def to_gpu(index) -> tuple[Any, Any]:
    """(GPU copy of `index` on device 0, its resources: keep them alive as long as it)."""
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), resources
