"""The settings, inputs and result of one LoRA training run (`lora_train.train_lora`).

Cheap to import (no torch): services build a `LoraTrainingConfig` from the settings and key
LoRAs by its `to_dict()` without loading any ML library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GenerationInputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

METADATA_KEY = "mythragen"  # safetensors metadata entry with the training settings
METADATA_FORMAT = "mythragen-lora/1"
OPTIMIZERS = ("adamw8bit", "adamw")
PRECISIONS = ("bf16", "fp16", "no")


@dataclass
class LoraTrainingConfig:
    """Settings of one LoRA training run (defaults: the paper's setting, rank 32 / alpha 1)."""

    rank: int = 32
    alpha: float = 1.0
    max_train_steps: int = 4095
    unet_lr: float = 1e-4
    text_encoder_lr: float = 5e-5
    train_text_encoder: bool = True
    optimizer: str = "adamw8bit"  # "adamw8bit" (bitsandbytes, falls back to "adamw") | "adamw"
    mixed_precision: str = "bf16"  # "bf16" | "fp16" | "no"; fp32 where the device lacks it
    resolution: int = 512
    train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "constant"  # any name diffusers.optimization.get_scheduler knows
    lr_warmup_steps: int = 0
    seed: int = 0
    checkpoint_every: int = 500
    max_grad_norm: float = 1.0
    center_crop: bool = True
    random_flip: bool = False
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    noise_offset: float = 0.0
    unet_target_modules: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    text_encoder_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists), for hashing and for the LoRA metadata."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraTrainingConfig:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for k in ("unet_target_modules", "text_encoder_target_modules"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        return cls(**kwargs)

    def validate(self) -> None:
        checks = [
            (self.rank >= 1, "rank must be >= 1"),
            (self.alpha > 0, "alpha must be > 0"),
            (self.max_train_steps >= 1, "max_train_steps must be >= 1"),
            (self.unet_lr > 0 and self.text_encoder_lr > 0, "learning rates must be > 0"),
            (self.resolution >= 8 and self.resolution % 8 == 0, "resolution: multiple of 8"),
            (self.train_batch_size >= 1, "train_batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {PRECISIONS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GenerationInputError(message)


@dataclass
class TrainingExample:
    """One training pair. `key` is a stable id supplied by the caller (e.g. artwork id +
    image hash): it keys the latent cache, so it must change when the image changes."""

    image_path: str | Image.Image
    caption: str
    key: str


@dataclass
class TrainResult:
    """What one `train_lora` call did (stored with the cache entry as `train_info`)."""

    output_path: Path
    steps: int  # the final step counter (== max_train_steps)
    seconds: float  # wall time of this call, loading included
    steps_per_second: float  # optimizer steps run by this call / training-loop seconds
    optimizer_used: str
    precision_used: str
    resumed_from_step: int  # 0 for a fresh run
    cache_hits: int  # latents and text embeddings read from cache_dir
    cache_misses: int  # ... computed and written to cache_dir
    final_loss: float
    loop_seconds: float = 0.0
    checkpoints: list[str] = field(default_factory=list)
