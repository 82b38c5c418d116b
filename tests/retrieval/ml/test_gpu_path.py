"""The GPU path on a CPU machine: FAISS's GPU detection and GPU classes are faked, so the
choice (GPU only where one is present), the single resource per process and the results
of a GPU content search are checked without CUDA. The real GPU twin is
`test_index.py::test_gpu_flat_search_matches_cpu` (skipped without faiss-gpu and a device).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import faiss
import numpy as np
import pytest

from retrieval.ml.index import IndexStore, LoadedIndex, build_index, exact_search
from retrieval.ml.index import gpu as gpu_module

from .test_index import _fused_catalog, _slot_queries

ROOT = Path(__file__).resolve().parents[3]


class FakeGpu:
    """Stands in for faiss-gpu: counts resources; the 'GPU' indexes are CPU copies."""

    def __init__(self, monkeypatch, gpus: int):
        self.resources_made = 0
        self.flat_indexes: list = []
        monkeypatch.setattr(gpu_module, "_resources", None)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: gpus, raising=False)
        monkeypatch.setattr(faiss, "StandardGpuResources", self._resources, raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatIP", self._flat, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", self._to_gpu, raising=False)

    def _resources(self):
        self.resources_made += 1
        return object()

    def _flat(self, resources, d):
        assert resources is gpu_module._resources  # always the shared one
        index = faiss.IndexFlatIP(d)
        self.flat_indexes.append(index)
        return index

    def _to_gpu(self, resources, device, index):
        assert resources is gpu_module._resources and device == 0
        return faiss.clone_index(index)


@pytest.fixture(scope="module")
def catalog():
    rows, parts = _fused_catalog(3000, 16, seed=7)
    return rows, np.arange(len(rows), dtype=np.int64) + 1, _slot_queries(parts, seed=8)


def test_no_gpu_means_cpu_search_and_no_gpu_resources(monkeypatch, tmp_path, catalog):
    fake = FakeGpu(monkeypatch, gpus=0)
    rows, ids, _ = catalog
    info = build_index(rows, ids, tmp_path, kind="slots", blocks=4)
    assert info.kind == "slots"
    loaded = LoadedIndex.open(info.path)
    assert loaded.device == "cpu" and loaded.slots.gpu_index is None
    assert loaded.meta["gpu"]["search_device"] == "cpu"
    assert fake.resources_made == 0
    with pytest.raises(RuntimeError, match="no GPU"):
        LoadedIndex.open(info.path, use_gpu="always")


def test_gpu_content_search_is_chosen_when_present_and_shares_one_resource(
    monkeypatch, tmp_path, catalog
):
    fake = FakeGpu(monkeypatch, gpus=1)
    rows, ids, queries = catalog
    store = IndexStore(tmp_path, check_interval=0)
    first = build_index(rows, ids, tmp_path, kind="slots", blocks=4)
    assert first.kind == "slots"
    loaded = store.current()
    assert loaded.device == "cuda:0" and loaded.meta["gpu"]["search_device"] == "cuda:0"
    gpu_content = loaded.slots.gpu_index
    assert gpu_content is fake.flat_indexes[0]
    assert gpu_content.ntotal == loaded.meta["params"]["distinct_content"]
    k = 20
    want, _ = exact_search(rows, ids, queries, k)
    scores, found = loaded.search(queries, k)
    np.testing.assert_allclose(scores, want, atol=1e-5)  # exact, as on the CPU
    true = np.einsum("qkd,qd->qk", rows[found - 1], queries)
    np.testing.assert_allclose(scores, true, atol=1e-5)

    # A new version (and a flat one) swapped in by the same process: same resource.
    second = build_index(rows[::-1].copy(), ids, tmp_path, kind="slots", blocks=4)
    assert store.current().version == second.version and len(fake.flat_indexes) == 2
    flat_root = tmp_path / "flat"
    flat = LoadedIndex.open(build_index(rows[:500], ids[:500], flat_root, kind="flat").path)
    assert flat.device == "cuda:0" and flat.gpu_index is not None
    assert fake.resources_made == 1
    _, flat_found = flat.search(queries[:5], 5)
    np.testing.assert_array_equal(
        flat_found, exact_search(rows[:500], ids[:500], queries[:5], 5)[1]
    )

    # "never" keeps a GPU host's reader on the CPU.
    cpu = LoadedIndex.open(second.path, use_gpu="never")
    assert cpu.device == "cpu" and cpu.slots.gpu_index is None


def test_a_large_k_searches_the_cpu_content_index(monkeypatch, tmp_path, catalog):
    FakeGpu(monkeypatch, gpus=1)
    rows, ids, queries = catalog
    loaded = LoadedIndex.open(build_index(rows, ids, tmp_path, kind="slots", blocks=4).path)
    calls = []
    real = loaded.slots.gpu_index.search
    monkeypatch.setattr(loaded.slots.gpu_index, "search", lambda *a: calls.append(a[1]) or real(*a))
    loaded.slots.content_candidates = gpu_module.GPU_MAX_K + 1
    loaded.search(queries[:2], 10)
    assert calls == []  # past FAISS's GPU k limit: the CPU index answered


def test_install_extras_bring_exactly_one_faiss():
    """`ml` (CPU) and `gpu` (CUDA hosts, `make install GPU=1`) each bring one FAISS build."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def faiss_of(extra):
        return sorted(r.split("==")[0] for r in extras[extra] if r.startswith("faiss"))

    assert faiss_of("ml") == ["faiss-cpu"] and faiss_of("gpu") == ["faiss-gpu"]
    assert not any(r.startswith("faiss") for r in extras["ml-common"])
    assert "mythragen[ml-common]" in extras["ml"] and "mythragen[ml-common]" in extras["gpu"]
    makefile = (ROOT / "Makefile").read_text()
    assert "ML_EXTRA := $(if $(GPU),gpu,ml)" in makefile
    assert "pip uninstall -q -y $(if $(GPU),faiss-cpu," in makefile
