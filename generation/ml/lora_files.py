"""LoRA files: writing the trained LoRA with its metadata, reading the metadata back, and
exporting it for other tools (diffusers as saved, or kohya for A1111 / ComfyUI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import atomic_path
from .errors import GenerationInputError, ModelUnavailable
from .lora_config import METADATA_KEY

if TYPE_CHECKING:  # pragma: no cover
    import torch


def save_lora_file(
    output_path: Path,
    pipeline_cls,
    unet_layers: dict,
    text_layers: dict | None,
    unet_metadata: dict,
    text_metadata: dict | None,
    info: dict,
) -> None:
    """`save_lora_weights` into a temp folder, then add our metadata and os.replace it."""
    import tempfile

    from safetensors import safe_open
    from safetensors.torch import save_file

    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lora-", dir=output_path.parent) as tmp:
        pipeline_cls.save_lora_weights(
            tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=text_layers,
            weight_name="lora.safetensors",
            safe_serialization=True,
            unet_lora_adapter_metadata=unet_metadata,
            text_encoder_lora_adapter_metadata=text_metadata,
        )
        written = Path(tmp) / "lora.safetensors"
        with safe_open(str(written), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        metadata[METADATA_KEY] = json.dumps(info, sort_keys=True)
        with atomic_path(output_path, ".safetensors") as out_tmp:
            save_file(tensors, str(out_tmp), metadata=metadata)


def read_lora_metadata(path: str | Path) -> dict:
    """The settings stored in a LoRA file: our training info plus the adapter metadata."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ModelUnavailable(
            "LoRA", str(path), f"not a readable LoRA file: {exc}", hint=None
        ) from exc
    info = json.loads(metadata.get(METADATA_KEY, "{}"))
    adapter = metadata.get("lora_adapter_metadata")
    info["adapter_metadata"] = json.loads(adapter) if adapter else None
    return info


def export_lora(path: str | Path, fmt: str, out: Path, *, name: str | None = None) -> Path:
    """Write the LoRA at `path` as `fmt`: "diffusers" (as saved) or "kohya".

    `name` (kohya): the name A1111 and ComfyUI know the LoRA by, written as
    `ss_output_name` (A1111's alias; give the file the same stem, `<name>.safetensors`,
    so `<lora:name:w>` resolves either way). The kohya file also carries
    `sshs_model_hash`, the kohya-ss / A1111 hash of its tensors (SHA-256 of the bytes after
    the safetensors header: `provenance.safetensors_data_hash`), which A1111 shows,
    shortened to 12 digits, under "Lora hashes" (Civitai's AutoV3).

    "kohya" is the A1111 / ComfyUI / kohya-ss naming for SD 1.x
    (`lora_unet_<module>.lora_down.weight`, `lora_te_<module>...`, `<module>.alpha`),
    converted with diffusers' `convert_unet_state_dict_to_peft` +
    `convert_state_dict_to_kohya`. Limits: only the LoRA A/B matrices and alphas are
    written (no DoRA magnitudes, no kohya training metadata beyond `ss_network_dim`/
    `ss_network_alpha`/`ss_base_model_version`/`ss_output_name`/`sshs_model_hash`); the UNet
    keeps diffusers module names (as kohya-ss itself does for SD 1.x); the per-module alpha
    is the trained alpha (diffusers' converter writes alpha = rank, which would make the
    LoRA 32x too strong).
    """
    import torch
    from diffusers.utils import (
        convert_state_dict_to_kohya,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )
    from safetensors import safe_open
    from safetensors.torch import save, save_file

    from .provenance import safetensors_data_hash

    path, out = Path(path), Path(out)
    if fmt not in ("diffusers", "kohya"):
        raise GenerationInputError(f"unknown LoRA export format {fmt!r}: use diffusers or kohya")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    if fmt == "diffusers":
        with atomic_path(out, ".safetensors") as tmp:
            save_file(state, str(tmp), metadata=metadata)
        return out

    info = read_lora_metadata(path)
    adapter_meta = info.get("adapter_metadata") or {}
    peft_sd: dict[str, torch.Tensor] = {}
    for prefix in ("unet", "text_encoder"):
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        if not part:
            continue
        # UNet layers are saved as `.lora.down/up`, text-encoder ones as
        # `.lora_linear_layer.down/up`: both become peft `lora_A/lora_B`.
        part = convert_unet_state_dict_to_peft(part)
        if any("lora_linear_layer" in k for k in part):
            part = convert_state_dict_to_peft(part)
        if prefix == "text_encoder":  # transformers 5 CLIPTextModel has no `text_model.`
            part = {
                k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in part.items()
            }
        peft_sd.update({f"{prefix}.{k}": v for k, v in part.items()})
    kohya = convert_state_dict_to_kohya(peft_sd)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in kohya.items():
        if key.startswith("lora_te1_"):  # SD 1.x has one text encoder: "lora_te_"
            key = "lora_te_" + key[len("lora_te1_") :]
        renamed[key] = value
    for key in list(renamed):
        if key.endswith(".alpha"):
            module = "text_encoder" if key.startswith("lora_te_") else "unet"
            alpha = adapter_meta.get(f"{module}.lora_alpha")
            if alpha is not None:
                renamed[key] = torch.tensor(float(alpha))
    training = info.get("training") or {}
    tensors = {k: v.contiguous() for k, v in renamed.items()}
    kohya_meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(training.get("rank", "")),
        "ss_network_alpha": str(training.get("alpha", "")),
        "ss_base_model_version": "sd_v1",
        # The header (metadata included) is not hashed: the same tensors serialised
        # without metadata give the data bytes of the file written below.
        "sshs_model_hash": safetensors_data_hash(save(tensors)),
        METADATA_KEY: metadata.get(METADATA_KEY, "{}"),
    }
    if name:
        kohya_meta["ss_output_name"] = name
    with atomic_path(out, ".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=kohya_meta)
    return out
