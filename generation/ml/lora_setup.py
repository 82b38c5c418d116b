"""What training sets up before its loop: the frozen base components (step 1 of the
script), the autocast precision, and the optimizer over the LoRA parameters (step 3)."""

from __future__ import annotations

from pathlib import Path

from mlcore.role import ModelRole

from .lora_config import LoraTrainingConfig


def pick_optimizer(name: str, param_groups: list[dict], config: LoraTrainingConfig, device: str):
    """AdamW8bit from bitsandbytes when it imports and runs on `device`, else torch AdamW."""
    import torch

    kwargs = dict(
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb

            probe = torch.nn.Parameter(torch.zeros(4096, device=device))
            probe_opt = bnb.optim.AdamW8bit([probe], lr=1e-3)
            probe.grad = torch.ones_like(probe)
            probe_opt.step()
            if not torch.isfinite(probe).all():
                raise RuntimeError("AdamW8bit produced non-finite values")
            return bnb.optim.AdamW8bit(param_groups, **kwargs), "adamw8bit"
        except Exception:  # noqa: BLE001 - any failure means: use the portable optimizer
            pass
    return torch.optim.AdamW(param_groups, **kwargs), "adamw"


def pick_precision(requested: str, device: str):
    """(autocast dtype or None, label). CPU-only runs train in fp32 (recorded as such)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and requested == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16"
    if dev.type == "cuda" and requested == "fp16":
        return torch.float16, "fp16"
    return None, "fp32"


def base_components(base_model: str | Path, pipeline, setting_name: str | None):
    """The frozen base components: from a passed pipeline, or loaded from disk / a hub id."""
    from diffusers import DDPMScheduler

    if pipeline is not None:
        noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
        return (
            pipeline.tokenizer,
            pipeline.text_encoder,
            pipeline.vae,
            pipeline.unet,
            noise_scheduler,
        )
    return TrainingBase(base_model, setting=setting_name).load().components


class TrainingBase(ModelRole):
    """The frozen SD 1.5 components training loads when no pipeline is passed (float32:
    LoRA training keeps master weights in full precision and autocasts on CUDA)."""

    what = "Stable Diffusion base model"
    cuda_precision = "float32"

    def _load(self) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self.check_local()
        src = self.model_id
        try:
            # The dtype is explicit: without it transformers 5 and diffusers keep the
            # stored one, and a float16 checkpoint (SD 1.5's published fp16 variant) would
            # meet float32 LoRA layers ("expected m1 and m2 to have the same dtype").
            dtype = self.dtype
            self.components = (
                CLIPTokenizer.from_pretrained(src, subfolder="tokenizer"),
                CLIPTextModel.from_pretrained(src, subfolder="text_encoder", dtype=dtype),
                AutoencoderKL.from_pretrained(src, subfolder="vae", dtype=dtype),
                UNet2DConditionModel.from_pretrained(src, subfolder="unet", dtype=dtype),
                DDPMScheduler.from_pretrained(src, subfolder="scheduler"),
            )
        except Exception as exc:  # noqa: BLE001 - every loader failure means the same here
            raise self.unavailable(f"{type(exc).__name__}: {exc}", exc) from exc
