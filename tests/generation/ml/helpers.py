"""Shared settings and probes for the generation ML tests."""

from __future__ import annotations

import numpy as np

RENDER_KW = {"seed": 3, "steps": 3, "guidance": 5.0, "width": 64, "height": 64}


def fast_config(**overrides):
    """Tiny-model training settings: 64 px, 8 steps, large LR so LoRAs visibly matter."""
    from generation.ml.lora_config import LoraTrainingConfig

    values = {
        "max_train_steps": 8,
        "resolution": 64,
        "unet_lr": 1e-2,
        "text_encoder_lr": 1e-2,
        "checkpoint_every": 100,
    }
    values.update(overrides)
    return LoraTrainingConfig(**values)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def unet_probe(renderer, loras=(), prompt="a painting of the sea"):
    """The UNet's noise prediction for fixed latents, with `loras` active (float, exact)."""
    import torch

    renderer.activate(loras)
    pipe = renderer.pipe
    g = torch.Generator().manual_seed(0)
    latents = torch.randn((1, 4, 8, 8), generator=g)
    with torch.inference_mode():
        ids = pipe.tokenizer(
            prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        states = pipe.text_encoder(ids)[0]
        return pipe.unet(latents, torch.tensor([500]), encoder_hidden_states=states).sample


def lora_state(module, adapter: str) -> dict:
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(module, adapter_name=adapter, save_embedding_layers=False)
    return {k: v.detach().clone() for k, v in sd.items()}
