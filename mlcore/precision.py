"""Device and precision names, resolved the same way for every role (torch imported lazily).

A role's precision setting is "auto" or a dtype name. "auto" means float32 on CPU (CPUs
without native bfloat16 matrix units run half precision slower, and float32 keeps a
float32 checkpoint memory-mapped instead of copied) and the role's half precision on CUDA:
bfloat16 for BLIP-2 and CLIP, float16 for Stable Diffusion (its VAE overflows less in
float16 than it loses in bfloat16, and float16 is what the published weights ship as).
"""

from __future__ import annotations

from .errors import ModelInputError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def precision_name(name: str) -> str:
    """A canonical precision name ("auto" or a dtype); unknown names are a ModelInputError."""
    name = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if name not in PRECISIONS:
        raise ModelInputError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    return name


def resolve_device(device: str | None) -> str:
    """ "auto"/None -> "cuda" when torch sees a GPU, else "cpu"; anything else as given."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_precision(precision: str, device: str, *, cuda_default: str = "bfloat16") -> str:
    """The dtype name a role loads in: "auto" -> float32 on CPU, `cuda_default` on CUDA."""
    precision = precision_name(precision)
    if precision != "auto":
        return precision
    return cuda_default if str(device).startswith("cuda") else "float32"


def torch_dtype(name: str):
    """The torch dtype for a precision name ("auto" is not one: resolve it first)."""
    import torch

    name = precision_name(name)
    if name == "auto":
        raise ModelInputError("resolve 'auto' with resolve_precision() before asking its dtype")
    return getattr(torch, name)
