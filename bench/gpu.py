"""GPU benchmark of the ML paths at real size (random weights): one table, optional JSON.

    python bench/gpu.py [--out FILE.json] [--models DIR] [--clip-cache DIR] [--sections a,b]
    python bench/gpu.py --tiny [--out FILE.json]  # the same code on CPU, tiny models, ~30 s

Sections (each row shows its baseline beside it; each section its time and peak GPU memory,
`torch.cuda.max_memory_allocated` reset between sections; timings synchronise the GPU):

  lora_training  `train_lora` steps/s, 512 px, batch 1, bf16 autocast, rank 32, UNet + text
                 encoder trained, 50 steps: with the latent cache (`cache_dir`, filled by a
                 one-epoch warm-up call that also warms the kernels) against without
                 (`cache_dir=None`: the VAE encodes every step). Optimizer "adamw"
                 (bitsandbytes is not on the GPU machine).
  render         `ArtRenderer.render` (float16 on CUDA), 512 px, 30 DDIM steps, guidance 7.5,
                 s/image (median): no LoRA, after a warm-up render; two LoRAs mixed 0.6/0.4
                 on their first render (loading them included); the same two already in the
                 pipeline (second render). The LoRAs are the two trained above.
  blip2_embed    `Blip2Embedder.embed_images` (bfloat16), images/s, batch 32, 512 px inputs.
  vqa            `GenreVQA.predict` (blip2-opt, bfloat16), 10 genres, images/s, 64 images in
                 chunks of 16 as `labelling.services` sends them.
  faiss          flat inner-product search, k 50, over 81,446 x 1,024 clustered float32
                 vectors through `retrieval.ml.index` (`build_index(kind="flat")`,
                 `LoadedIndex.open(use_gpu=...)`): GPU against CPU, one query per call
                 (ms/query) and 1,024 per call (queries/s). Without a faiss that has GPU
                 support the GPU half says "skipped" and why (JSON: null + notes.gpu_skipped).
                 torch matmul + topk on the device is timed too: a reference, not our path.
                 The slot index (`kind="slots"`, fused rows made from those vectors) with
                 its content search on the GPU (`SlotIndex.attach_gpu`) against the CPU.

Models: `mlcore.real_size.build(role, DIR/role)` (idempotent: a kept --models folder is
reused; default a temporary folder, deleted at the end), sd15 in float32 (the published main
weights, what `train_lora` loads), blip2-itm and blip2-opt in bfloat16; loaded by the
project's own classes. `--tiny` builds the tiny stand-ins (`*/ml/tiny.py`) instead and uses
tiny sizes (64 px, 3-4 steps, 4,000 vectors) on CPU. Only the `ml/` packages are imported,
never Django (checked at the end: exit status 1 if it was, or if a section failed).
Expected on one H100: builds ~1.5-2 min (here, 2 busy cores: sd15 18-28 s, blip2-itm 22 s,
blip2-opt 56 s), the sections 2-3 min.

The GPU machine has Python 3.12, torch 2.11 (CUDA 13), transformers 5.17, huggingface-hub
1.33, peft, accelerate, safetensors, pillow; no diffusers, faiss, bitsandbytes, Django, and
no package registry. Bring (25.3 MiB; the call carries at most 64 MiB with the tree):

    diffusers-0.42.1-py3-none-any.whl                                          6.1 MiB
    faiss_cpu-1.15.1-cp310-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl  18.0 MiB
    bpe_simple_vocab_16e6.txt.gz (CLIP's vocabulary, for real_size.build)       1.3 MiB

Once, here, in the repository root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d .whl \
        diffusers==0.42.1 faiss-cpu==1.15.1
    .venv/bin/python -c "import shutil; from mlcore.real_size import real_clip_vocab as v; \
    shutil.copy(v('/tmp/clip-vocab'), '.whl/')"

Then `run` with carry [".whl"], timeout_s 600, command:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail;
    PYTHONUNBUFFERED=1 python3 bench/gpu.py --models /tmp/mg-models --clip-cache .whl
    --out $OUT/gpu.json 2>&1 | tee $OUT/gpu.log

Compatibility: diffusers 0.42.1 needs huggingface-hub >= 1.32 (1.33 there). `--tiny` passed
here with transformers 5.17.0 + huggingface-hub 1.33.0 + tokenizers 0.23.2 in front of the
venv and bitsandbytes and Django hidden; torch 2.11 (here 2.13 CPU) and peft's version
there are unchecked.

FAISS on the GPU cannot travel: faiss-gpu 1.15.1 is a 129 MiB wheel, faiss-gpu-cu12 1.14.1
46 MiB, and both need the CUDA 12 runtime and cuBLAS 12 wheels (hundreds of MiB), while the
machine has CUDA 13 only. The GPU half runs wherever a faiss with GPU support is importable
(a second call cannot bring one in 64 MiB; build faiss from source there, or run elsewhere).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SECTIONS = ("lora_training", "render", "blip2_embed", "vqa", "faiss")
PROMPT = "a quiet river landscape at dusk, impressionism, oil on canvas"
SIZES = {
    "real": dict(
        device="cuda", examples=8, train_px=512, train_steps=50, render_px=512,
        render_steps=30, repeats=3, first_repeats=2, image_px=512, embed_images=256,
        vqa_images=64, faiss_n=81_446, faiss_d=1024, queries=200, batch=1024, k=50,
    ),
    "tiny": dict(
        device="cpu", examples=4, train_px=64, train_steps=4, render_px=64,
        render_steps=3, repeats=2, first_repeats=2, image_px=64, embed_images=16,
        vqa_images=8, faiss_n=4000, faiss_d=1024, queries=20, batch=64, k=50,
    ),
}  # fmt: skip
REAL_DTYPES = {"sd15": "float32", "blip2-itm": "bfloat16", "blip2-opt": "bfloat16"}


class Bench:
    """Sizes, device, model folders and the figures of one run."""

    def __init__(self, args, work: Path):
        import torch

        self.torch, self.tiny, self.work = torch, args.tiny, work
        self.s = SIZES["tiny" if args.tiny else "real"]
        self.device = self.s["device"]
        self.cuda = self.device == "cuda"
        if self.cuda and not torch.cuda.is_available():
            sys.exit("no CUDA device: use --tiny for the CPU dry run")
        if not self.cuda:  # tiny ops: one thread avoids OpenMP spin-waits on a busy host
            torch.set_num_threads(1)
        self.models_dir = Path(args.models) if args.models else work / "models"
        self.clip_cache = args.clip_cache
        self.build_seconds: dict[str, float] = {}
        self.loras: list[Path] = []
        self.rows: list[tuple] = []

    def timed(self, fn):
        """(seconds, result) of `fn()`, the GPU synchronised before and after."""
        if self.cuda:
            self.torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    def model(self, role: str) -> Path:
        """The folder of `role`, built once: the real-size stand-in, or the tiny one."""
        t0 = time.perf_counter()
        if self.tiny:
            from generation.ml.tiny import build_tiny_sd
            from labelling.ml.tiny import build_tiny_blip2_vqa
            from retrieval.ml.tiny import build_tiny_blip2_retrieval

            builders = {
                "sd15": build_tiny_sd,
                "blip2-itm": build_tiny_blip2_retrieval,
                "blip2-opt": build_tiny_blip2_vqa,
            }
            path = Path(builders[role](self.models_dir / role))
        else:
            from mlcore.real_size import build

            dtype, cache = REAL_DTYPES[role], self.clip_cache
            path = build(role, self.models_dir / role, dtype=dtype, cache_dir=cache)
        self.build_seconds.setdefault(role, round(time.perf_counter() - t0, 2))
        return path

    def images(self, n: int, px: int, seed: int = 0) -> list:
        """`n` synthetic RGB paintings, `px` square: smooth colour fields plus noise."""
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(seed)
        ramp = np.linspace(0.0, 1.0, px, dtype=np.float32)[:, None, None]
        out = []
        for _ in range(n):
            a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            pixels = a + (b - a) * (ramp * ramp.transpose(1, 0, 2)) + rng.normal(0, 12, (px, px, 3))
            out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))
        return out

    def row(self, section, what, value, unit, base=(None, "")):
        """One line of the table; `base` (value, label): its baseline, printed beside it."""
        self.rows.append((section, what, value, unit, *base))


def median(xs) -> float:
    return float(statistics.median(xs))


# ------------------------------------------------------------------------- sections
def train(b: Bench, name: str, steps: int, cache_dir: Path | None):
    """One `train_lora` call at the benchmark's size (a fresh work folder per name)."""
    from generation.ml.lora_config import LoraTrainingConfig, TrainingExample
    from generation.ml.lora_train import train_lora

    captions = ["a landscape, impressionism", "a portrait, baroque", "a still life, cubism"]
    images = b.images(b.s["examples"], b.s["train_px"] + 64, seed=1)
    examples = [TrainingExample(img, captions[i % 3], f"bench-{i}") for i, img in enumerate(images)]
    config = LoraTrainingConfig(
        max_train_steps=steps,
        resolution=b.s["train_px"],
        train_batch_size=1,
        mixed_precision="bf16",
        optimizer="adamw",
        checkpoint_every=10**9,
    )
    out = b.work / "loras" / f"{name}.safetensors"
    return train_lora(
        b.model("sd15"),
        examples,
        out,
        config,
        work_dir=b.work / "train" / name,
        cache_dir=cache_dir,
        device=b.device,
    )


def bench_lora_training(b: Bench):
    cache = b.work / "features"
    warm = train(b, "warmup", b.s["examples"], cache)  # one epoch: fills the latent cache
    cached = train(b, "cached", b.s["train_steps"], cache)
    uncached = train(b, "uncached", b.s["train_steps"], None)
    b.loras = [cached.output_path, uncached.output_path]
    fast, slow = cached.steps_per_second, uncached.steps_per_second
    what = f"steps/s, latent cache, {b.s['train_px']} px"
    b.row("lora_training", what, fast, "/s", (slow, "no cache"))
    figures = {
        "steps_per_s_cached": fast,
        "steps_per_s_uncached": slow,
        "cached_over_uncached": fast / slow,
    }
    return figures, {
        "steps_timed": b.s["train_steps"],
        "precision_used": cached.precision_used,
        "optimizer_used": cached.optimizer_used,
        "cache_hits_timed_run": cached.cache_hits,
        "cache_misses_warmup": warm.cache_misses,
        "call_seconds_with_loading": [round(r.seconds, 2) for r in (warm, cached, uncached)],
    }


def bench_render(b: Bench):
    from generation.ml.render import ArtRenderer

    if not b.loras:  # run without the training section: two 1-step LoRAs to mix
        b.loras = [train(b, f"quick{i}", 1, None).output_path for i in range(2)]
    renderer = ArtRenderer(b.model("sd15"), device=b.device)  # "auto": float16 on CUDA
    px, steps, repeats = b.s["render_px"], b.s["render_steps"], b.s["repeats"]
    kw = dict(seed=0, steps=steps, guidance=7.5, width=px, height=px)
    try:
        load_s, _ = b.timed(renderer.load)
        b.timed(lambda: renderer.render(PROMPT, **kw))  # warm-up
        plain = [b.timed(lambda: renderer.render(PROMPT, **kw))[0] for _ in range(repeats)]
        first, adapter_load = [], []
        for i in range(b.s["first_repeats"]):  # new adapter names: loaded again each time
            loras = [(f"a{i}", b.loras[0], 0.6), (f"b{i}", b.loras[1], 0.4)]
            t, res = b.timed(lambda loras=loras: renderer.render(PROMPT, loras=loras, **kw))
            first.append(t)
            adapter_load.append(round(res.adapter_load_seconds, 3))
        warm = [  # the last two LoRAs, already in the pipeline
            b.timed(lambda: renderer.render(PROMPT, loras=loras, **kw))[0] for _ in range(repeats)
        ]
    finally:
        renderer.unload()
    what = f"s/image, {px} px, {steps} steps"
    b.row("render", f"{what}, no LoRA", median(plain), "s")
    for label, xs in (("first render", first), ("in pipeline", warm)):
        b.row("render", f"{what}, 2 LoRAs {label}", median(xs), "s", (median(plain), "no LoRA"))
    figures = {
        "s_per_image_no_lora": median(plain),
        "s_per_image_loras_first": median(first),
        "s_per_image_loras_warm": median(warm),
    }
    return figures, {
        "precision": renderer.precision,
        "pipeline_load_seconds": round(load_s, 2),
        "adapter_load_seconds": adapter_load,
        "all_seconds": {"plain": plain, "first": first, "warm": warm},
    }


def bench_blip2_embed(b: Bench):
    from retrieval.ml.embedders import Blip2Embedder

    embedder = Blip2Embedder(b.model("blip2-itm"), device=b.device)  # "auto": bf16 on CUDA
    images = b.images(b.s["embed_images"], b.s["image_px"])
    try:
        load_s, _ = b.timed(embedder.load_images)
        b.timed(lambda: embedder.embed_images(images[:32]))  # warm-up
        t, vectors = b.timed(lambda: embedder.embed_images(images))
    finally:
        embedder.unload()
    rate = len(images) / t
    b.row("blip2_embed", f"image embeddings/s, batch 32, {b.s['image_px']} px in", rate, "/s")
    notes = {"precision": embedder.precision, "load_seconds": round(load_s, 2)}
    return {"images_per_s": rate}, {**notes, "shape": list(vectors.shape)}


def bench_vqa(b: Bench):
    from labelling.ml.tiny import WIKIART_GENRE_TEXTS
    from labelling.ml.vqa import GenreVQA

    genres = [g.replace(" ", "_") for g in WIKIART_GENRE_TEXTS]
    vqa = GenreVQA(b.model("blip2-opt"), device=b.device)  # "auto": bf16 on CUDA
    images = b.images(b.s["vqa_images"], b.s["image_px"], seed=2)
    chunks = [images[i : i + 16] for i in range(0, len(images), 16)]  # LABEL_BATCH
    try:
        load_s, _ = b.timed(vqa.load)
        b.timed(lambda: vqa.predict(images[:8], genres))  # warm-up
        t, predictions = b.timed(lambda: [vqa.predict(c, genres) for c in chunks])
    finally:
        vqa.unload()
    rate = len(images) / t
    b.row("vqa", f"genre scoring images/s, {len(genres)} genres", rate, "/s")
    notes = {"precision": vqa.precision, "load_seconds": round(load_s, 2)}
    return {"images_per_s": rate}, {**notes, "genres": len(genres)}


def clustered(n: int, centers, rng):
    """`n` unit vectors around random unit-ish `centers` (noise norm ~0.35 of theirs)."""
    import numpy as np

    d = centers.shape[1]
    noise = rng.standard_normal((n, d), dtype=np.float32) * np.float32(0.35 / np.sqrt(d))
    x = centers[rng.integers(0, len(centers), n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bench_faiss(b: Bench):
    import faiss
    import numpy as np

    from retrieval.ml.index import LoadedIndex, build_index

    n, d, k, m, nb = (b.s[key] for key in ("faiss_n", "faiss_d", "k", "queries", "batch"))
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((270, d), dtype=np.float32) / np.sqrt(d)  # 27 x 10 groups
    vectors, queries = clustered(n, centers, rng), clustered(max(m, nb), centers, rng)
    info = build_index(vectors, np.arange(n), b.work / "index", kind="flat", use_gpu="never")

    def measure(search):
        """(ms per query one at a time, queries/s in one batch of `nb`), after a warm-up."""
        for q in queries[:5]:
            search(q[None])
        one, _ = b.timed(lambda: [search(q[None]) for q in queries[:m]])
        batch, _ = b.timed(lambda: search(queries[:nb]))
        return one / m * 1000, nb / batch

    cpu = LoadedIndex.open(info.path, use_gpu="never")
    _, top_cpu = cpu.search(queries[:m], k)
    fig = {}
    fig["cpu_ms_per_query"], fig["cpu_batch_qps"] = measure(lambda q: cpu.search(q, k))
    notes = {"n": n, "d": d, "k": k, "faiss": faiss.__version__}
    notes["cpu_threads"] = faiss.omp_get_max_threads()
    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        gpu = LoadedIndex.open(info.path, use_gpu="always")
        fig["gpu_ms_per_query"], fig["gpu_batch_qps"] = measure(lambda q: gpu.search(q, k))
        notes["gpu_cpu_top_k_agreement"] = float(np.mean(gpu.search(queries[:m], k)[1] == top_cpu))
    else:
        fig["gpu_ms_per_query"] = fig["gpu_batch_qps"] = None
        gpu_build = hasattr(faiss, "StandardGpuResources")
        notes["gpu_skipped"] = (
            "faiss sees no GPU"
            if gpu_build
            else f"faiss {faiss.__version__} has no GPU support (a faiss-cpu build)"
        )
    fig.update(_slot_gpu_vs_cpu(b, vectors, queries[:m], notes))
    torch = b.torch
    matrix = torch.from_numpy(vectors).to(b.device)

    def torch_search(q):
        scores = torch.from_numpy(np.ascontiguousarray(q)).to(b.device) @ matrix.T
        return scores.topk(k, dim=1).indices.cpu().numpy()

    fig["torch_ms_per_query"], fig["torch_batch_qps"] = measure(torch_search)
    notes["torch_cpu_top_k_agreement"] = float(np.mean(torch_search(queries[:m]) == top_cpu))
    where = "GPU" if b.cuda else "CPU"
    kinds = (("ms", "ms_per_query", "1 query/call"), ("/s", "batch_qps", f"{nb}/call"))
    for unit, key, label in kinds:
        what, cpu_base = f"flat search k={k}, {label}", (fig[f"cpu_{key}"], "FAISS CPU")
        if fig[f"gpu_{key}"] is None:
            b.row("faiss", f"{what}, FAISS GPU: skipped", None, notes["gpu_skipped"])
        else:
            b.row("faiss", f"{what}, FAISS GPU", fig[f"gpu_{key}"], unit, cpu_base)
        b.row("faiss", f"{what}, FAISS CPU", fig[f"cpu_{key}"], unit)
        b.row("faiss", f"{what}, torch on {where} (reference)", fig[f"torch_{key}"], unit, cpu_base)
    slot_what = f"slot index k={k}, 1 query/call"
    if fig["slots_gpu_ms_per_query"] is None:
        b.row("faiss", f"{slot_what}, GPU: skipped", None, notes["gpu_skipped"])
    else:
        base = (fig["slots_cpu_ms_per_query"], "slots CPU")
        b.row("faiss", f"{slot_what}, GPU content", fig["slots_gpu_ms_per_query"], "ms", base)
    b.row("faiss", f"{slot_what}, CPU", fig["slots_cpu_ms_per_query"], "ms")
    return fig, notes


def _slot_gpu_vs_cpu(b: Bench, vectors, queries, notes) -> dict:
    """The served slot index (`kind="slots"`, what search uses above 20,000 artworks) over
    fused rows made from the clustered vectors' first quarter as content (1,119 artists,
    27 styles, 10 genres plus none), CPU against GPU content search, content + style
    prompts, one query per call."""
    import numpy as np

    from retrieval.ml.fusion import query_vector
    from retrieval.ml.index import LoadedIndex, build_index

    rng = np.random.default_rng(4)
    n, w = vectors.shape[0], vectors.shape[1] // 4
    content = vectors[:, :w] / np.linalg.norm(vectors[:, :w], axis=1, keepdims=True)

    def table(m):
        t = rng.standard_normal((m, w)).astype(np.float32)
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    genres = np.vstack([np.zeros((1, w), np.float32), table(10)])
    artists, styles = table(1119), table(27)
    g, a, s = rng.integers(0, 11, n), rng.integers(0, 1119, n), rng.integers(0, 27, n)
    rows = (np.hstack([content, genres[g], artists[a], styles[s]]) / 2).astype(np.float32)
    info = build_index(rows, np.arange(n), b.work / "slots", kind="slots", blocks=4)
    qs = [query_vector(q[:w], style=styles[i % 27], dim=w) for i, q in enumerate(queries)]
    out = {"slots_gpu_ms_per_query": None}
    for device in ("cpu", "gpu") if "gpu_skipped" not in notes else ("cpu",):
        loaded = LoadedIndex.open(info.path, use_gpu="always" if device == "gpu" else "never")
        for q in qs[:5]:
            loaded.search(q[None], 50)
        seconds, _ = b.timed(lambda loaded=loaded: [loaded.search(q[None], 50) for q in qs])
        out[f"slots_{device}_ms_per_query"] = seconds / len(qs) * 1000
        notes[f"slots_{device}_device"] = loaded.device
    return out


# ------------------------------------------------------------------------- driver
def fmt(value, unit) -> str:
    return {"ms": f"{value:.2f} ms", "s": f"{value:.3f} s"}.get(unit, f"{value:,.1f}{unit}")


def print_table(b: Bench, results: dict) -> None:
    print(f"\n{'section':<14} {'measure':<56} {'value':>11}   {'baseline':<22} value/base")
    for section, what, value, unit, base, base_what in b.rows:
        if value is None:
            print(f"{section:<14} {what:<56} {'-':>11}   ({unit})")
            continue
        baseline = f"{fmt(base, unit)} {base_what}" if base is not None else ""
        ratio = f"{value / base:.2f}x" if base else ""
        print(f"{section:<14} {what:<56} {fmt(value, unit):>11}   {baseline:<22} {ratio}")
    for name, res in results.items():
        peak = res["peak_gpu_mib"]
        mem = f"peak GPU memory {peak:,.0f} MiB" if peak is not None else "no GPU memory (CPU)"
        state = f"ERROR {res['error']}" if "error" in res else f"{res['seconds']:.1f} s"
        print(f"{name:<14} {mem:<56} {state}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny stand-ins on CPU (dry run)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--models", help="folder for the model builds (kept and reused)")
    parser.add_argument("--clip-cache", help="folder holding bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    if set(sections) - set(SECTIONS):
        parser.error(f"sections are {', '.join(SECTIONS)}")

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mythragen-gpu-bench-"))
    try:
        from generation.ml._common import quiet_ml_logs

        quiet_ml_logs()
        b = Bench(args, work)
        torch, results = b.torch, {}
        for name in sections:
            print(f"== {name} ({'tiny, ' if b.tiny else ''}{b.device})", flush=True)
            if b.cuda:
                torch.cuda.reset_peak_memory_stats()
            t0, res = time.perf_counter(), {}
            try:
                res["figures"], res["notes"] = globals()[f"bench_{name}"](b)
            except Exception as exc:  # noqa: BLE001 - a failed section keeps the others
                traceback.print_exc()
                res["error"] = f"{type(exc).__name__}: {exc}"[:500]
            res["seconds"] = round(time.perf_counter() - t0, 2)
            res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20 if b.cuda else None
            results[name] = res
            gc.collect()
            if b.cuda:
                torch.cuda.empty_cache()
            print(f"   {res.get('figures', res.get('error'))}", flush=True)
        print_table(b, results)
        django = "django" in sys.modules
        total = time.perf_counter() - started
        print(f"\nbuilds (s): {b.build_seconds}; total {total:.1f} s; django imported: {django}")
        versions = {m: sys.modules[m].__version__ for m in ("torch", "transformers", "diffusers")}
        report = {
            "mode": "tiny" if b.tiny else "real-size",
            "device": torch.cuda.get_device_name(0) if b.cuda else "cpu",
            "versions": {"python": sys.version.split()[0], **versions},
            "sizes": b.s,
            "build_seconds": b.build_seconds,
            "sections": results,
            "total_seconds": round(total, 2),
            "django_imported": django,
        }
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2))
        return 1 if django or any("error" in r for r in results.values()) else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
