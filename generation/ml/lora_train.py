"""Train one LoRA on Stable Diffusion 1.5 from a handful of (image, caption) pairs.

This module follows the steps of diffusers' `examples/text_to_image/train_text_to_image_lora.py`
(and the text-encoder part of its DreamBooth LoRA sibling), as one typed function instead of
an argparse script:

1. load the frozen base components (tokenizer, text encoder, VAE, UNet, DDPM noise scheduler);
2. add peft LoRA adapters: UNet `to_q/to_k/to_v/to_out.0`, text encoder
   `q_proj/k_proj/v_proj/out_proj` (`LoraConfig(init_lora_weights="gaussian")`);
3. AdamW (8-bit from bitsandbytes where it works) over the LoRA parameters only, one param
   group per learning rate;
4. each step: VAE latents * scaling_factor, `noise_scheduler.add_noise` at a random timestep,
   predict with the UNet conditioned on the text encoder, MSE against the epsilon (or the
   v-prediction target, per the scheduler config), clip the gradient norm, step;
5. save the LoRA with `StableDiffusionPipeline.save_lora_weights`, *with* the peft configs as
   adapter metadata (LORA STRENGTH TRAP: without them `load_lora_weights` assumes
   lora_alpha = r, so an alpha=1, r=32 LoRA reloads 32x too strong).

Additions over the script, all needed by a long-running service:

* Caching. The VAE posterior (mean and log-variance) of each example is computed once and
  stored in `cache_dir` as a safetensors file keyed by the example key, the base model, the
  resolution and the crop/flip variant; any later LoRA that includes that example reuses it.
  Latents are still *sampled* from the cached posterior each step, so a cached run trains
  exactly like an uncached one. Text embeddings from the frozen text encoder are cached the
  same way when `train_text_encoder` is False. When the text encoder is trained its outputs
  change every step, so only the token ids are cached (in memory; they are cheap).
  `cache_dir=None` turns caching off: the VAE encodes every step, as in the script.
* Checkpoints. Every `checkpoint_every` steps the LoRA weights, optimizer and LR-scheduler
  state, the step, the data order and all RNG states go to `work_dir/checkpoint-<step>`
  (written to a temp folder, then renamed; the last two are kept). A new call with the same
  settings, base model and examples resumes from the newest compatible checkpoint: the step
  counter continues and, on a deterministic CPU run, the final weights equal those of an
  uninterrupted run.
* Cancellation. `should_stop()` is polled after every optimizer step; when it returns True
  a checkpoint is saved and `TrainingCancelled` is raised.

What the loop does not need to show lives beside it: `lora_config` (the settings, an
example, the result), `lora_data` (image preprocessing, the feature cache), `lora_setup`
(base components, precision, optimizer choice) and `lora_files` (the LoRA file with its
metadata, `read_lora_metadata`, `export_lora` for diffusers and kohya).

Heavy libraries (torch, diffusers, peft, bitsandbytes) are imported inside the functions so
that importing this module stays cheap for the web process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import (
    adapter_deleted_warning_silenced,
    model_fingerprint,
    multi_adapter_warning_silenced,
    quiet_ml_logs,
    sha256_text,
)
from .errors import GenerationInputError, TrainingCancelled
from .lora_config import METADATA_FORMAT, LoraTrainingConfig, TrainingExample, TrainResult
from .lora_data import FeatureCache, preprocess_image
from .lora_files import save_lora_file
from .lora_setup import base_components, pick_optimizer, pick_precision

if TYPE_CHECKING:  # pragma: no cover
    import torch

TRAINING_ADAPTER = "mythragen_training"
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINTS_KEPT = 2


def _lora_state(module, adapter: str) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {
        k: v.detach().cpu().clone()
        for k, v in get_peft_model_state_dict(
            module, adapter_name=adapter, save_embedding_layers=False
        ).items()
    }


def _fingerprint(config: LoraTrainingConfig, model_id: str, examples: list[TrainingExample]) -> str:
    """What a checkpoint must match to be resumed (checkpoint_every may change)."""
    settings = config.to_dict()
    settings.pop("checkpoint_every")
    return sha256_text(settings, model_id, [(e.key, e.caption) for e in examples])


def _checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if work_dir.is_dir():
        for d in work_dir.iterdir():
            if d.is_dir() and d.name.startswith(CHECKPOINT_PREFIX):
                suffix = d.name[len(CHECKPOINT_PREFIX) :]
                if suffix.isdigit() and (d / "state.json").is_file():
                    found.append((int(suffix), d))
    return sorted(found)


# --------------------------------------------------------------------------- training


def _trainable(module, adapter: str) -> list:
    """Only this run's LoRA matrices train (a reused pipeline may hold other adapters)."""
    params = []
    for name, param in module.named_parameters():
        mine = "lora_" in name and f".{adapter}." in f"{name}."
        param.requires_grad_(mine)
        if mine:
            params.append(param)
    if not params:
        raise GenerationInputError(f"no LoRA target modules matched in {type(module).__name__}")
    return params


def _remove_adapter(unet, text_encoder, adapter: str, config: LoraTrainingConfig, keep: bool):
    """Leave a passed pipeline frozen and in eval mode, without the training adapter."""
    for module in (unet, text_encoder):
        module.requires_grad_(False)
        module.eval()
    if keep:
        return
    with adapter_deleted_warning_silenced():  # a reused pipeline's LoRA becomes active
        if adapter in getattr(unet, "peft_config", {}):
            unet.delete_adapters(adapter)
        if adapter in getattr(text_encoder, "peft_config", {}):
            text_encoder.delete_adapter(adapter)


def train_lora(
    base_model: str | Path,
    examples: list[TrainingExample],
    output_path: Path,
    config: LoraTrainingConfig,
    *,
    work_dir: Path,
    cache_dir: Path | None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    pipeline=None,
    keep_adapter_name: str | None = None,
    setting_name: str | None = None,
) -> TrainResult:
    """Train a LoRA on `examples` and write it to `output_path` (one safetensors file).

    `pipeline`: a loaded `StableDiffusionPipeline` whose components are reused instead of
    loading `base_model` again (e.g. a worker's renderer). The training adapter is removed
    from it afterwards unless `keep_adapter_name` is given, in which case the trained LoRA
    stays loaded in it under that name (renderable at once, no reload).
    `progress(step, total)` is called after every optimizer step; an exception it raises
    aborts training (the last checkpoint stays for a resume).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812 - the script's spelling

    t_start = time.perf_counter()
    config.validate()
    if not examples:
        raise GenerationInputError("the training set is empty")
    for ex in examples:
        if not ex.key or not isinstance(ex.caption, str):
            raise GenerationInputError("every training example needs a key and a caption")
    if keep_adapter_name is not None and pipeline is None:
        raise GenerationInputError("keep_adapter_name needs a pipeline to keep the adapter in")
    output_path, work_dir = Path(output_path), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(f".tmp-{CHECKPOINT_PREFIX}*"):  # a crash while saving
        shutil.rmtree(stale, ignore_errors=True)

    quiet_ml_logs()
    from diffusers import StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    model_id = model_fingerprint(base_model)
    fingerprint = _fingerprint(config, model_id, examples)
    adapter = keep_adapter_name or TRAINING_ADAPTER

    # 1. Frozen base components.
    tokenizer, text_encoder, vae, unet, noise_scheduler = base_components(
        base_model, pipeline, setting_name
    )
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.to(device)
    autocast_dtype, precision_used = pick_precision(config.mixed_precision, device)

    # 2. LoRA adapters, as in the script.
    unet_lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights="gaussian",
        target_modules=list(config.unet_target_modules),
    )
    torch.manual_seed(config.seed)  # the gaussian init of lora_A draws from the global RNG
    with multi_adapter_warning_silenced():  # a reused pipeline may hold rendering LoRAs
        unet.add_adapter(unet_lora_config, adapter_name=adapter)
    unet.enable_adapters()  # a pipeline that had `disable_lora()` called keeps layers disabled
    text_lora_config = None
    if config.train_text_encoder:
        text_lora_config = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            init_lora_weights="gaussian",
            target_modules=list(config.text_encoder_target_modules),
        )
        with multi_adapter_warning_silenced():
            text_encoder.add_adapter(text_lora_config, adapter_name=adapter)
        text_encoder.enable_adapters()

    try:
        unet_params = _trainable(unet, adapter)
        text_params = _trainable(text_encoder, adapter) if config.train_text_encoder else []
        params_to_optimize = unet_params + text_params
        param_groups = [{"params": unet_params, "lr": config.unet_lr}]
        if text_params:
            param_groups.append({"params": text_params, "lr": config.text_encoder_lr})

        # 3. Optimizer and LR schedule (the script counts scheduler steps in optimizer steps).
        optimizer, optimizer_used = pick_optimizer(config.optimizer, param_groups, config, device)
        lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer=optimizer,
            num_warmup_steps=config.lr_warmup_steps,
            num_training_steps=config.max_train_steps,
        )

        # All training randomness (data order, posterior samples, noise, timesteps) comes from
        # one generator whose state is checkpointed, so a resumed run draws the same numbers.
        gen = torch.Generator("cpu").manual_seed(config.seed)
        order: list[int] = []
        order_pos = 0
        step = 0
        resumed_from = 0

        # Resume from the newest compatible checkpoint.
        for ckpt_step, ckpt in reversed(_checkpoints(work_dir)):
            try:
                state = json.loads((ckpt / "state.json").read_text())
            except (OSError, ValueError):
                continue
            if state.get("fingerprint") != fingerprint or ckpt_step > config.max_train_steps:
                continue
            weights = load_file(ckpt / "lora.safetensors")
            unet_sd = {k[5:]: v for k, v in weights.items() if k.startswith("unet.")}
            set_peft_model_state_dict(unet, unet_sd, adapter_name=adapter)
            if config.train_text_encoder:
                te_sd = {k[13:]: v for k, v in weights.items() if k.startswith("text_encoder.")}
                set_peft_model_state_dict(text_encoder, te_sd, adapter_name=adapter)
            blobs = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=False)
            optimizer.load_state_dict(blobs["optimizer"])
            lr_scheduler.load_state_dict(blobs["lr_scheduler"])
            gen.set_state(blobs["generator"])
            torch.set_rng_state(blobs["torch_rng"])
            random.setstate(blobs["python_rng"])
            np.random.set_state(blobs["numpy_rng"])
            if blobs.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(blobs["cuda_rng"])
            order, order_pos = state["order"], state["order_pos"]
            step = resumed_from = state["step"]
            break

        cache = FeatureCache(cache_dir, model_id)
        vae_scale = vae.config.scaling_factor
        token_ids: dict[str, torch.Tensor] = {}
        latent_params: dict[tuple[int, bool], torch.Tensor] = {}
        text_states: dict[str, torch.Tensor] = {}

        def tokenize(caption: str) -> torch.Tensor:
            if caption not in token_ids:
                token_ids[caption] = tokenizer(
                    caption,
                    max_length=tokenizer.model_max_length,
                    padding="max_length",
                    truncation=True,
                    return_tensors="pt",
                ).input_ids
            return token_ids[caption]

        def encode_posterior(i: int, flip: bool) -> torch.Tensor:
            ex = examples[i]
            pixels = preprocess_image(
                ex.image_path, config.resolution, config.center_crop, flip, ex.key
            )
            with (
                torch.no_grad(),
                torch.autocast(
                    torch.device(device).type,
                    dtype=autocast_dtype or torch.float32,
                    enabled=autocast_dtype is not None,
                ),
            ):
                return vae.encode(pixels[None].to(device)).latent_dist.parameters.float()

        def posterior(i: int, flip: bool) -> torch.Tensor:
            if cache.dir is None:  # no cache: encode every step, like the script
                return encode_posterior(i, flip)
            if (i, flip) not in latent_params:
                parts = (examples[i].key, config.resolution, config.center_crop, flip)
                latent_params[(i, flip)] = cache.get_or_compute(
                    "latents", parts, lambda: encode_posterior(i, flip)
                ).to(device)
            return latent_params[(i, flip)]

        def frozen_text_states(caption: str) -> torch.Tensor:
            def compute():
                with torch.no_grad():
                    return text_encoder(tokenize(caption).to(device), return_dict=False)[0].float()

            if caption not in text_states:
                text_states[caption] = cache.get_or_compute("text", (caption,), compute).to(device)
            return text_states[caption]

        def next_indices() -> list[int]:
            nonlocal order, order_pos
            picked = []
            for _ in range(config.train_batch_size):
                if order_pos >= len(order):  # a new epoch: reshuffle
                    order = torch.randperm(len(examples), generator=gen).tolist()
                    order_pos = 0
                picked.append(order[order_pos])
                order_pos += 1
            return picked

        checkpoints_written: list[str] = []

        def save_checkpoint(at_step: int) -> Path:
            final = work_dir / f"{CHECKPOINT_PREFIX}{at_step}"
            tmp = work_dir / f".tmp-{CHECKPOINT_PREFIX}{at_step}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            weights = {f"unet.{k}": v for k, v in _lora_state(unet, adapter).items()}
            if config.train_text_encoder:
                weights.update(
                    {f"text_encoder.{k}": v for k, v in _lora_state(text_encoder, adapter).items()}
                )
            save_file(
                {k: v.contiguous() for k, v in weights.items()}, str(tmp / "lora.safetensors")
            )
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "lr_scheduler": lr_scheduler.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                    "python_rng": random.getstate(),
                    "numpy_rng": np.random.get_state(),
                },
                tmp / "training_state.pt",
            )
            state = {
                "step": at_step,
                "fingerprint": fingerprint,
                "order": order,
                "order_pos": order_pos,
                "base_model": str(base_model),
                "config": config.to_dict(),
            }
            (tmp / "state.json").write_text(json.dumps(state))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for _, old in _checkpoints(work_dir)[:-CHECKPOINTS_KEPT]:
                shutil.rmtree(old, ignore_errors=True)
            checkpoints_written.append(str(final))
            return final

        # 4. The training loop.
        unet.train()
        if config.train_text_encoder:
            text_encoder.train()
        device_type = torch.device(device).type
        final_loss = float("nan")
        t_loop = time.perf_counter()
        steps_run = 0
        while step < config.max_train_steps:
            accumulated = 0.0
            for _micro in range(config.gradient_accumulation_steps):
                idx = next_indices()
                flips = [
                    bool(config.random_flip and torch.rand((), generator=gen).item() < 0.5)
                    for _ in idx
                ]
                params = torch.cat([posterior(i, f) for i, f in zip(idx, flips, strict=True)])
                # Sample the VAE posterior (DiagonalGaussianDistribution.sample), scale.
                mean, logvar = params.chunk(2, dim=1)
                std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
                eps = torch.randn(mean.shape, generator=gen).to(device)
                latents = (mean + std * eps) * vae_scale

                noise = torch.randn(latents.shape, generator=gen).to(device)
                if config.noise_offset:
                    noise += config.noise_offset * torch.randn(
                        (latents.shape[0], latents.shape[1], 1, 1), generator=gen
                    ).to(device)
                bsz = latents.shape[0]
                timesteps = torch.randint(
                    0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=gen
                ).to(device)
                noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)

                captions = [examples[i].caption for i in idx]
                with torch.autocast(
                    device_type,
                    dtype=autocast_dtype or torch.float32,
                    enabled=autocast_dtype is not None,
                ):
                    if config.train_text_encoder:
                        ids = torch.cat([tokenize(c) for c in captions]).to(device)
                        encoder_hidden_states = text_encoder(ids, return_dict=False)[0]
                    else:
                        encoder_hidden_states = torch.cat([frozen_text_states(c) for c in captions])

                    if noise_scheduler.config.prediction_type == "epsilon":
                        target = noise
                    elif noise_scheduler.config.prediction_type == "v_prediction":
                        target = noise_scheduler.get_velocity(latents, noise, timesteps)
                    else:
                        raise GenerationInputError(
                            f"unknown prediction type {noise_scheduler.config.prediction_type}"
                        )
                    model_pred = unet(
                        noisy_latents, timesteps, encoder_hidden_states, return_dict=False
                    )[0]
                loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
                (loss / config.gradient_accumulation_steps).backward()
                accumulated += loss.item() / config.gradient_accumulation_steps

            torch.nn.utils.clip_grad_norm_(params_to_optimize, config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_run += 1
            final_loss = accumulated

            if step % config.checkpoint_every == 0 and step < config.max_train_steps:
                save_checkpoint(step)
            if progress is not None:
                progress(step, config.max_train_steps)
            if should_stop is not None and step < config.max_train_steps and should_stop():
                ckpt = save_checkpoint(step)
                raise TrainingCancelled(step, str(ckpt))
        loop_seconds = time.perf_counter() - t_loop

        # 5. Save the LoRA (with adapter metadata: the strength trap) as one file, atomically.
        unet_lora_layers = convert_state_dict_to_diffusers(_lora_state(unet, adapter))
        text_lora_layers = (
            convert_state_dict_to_diffusers(_lora_state(text_encoder, adapter))
            if config.train_text_encoder
            else None
        )
        info = {
            "format": METADATA_FORMAT,
            "base_model": str(base_model),
            "base_model_fingerprint": model_id,
            "training": config.to_dict(),
            "steps": step,
            "optimizer_used": optimizer_used,
            "precision_used": precision_used,
            "examples": [e.key for e in examples],
            "final_loss": final_loss,
        }
        save_lora_file(
            output_path,
            StableDiffusionPipeline,
            unet_lora_layers,
            text_lora_layers,
            unet_lora_config.to_dict(),
            text_lora_config.to_dict() if text_lora_config is not None else None,
            info,
        )
        _remove_adapter(unet, text_encoder, adapter, config, keep=keep_adapter_name is not None)

        return TrainResult(
            output_path=output_path,
            steps=step,
            seconds=time.perf_counter() - t_start,
            steps_per_second=steps_run / loop_seconds if loop_seconds > 0 else 0.0,
            optimizer_used=optimizer_used,
            precision_used=precision_used,
            resumed_from_step=resumed_from,
            cache_hits=cache.hits,
            cache_misses=cache.misses,
            final_loss=final_loss,
            loop_seconds=loop_seconds,
            checkpoints=checkpoints_written,
        )
    except BaseException:
        _remove_adapter(unet, text_encoder, adapter, config, keep=False)
        raise
