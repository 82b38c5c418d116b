"""Render images with Stable Diffusion 1.5 and a weighted mix of LoRAs.

One `ArtRenderer` per (base model, device, dtype) keeps its pipeline loaded between calls
(`get_renderer` is the per-process registry a worker uses). LoRAs are loaded once by name
with `load_lora_weights(path, adapter_name=name)`, kept in a small LRU (`max_adapters`), and
mixed per call with `set_adapters(names, adapter_weights=weights)`. With no LoRA (or only
zero weights) the adapters are disabled and the render is a plain base render: the
prompt-only baseline.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcore.precision import resolve_precision
from mlcore.role import ModelRole, RoleRegistry

from ._common import (
    adapter_deleted_warning_silenced,
    multi_adapter_warning_silenced,
    numpy_copy_warning_silenced,
    quiet_ml_logs,
)
from .errors import GenerationInputError, ModelUnavailable

# Samplers offered to users. PNDM (SD 1.5's default) is left out: it fails with < 4 steps.
SAMPLERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
# A1111 names, for the "parameters" text chunk.
SAMPLER_LABELS = {
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "unipc": "UniPC",
}
MAX_STEPS = 200
MIN_SIZE, MAX_SIZE = 64, 2048
MIN_LORA_WEIGHT, MAX_LORA_WEIGHT = -2.0, 2.0
MAX_GUIDANCE = 50.0
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class RenderResult:
    image: Any  # PIL.Image.Image
    seconds: float
    sampler: str
    adapters: list[tuple[str, float]] = field(default_factory=list)  # active (name, weight)
    adapter_load_seconds: float = 0.0  # part of `seconds` spent loading new LoRA files


def validate_render_inputs(
    prompt: str,
    *,
    negative_prompt: str = "",
    seed: int,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    loras: Sequence[tuple[str, Path | str, float]] = (),
    sampler: str = "ddim",
) -> None:
    """`check_inputs` for a render: raise GenerationInputError with a clear message."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise GenerationInputError("the prompt is empty")
    if not isinstance(negative_prompt, str):
        raise GenerationInputError("negative_prompt must be a string")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise GenerationInputError("seed must be an integer in [0, 2**63)")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise GenerationInputError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
    if not isinstance(guidance, int | float) or not 0.0 <= float(guidance) <= MAX_GUIDANCE:
        raise GenerationInputError(f"guidance must be in [0, {MAX_GUIDANCE}], got {guidance!r}")
    for label, size in (("width", width), ("height", height)):
        if not isinstance(size, int) or isinstance(size, bool) or size % 8:
            raise GenerationInputError(f"{label} must be a multiple of 8, got {size!r}")
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise GenerationInputError(f"{label} must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    if sampler not in SAMPLERS:
        raise GenerationInputError(f"unknown sampler {sampler!r}; use one of {sorted(SAMPLERS)}")
    seen = set()
    for entry in loras:
        if len(entry) != 3:
            raise GenerationInputError("each LoRA is (name, path, weight)")
        name, path, weight = entry
        if not isinstance(name, str) or not ADAPTER_NAME.match(name):
            raise GenerationInputError(f"bad LoRA name {name!r}: letters, digits, _ and - only")
        if name in seen:
            raise GenerationInputError(f"LoRA {name!r} given twice")
        seen.add(name)
        if not isinstance(weight, int | float) or not (
            MIN_LORA_WEIGHT <= float(weight) <= MAX_LORA_WEIGHT
        ):
            raise GenerationInputError(
                f"LoRA weight for {name!r} must be in [{MIN_LORA_WEIGHT}, {MAX_LORA_WEIGHT}], "
                f"got {weight!r}"
            )
        if not path:
            raise GenerationInputError(f"LoRA {name!r} has no file")


class ArtRenderer(ModelRole):
    """A loaded StableDiffusionPipeline that swaps LoRA adapters between renders.

    A `ModelRole`: "auto" precision is float16 on CUDA, float32 on CPU.
    """

    what = "Stable Diffusion base model"
    cuda_precision = "float16"

    def __init__(
        self,
        base_model: str | Path,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = None,
        max_adapters: int = 8,
    ) -> None:
        super().__init__(base_model, device=device, precision=precision, setting=setting)
        self.max_adapters = max_adapters
        self.pipe = None
        self._adapters: OrderedDict[str, tuple[str, int]] = OrderedDict()  # name -> (path, mtime)
        self._schedulers: dict[str, Any] = {}

    @property
    def base_model(self) -> str:
        return self.model_id

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        """Load the pipeline; every failure is a ModelUnavailable naming the setting."""
        self.check_local()
        quiet_ml_logs()
        from diffusers import StableDiffusionPipeline

        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                self.model_id,
                dtype=self.dtype,
                # The safety check runs after rendering, on its own (generation.ml.safety),
                # so that a flagged image is kept with its flag instead of blacked out.
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            pipe.to(self.device)
        except Exception as exc:  # noqa: BLE001 - one meaning for callers: model unusable
            raise self.unavailable(f"{type(exc).__name__}: {exc}", exc) from exc
        pipe.set_progress_bar_config(disable=True)
        self._base_scheduler_config = pipe.scheduler.config
        self.pipe = pipe

    def _unload(self) -> None:
        self.pipe = None
        self._adapters.clear()
        self._schedulers.clear()

    # ------------------------------------------------------------------ adapters
    @property
    def loaded_adapters(self) -> list[str]:
        return list(self._adapters)

    def _pipeline_adapters(self) -> set[str]:
        names: set[str] = set()
        for adapters in self.pipe.get_list_adapters().values():
            names.update(adapters)
        return names

    def _ensure_adapter(self, name: str, path: Path, keep: set[str]) -> float:
        """Load `name` from `path` unless already loaded from the same file; LRU-evict."""
        path = Path(path)
        try:
            stamp = path.stat().st_mtime_ns
        except OSError as exc:
            raise ModelUnavailable("LoRA", str(path), f"no file for {name!r}", hint=None) from exc
        key = (str(path.resolve()), stamp)
        current = self._adapters.get(name)
        if current == key:
            self._adapters.move_to_end(name)
            return 0.0
        present = self._pipeline_adapters()
        if current is None and name in present:
            # Already in the pipeline, e.g. kept there by `train_lora(keep_adapter_name=...)`.
            self._adapters[name] = key
            return 0.0
        if name in present:  # same name, other file: replace it
            with adapter_deleted_warning_silenced():
                self.pipe.delete_adapters([name])
            self._adapters.pop(name, None)
        while len(self._adapters) >= self.max_adapters:
            victim = next((n for n in self._adapters if n not in keep), None)
            if victim is None:
                break
            with adapter_deleted_warning_silenced():
                self.pipe.delete_adapters([victim])
            self._adapters.pop(victim)
        t0 = time.perf_counter()
        try:
            with multi_adapter_warning_silenced():
                self.pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as exc:  # noqa: BLE001
            raise ModelUnavailable("LoRA", str(path), f"{name!r}: {exc}", hint=None) from exc
        self._adapters[name] = key
        return time.perf_counter() - t0

    def activate(
        self, loras: Sequence[tuple[str, Path | str, float]] = ()
    ) -> list[tuple[str, float]]:
        """Load (if needed) and activate `loras` with their weights; [] disables all LoRAs.

        `render` calls this; it is public so evaluation code can probe the UNet with the
        same adapter state. Zero-weight LoRAs are skipped (not even loaded).
        """
        validate_render_inputs("x", seed=0, steps=1, guidance=0, width=64, height=64, loras=loras)
        with self._lock:
            self.load()
            return self._activate(loras)[0]

    def _activate(self, loras) -> tuple[list[tuple[str, float]], float]:
        pipe = self.pipe
        active = [(n, Path(p), float(w)) for n, p, w in loras if float(w) != 0.0]
        keep = {n for n, _, _ in active}
        load_seconds = sum(self._ensure_adapter(n, p, keep) for n, p, _ in active)
        if active:
            pipe.enable_lora()
            pipe.set_adapters([n for n, _, _ in active], adapter_weights=[w for *_, w in active])
        elif self._pipeline_adapters():
            pipe.disable_lora()  # the prompt-only baseline: a plain base render
        return [(n, w) for n, _, w in active], load_seconds

    def _scheduler(self, sampler: str):
        if sampler not in self._schedulers:
            import diffusers

            cls = getattr(diffusers, SAMPLERS[sampler])
            with numpy_copy_warning_silenced():
                self._schedulers[sampler] = cls.from_config(self._base_scheduler_config)
        return self._schedulers[sampler]

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        seed: int,
        steps: int,
        guidance: float,
        width: int,
        height: int,
        loras: Sequence[tuple[str, Path | str, float]] = (),
        sampler: str = "ddim",
        progress: Callable[[int, int], None] | None = None,
    ) -> RenderResult:
        """Render one image; the same arguments and seed give the same image."""
        validate_render_inputs(
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            loras=loras,
            sampler=sampler,
        )
        import torch

        with self._lock:
            t0 = time.perf_counter()
            pipe = self.load().pipe
            active, load_seconds = self._activate(loras)
            pipe.scheduler = self._scheduler(sampler)

            def on_step_end(_pipe, i, _t, callback_kwargs):
                if progress is not None:
                    progress(i + 1, steps)
                return callback_kwargs

            generator = torch.Generator(device="cpu").manual_seed(seed)
            with torch.inference_mode(), numpy_copy_warning_silenced():
                out = pipe(
                    prompt,
                    negative_prompt=negative_prompt or None,
                    num_inference_steps=steps,
                    guidance_scale=float(guidance),
                    width=width,
                    height=height,
                    generator=generator,
                    callback_on_step_end=on_step_end,
                )
            image = out.images[0]
            return RenderResult(
                image=image,
                seconds=time.perf_counter() - t0,
                sampler=sampler,
                adapters=active,
                adapter_load_seconds=load_seconds,
            )


_registry = RoleRegistry()


def get_renderer(
    base_model: str | Path,
    device: str = "cpu",
    precision: str = "auto",
    setting: str | None = None,
) -> ArtRenderer:
    """The process-wide renderer for (base model, device, precision): one pipeline per
    worker."""
    key = (str(base_model), device, resolve_precision(precision, device, cuda_default="float16"))
    return _registry.get(
        key, lambda: ArtRenderer(base_model, device=device, precision=precision, setting=setting)
    )


def clear_renderers() -> None:
    """Forget every registered renderer (tests; a worker reloading settings)."""
    _registry.clear()
