"""bench/gpu.py --tiny: the GPU benchmark's whole code path on CPU with the tiny models.

The real-size run needs a GPU (its docstring says how to run it there); this keeps the
script working in CI: every section runs, every figure is a positive number, and only the
`ml/` packages were imported (no Django).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("lora_training", "render", "blip2_embed", "vqa", "faiss")


def test_gpu_bench_tiny_runs_every_section_without_django(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log
    for name in SECTIONS:
        assert f"== {name} (tiny, cpu)" in proc.stdout, log
    assert "django imported: False" in proc.stdout, log

    report = json.loads(out.read_text())
    assert report["mode"] == "tiny"
    assert report["django_imported"] is False
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("error"))
        assert section["figures"], name
        for key, value in section["figures"].items():
            if value is None:  # only the GPU half of FAISS may be missing, with its reason
                assert name == "faiss" and "gpu_" in key, (name, key)  # gpu_*, slots_gpu_*
                assert section["notes"]["gpu_skipped"], section["notes"]
                continue
            assert isinstance(value, int | float) and math.isfinite(value), (name, key, value)
            assert value > 0, (name, key, value)
        assert section["peak_gpu_mib"] is None  # CPU run
    figures = report["sections"]["lora_training"]["figures"]
    assert {"steps_per_s_cached", "steps_per_s_uncached"} <= set(figures)
    assert set(report["sections"]["render"]["figures"]) == {
        "s_per_image_no_lora",
        "s_per_image_loras_first",
        "s_per_image_loras_warm",
    }
    notes = report["sections"]["lora_training"]["notes"]
    assert notes["cache_hits_timed_run"] > 0  # the cached run really read the latent cache
