"""Memory budget of every deployment role at real size, measured on this CPU (issue #13).

Each role runs in a fresh Python process, through the project's own code (the services a
web process or worker calls), on the real-size stand-ins that
`python manage.py build_real_size_models DIR` writes (published configurations, random
weights). Each row prints the load time, the work done, and memory three ways:

* private: anonymous memory only this process holds (`RssAnon`): weights converted to
  another precision, activations, optimizer state. Two processes pay it twice.
* file-backed: resident pages of memory-mapped weight files (`RssFile`), shared through
  the page cache by every process on the host that maps the same files.
* peak RSS: the most resident at any moment (`VmHWM`, both kinds).

The BLIP-2 web row has its baseline beside it: the same process as it was before this
layer (`embedder_get()` loaded both halves, in float32, the only precision there was), so
the saving is read off one run.

    .venv/bin/python bench/models.py --models /path/to/real-size        # every role
    .venv/bin/python bench/models.py --models DIR --role web-blip2 --json  # one role

`make test-real-size` runs each role through the same functions and asserts the bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GB = 1024**3
# The targets of issue #13 (bytes), checked by `make test-real-size`.
TARGETS = {
    "web-blip2": ("private", 1 * GB),
    "labelling": ("peak_rss", 9 * GB),
    "train-512": ("peak_rss", 12 * GB),
}
ROLES = ("web-minilm", "web-blip2", "web-blip2-both", "labelling", "train-512", "render-512")


def _memory() -> dict:
    from mlcore.memory import memory_report

    return memory_report().__dict__.copy()


def _django(models: Path, **env: str) -> None:
    """Set up Django as a web process or worker would, with the real-size models."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "MYTHRAGEN_DEVICE": "cpu",
            "MYTHRAGEN_BLIP2_RETRIEVAL_MODEL": str(models / "blip2-itm"),
            "MYTHRAGEN_VQA_MODEL": str(models / "blip2-opt"),
            **env,
        }
    )
    import django

    django.setup()


def _safetensors_bytes(folder: Path, prefix: str) -> int:
    """Bytes of the tensors whose names start with `prefix` in a folder's safetensors."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                if name.startswith(prefix):
                    s = fh.get_slice(name)
                    n = 1
                    for d in s.get_shape():
                        n *= d
                    total += n * {"F32": 4, "BF16": 2, "F16": 2}.get(s.get_dtype(), 4)
    return total


def _image(size: int = 512):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------ roles
def role_web_minilm(models: Path) -> dict:
    _django(models, MYTHRAGEN_EMBEDDER="minilm")
    from retrieval import services

    t0 = time.perf_counter()
    embedder = services.embedder_get()
    load = time.perf_counter() - t0
    loaded = _memory()
    vector = embedder.embed_texts(["a harbour at dawn, impressionism"])
    return {
        "load_s": load,
        "after_load": loaded,
        "after_work": _memory(),
        "work": f"one prompt -> {vector.shape[1]}-d float32",
        "checks": {"shape": list(vector.shape), "dtype": str(vector.dtype)},
    }


def _web_blip2(models: Path, *, images: bool) -> dict:
    # The baseline is what a web process did before: both halves, in float32 (the only
    # precision there was), converted from the checkpoint's bfloat16 into private memory.
    precision = "float32" if images else "bfloat16"
    _django(models, MYTHRAGEN_EMBEDDER="blip2", MYTHRAGEN_PRECISION=precision)
    from retrieval import services

    t0 = time.perf_counter()
    embedder = services.embedder_get()  # what a web process does
    if images:
        embedder.load_images()  # the baseline: both halves, as before
    load = time.perf_counter() - t0
    loaded = _memory()
    vector = embedder.embed_texts(["a harbour at dawn, impressionism"])
    work = _memory()
    vision_bytes = _safetensors_bytes(models / "blip2-itm", "vision_model.")
    dtypes = {str(p.dtype) for p in embedder._text_model.parameters()}
    return {
        "load_s": load,
        "after_load": loaded,
        "after_work": work,
        "work": "one prompt -> 256-d"
        + (" (before: both halves, float32)" if images else " (text half, bfloat16)"),
        "checks": {
            "shape": list(vector.shape),
            "text_dtypes": sorted(dtypes),
            "vision_loaded": embedder.vision_loaded,
            "vision_checkpoint_bytes": vision_bytes,
            # Weights are read in place (bf16 on disk, bf16 loaded): if the vision tower
            # had been read, its bytes would be resident as file-backed pages.
            "vision_untouched": (not embedder.vision_loaded)
            and work["file_backed"] < vision_bytes / 2,
        },
    }


def role_web_blip2(models: Path) -> dict:
    return _web_blip2(models, images=False)


def role_web_blip2_both(models: Path) -> dict:
    return _web_blip2(models, images=True)


def role_labelling(models: Path) -> dict:
    _django(models, MYTHRAGEN_PRECISION="bfloat16")
    from labelling import services

    t0 = time.perf_counter()
    captioner = services.captioner_get()
    vqa = services.vqa_get()
    load = time.perf_counter() - t0
    loaded = _memory()
    image = _image(256)
    t1 = time.perf_counter()
    caption = captioner.caption([image], max_new_tokens=4)
    genres = ["portrait", "landscape", "still life", "abstract painting", "cityscape"]
    scores = vqa.score([image], genres)
    work_s = time.perf_counter() - t1
    model = captioner._shared.model
    return {
        "load_s": load,
        "after_load": loaded,
        "after_work": _memory(),
        "work": f"1 caption (4 tokens) + {len(genres)} genres scored in {work_s:.1f} s",
        "checks": {
            "one_copy": model is vqa._shared.model,
            "dtype": str(next(model.parameters()).dtype),
            "scores_shape": list(scores.shape),
            "caption_type": type(caption[0]).__name__,
            "params": sum(p.numel() for p in model.parameters()),
        },
    }


def role_train_512(models: Path) -> dict:
    import tempfile

    from generation.ml.lora_config import LoraTrainingConfig, TrainingExample
    from generation.ml.lora_files import read_lora_metadata
    from generation.ml.lora_train import train_lora

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    image_path = work / "a.png"
    _image(512).save(image_path)
    config = LoraTrainingConfig(max_train_steps=1, resolution=512, checkpoint_every=1000)
    t0 = time.perf_counter()
    result = train_lora(
        models / "sd15",
        [TrainingExample(str(image_path), "a painting of a harbour", "ex-0")],
        work / "lora.safetensors",
        config,
        work_dir=work / "work",
        cache_dir=work / "cache",
        device="cpu",
    )
    total = time.perf_counter() - t0
    meta = read_lora_metadata(result.output_path)
    return {
        "load_s": total - result.loop_seconds,
        "after_load": None,
        "after_work": _memory(),
        "work": f"1 step at 512 px in {result.loop_seconds:.1f} s ({result.optimizer_used}, "
        f"{result.precision_used})",
        "checks": {
            "steps": result.steps,
            "loss_finite": result.final_loss == result.final_loss,
            "alpha": meta["adapter_metadata"]["unet.lora_alpha"],
            "rank": meta["adapter_metadata"]["unet.r"],
            "lora_bytes": result.output_path.stat().st_size,
            "lora_path": str(result.output_path),
        },
    }


def role_render_512(models: Path, steps: int = 2) -> dict:
    """A 512 px render; with BENCH_LORAS=path1,path2 the two LoRAs are mixed (0.6 / 0.4)."""
    from generation.ml.render import ArtRenderer

    paths = [p for p in os.environ.get("BENCH_LORAS", "").split(",") if p]
    loras = [(f"lora{i}", p, w) for i, (p, w) in enumerate(zip(paths, (0.6, 0.4), strict=False))]
    renderer = ArtRenderer(models / "sd15", device="cpu", precision="float32")
    t0 = time.perf_counter()
    renderer.load()
    load = time.perf_counter() - t0
    loaded = _memory()
    result = renderer.render(
        "a harbour at dawn", seed=1, steps=steps, guidance=7.5, width=512, height=512, loras=loras
    )
    unet = renderer.pipe.unet
    alphas = {n: unet.peft_config[n].lora_alpha for n, _ in result.adapters}
    mixed = f", {len(loras)} LoRAs mixed" if loras else ""
    return {
        "load_s": load,
        "after_load": loaded,
        "after_work": _memory(),
        "work": f"{steps} guided steps at 512 px in {result.seconds:.1f} s{mixed}",
        "checks": {
            "size": list(result.image.size),
            "unet_dtype": str(unet.dtype),
            "adapters": result.adapters,
            "alphas": alphas,
        },
    }


RUNNERS = {
    "web-minilm": role_web_minilm,
    "web-blip2": role_web_blip2,
    "web-blip2-both": role_web_blip2_both,
    "labelling": role_labelling,
    "train-512": role_train_512,
    "render-512": role_render_512,
}


# ------------------------------------------------------------------------------ driver
def run_role(role: str, models: Path, timeout: float = 1800) -> dict:
    """Run one role in a fresh interpreter and return its measurements (JSON)."""
    out = subprocess.run(
        [sys.executable, __file__, "--models", str(models), "--role", role, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )
    if out.returncode != 0:
        raise RuntimeError(f"role {role} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = result.get("wall_s", 0)
    return result


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / GB:.2f}"


def table(results: dict[str, dict]) -> str:
    lines = [
        "| role | load s | work | private GB | file-backed GB | peak RSS GB | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for role, r in results.items():
        mem = r["after_work"]
        target = TARGETS.get(role)
        verdict = ""
        if target:
            key, bound = target
            ok = mem[key] <= bound
            verdict = f"{key} <= {bound / GB:.0f} GB: {'met' if ok else 'MISSED'}"
        lines.append(
            f"| {role} | {r['load_s']:.1f} | {r['work']} | {_gb(mem['private'])} | "
            f"{_gb(mem['file_backed'])} | {_gb(mem['peak_rss'])} | {verdict} |"
        )
    if "web-blip2" in results and "web-blip2-both" in results:
        a = results["web-blip2"]["after_work"]["rss"]
        b = results["web-blip2-both"]["after_work"]["rss"]
        lines.append(f"\nweb BLIP-2 RSS, text half only vs both halves: {b / max(a, 1):.1f}x less")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="build_real_size_models DIR")
    parser.add_argument("--role", choices=ROLES, action="append", help="default: every role")
    parser.add_argument("--json", action="store_true", help="one role: print its JSON only")
    args = parser.parse_args()
    models = args.models.resolve()
    if args.json:
        if not args.role or len(args.role) != 1:
            parser.error("--json runs exactly one --role")
        t0 = time.perf_counter()
        result = RUNNERS[args.role[0]](models)
        result["wall_s"] = time.perf_counter() - t0
        print(json.dumps(result, default=str))
        return
    results = {}
    for role in args.role or ROLES:
        print(f"running {role} in a fresh process ...", flush=True)
        results[role] = run_role(role, models)
        print(f"  {json.dumps(results[role]['checks'], default=str)}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
