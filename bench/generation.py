"""Generation on the tiny SD 1.5 twin, CPU, one thread: the two figures of issue 5, side by side.

    .venv/bin/python bench/generation.py [--train-steps 60] [--train-resolution 256]
                                         [--size 512] [--steps 25] [--repeats 3]
                                         [--render-repeats 5] [--skip-training]

1. LoRA training steps per second with the latent/text-embedding cache versus without it
   (`cache_dir=None`: the VAE encodes every example every step, as the diffusers script
   does), for the paper's setting (UNet + text encoder trained: only latents can be
   cached) and with a frozen text encoder (latents and text embeddings cached). "cold" is
   a fresh cache (each example encoded once, in the first epoch); "warm" is a cache that an
   earlier LoRA sharing the artworks filled. Target: with/without >= 1.3x.
2. Time to image on a LoRA-cache hit versus a plain render without LoRA. The hit is the
   whole service path a request takes once its LoRAs are cached (retrieval of the two
   sets, cache lookup, loading the two LoRAs into the worker's pipeline unless they are
   already there, mixing, rendering, PNG with provenance, database writes), measured in
   process with the Celery chain run eagerly (no queue wait). "first hit" loads the LoRA
   files; "warm hit" finds them already in the worker's pipeline (its steady state).
   The plain render is the same pipeline, prompt and settings with no LoRA, PNG written.
   Target: hit / plain <= 1.2x.

Everything lives under var/bench-generation (a fresh SQLite database, the synthetic demo
catalog, its MiniLM index, the tiny models). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "bench-generation"
PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"
sys.path.insert(0, str(ROOT))


def _setup_environment(args) -> None:
    os.environ.update(
        {
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"sqlite:///{WORK / 'db.sqlite3'}",
            "MEDIA_ROOT": str(WORK / "media"),
            "MYTHRAGEN_INDEX_DIR": str(WORK / "index"),
            "MYTHRAGEN_EMBEDDER": "minilm",
            "MYTHRAGEN_LORA_DIR": str(WORK / "loras"),
            "MYTHRAGEN_SD_MODEL": str(WORK / "models" / "tiny-sd15"),
            "MYTHRAGEN_CLIP_MODEL": str(WORK / "models" / "tiny-clip"),
            "MYTHRAGEN_DEVICE": "cpu",
            "MYTHRAGEN_PRECISION": "float32",
            "MYTHRAGEN_LORA_CACHE_BUDGET_MB": "0",
            "MYTHRAGEN_TUNING": json.dumps(
                {
                    "LORA_STEPS": 30,
                    "LORA_RESOLUTION": 64,
                    "LORA_OPTIMIZER": "adamw",
                    "CELERY_TASK_ALWAYS_EAGER": True,
                }
            ),
            "LOG_LEVEL": "WARNING",
        }
    )


def _examples(n: int):
    """`n` synthetic paintings (the demo catalog's drawing code) as training examples."""
    from catalog.demo import draw_painting
    from generation.ml.lora_config import TrainingExample

    styles = ["Impressionism", "Cubism", "Ukiyo_e", "Pop_Art"]
    genres = ["landscape", "portrait", "still_life", "cityscape"]
    return [
        TrainingExample(
            draw_painting(styles[i % 4], genres[i % 4], seed=i),
            f"a {genres[i % 4].replace('_', ' ')}, {styles[i % 4].replace('_', ' ')}",
            f"bench-{i}",
        )
        for i in range(n)
    ]


def bench_training(sd: Path, args) -> list[dict]:
    from generation.ml.lora_config import LoraTrainingConfig
    from generation.ml.lora_train import train_lora

    examples = _examples(8)
    rows = []
    for label, train_te in (
        ("UNet + text encoder (paper)", True),
        ("UNet, frozen text enc.", False),
    ):
        config = LoraTrainingConfig(
            max_train_steps=args.train_steps,
            resolution=args.train_resolution,
            train_text_encoder=train_te,
            optimizer="adamw",
            mixed_precision="no",
            checkpoint_every=10**6,
        )
        figures = {"setting": label}
        for mode in ("without", "cold", "warm"):
            rates = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(dir=WORK) as tmp:
                    tmp = Path(tmp)
                    cache = None if mode == "without" else tmp / "features"
                    if mode == "warm":  # another LoRA with these artworks filled the cache
                        warm = LoraTrainingConfig.from_dict(
                            {**config.to_dict(), "max_train_steps": 1}
                        )
                        for i in range(len(examples)):
                            train_lora(
                                sd,
                                [examples[i]],
                                tmp / "w.safetensors",
                                warm,
                                work_dir=tmp / f"w{i}",
                                cache_dir=cache,
                            )
                    result = train_lora(
                        sd,
                        examples,
                        tmp / "lora.safetensors",
                        config,
                        work_dir=tmp / "work",
                        cache_dir=cache,
                    )
                    rates.append(result.steps_per_second)
            figures[mode] = statistics.median(rates)
        rows.append(figures)
    return rows


def _prepare_django(args) -> None:
    from django.core.management import call_command

    db = WORK / "db.sqlite3"
    if db.exists():
        db.unlink()
    for folder in ("media", "index", "loras", "demo"):
        shutil.rmtree(WORK / folder, ignore_errors=True)
    call_command("migrate", verbosity=0)
    call_command("make_demo_catalog", str(WORK / "demo"), stdout=io.StringIO())
    call_command("import_wikiart", str(WORK / "demo"), "--no-progress", stdout=io.StringIO())
    from retrieval import services as retrieval

    retrieval.index_rebuild()


def bench_time_to_image(args) -> dict:
    import torch
    from django.conf import settings

    from generation import services
    from generation.ml.provenance import write_png
    from generation.services import rendering

    torch.set_num_threads(1)
    _prepare_django(args)
    params = {"seed": 5, "steps": args.steps, "width": args.size, "height": args.size}

    def request():
        generation = services.generation_request(
            None, services.GenerationParams(prompt=PROMPT, with_baseline=False, **params)
        )
        generation.refresh_from_db()
        assert generation.job.status == "succeeded", generation.job.error
        return generation

    # Train both LoRAs once (not timed): a first request with small images.
    services.generation_request(
        None,
        services.GenerationParams(
            prompt=PROMPT, seed=1, steps=2, width=64, height=64, with_baseline=False
        ),
    )
    renderer = rendering.renderer_get()
    renderer.pipe.unload_lora_weights()  # the next hit loads its LoRAs from the cache files
    renderer._adapters.clear()  # noqa: SLF001 - start from a worker that holds no LoRA

    def plain():
        started = time.perf_counter()
        result = renderer.render(PROMPT, loras=[], guidance=7.5, **params)
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            write_png(result.image, Path(tmp) / "plain.png", {"prompt": PROMPT, **params})
        return time.perf_counter() - started

    plain()  # warm-up: the pipeline is loaded and has run once at this size
    timed, loads = [], []
    started = time.perf_counter()
    first = request()
    first_hit = time.perf_counter() - started
    first_render = first.job.result["seconds"]
    first_load = first.job.result["adapter_load_seconds"]
    plains = []
    for _ in range(
        args.render_repeats
    ):  # interleaved, so load from other processes hits both alike
        plains.append(plain())
        started = time.perf_counter()
        hit = request()
        timed.append(time.perf_counter() - started)
        loads.append(hit.job.result["seconds"])
    assert first.lora_artist_style.uses >= 1 and settings.SD_MODEL
    return {
        "plain": statistics.median(plains),
        "first_hit": first_hit,
        "warm_hit": statistics.median(timed),
        "first_render": first_render,
        "first_load": first_load,
        "warm_render": statistics.median(loads),
        "is_tiny": renderer.is_tiny,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--train-resolution", type=int, default=256)
    parser.add_argument("--size", type=int, default=512, help="render size (SD 1.5: 512)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps")
    parser.add_argument("--repeats", type=int, default=3, help="training runs per figure")
    parser.add_argument("--render-repeats", type=int, default=5, help="renders per figure")
    parser.add_argument("--skip-training", action="store_true", help="only part 2")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    _setup_environment(args)
    import django

    django.setup()
    import torch

    from generation.ml._common import quiet_ml_logs
    from generation.ml.tiny import build_tiny_clip, build_tiny_sd

    torch.set_num_threads(1)
    quiet_ml_logs()
    sd = build_tiny_sd(WORK / "models" / "tiny-sd15")
    build_tiny_clip(WORK / "models" / "tiny-clip")
    print(f"tiny SD 1.5 twin ({sd}), CPU, 1 thread; medians")

    if not args.skip_training:
        print(
            f"\n1. LoRA training, {args.train_steps} steps at {args.train_resolution} px, "
            "8 examples, batch 1 (steps/s)"
        )
        rows = bench_training(sd, args)
        print(f"{'setting':<30}{'no cache':>10}{'cold':>8}{'warm':>8}{'warm/no':>9}{'cold/no':>9}")
        for r in rows:
            print(
                f"{r['setting']:<30}{r['without']:>10.2f}{r['cold']:>8.2f}{r['warm']:>8.2f}"
                f"{r['warm'] / r['without']:>8.2f}x{r['cold'] / r['without']:>8.2f}x"
            )
        worst = min(r["warm"] / r["without"] for r in rows)
        print(f"caching speed-up (warm, worst setting): {worst:.2f}x (target >= 1.3x)")

    print(f"\n2. Time to image at {args.size} px, {args.steps} steps (seconds)")
    t = bench_time_to_image(args)
    print(f"{'plain render, no LoRA':<44}{t['plain']:>8.3f}")
    print(
        f"{'LoRA-cache hit, first (loads 2 LoRA files)':<44}{t['first_hit']:>8.3f}"
        f"{t['first_hit'] / t['plain']:>8.2f}x"
    )
    print(
        f"{'LoRA-cache hit, warm (LoRAs in the worker)':<44}{t['warm_hit']:>8.3f}"
        f"{t['warm_hit'] / t['plain']:>8.2f}x"
    )
    print(
        f"  of which the render call: first {t['first_render']:.3f} (loading the LoRAs "
        f"{t['first_load']:.3f}), warm {t['warm_render']:.3f}; the rest is retrieval, cache "
        "lookup, PNG and database"
    )
    print(
        f"cache hit / plain render: warm {t['warm_hit'] / t['plain']:.2f}x, first "
        f"{t['first_hit'] / t['plain']:.2f}x (target <= 1.2x)"
    )


if __name__ == "__main__":
    main()
