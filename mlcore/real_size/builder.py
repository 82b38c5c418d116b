"""Building the real-size stand-in folders: `build`, `build_all` and `is_complete`.

`build` writes one role's folder in the layout of its hub checkpoint (through the per-role
`_build_*` functions: tokenizer files, image processor, safetensors weights), checks the
parameter count against the published one, writes the stand-in marker (size "real-size",
REAL_SIZE_VERSION, dtype, seed...) and renames the finished folder into place; it is
idempotent, and `is_complete` says whether a folder holds a finished build of this
version. `folder_bytes` and `default_cache_dir` serve the callers that report on or
cache for these folders.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import ModelInputError
from ..precision import precision_name
from ..stand_in import REAL_SIZE, stand_in_info, write_marker
from .configs import (
    DEFAULT_DTYPES,
    HUB_IDS,
    KINDS,
    REAL_SIZE_VERSION,
    ROLES,
    SD15_SCHEDULER_CONFIG,
    SEED,
    RealSizeError,
    _check_role,
    published_role_params,
)
from .models import _quiet, count_params, make_model
from .tokenizers import (
    CLIP_BPE_MEMBER,
    CLIP_BPE_SHA256,
    _blip_image_processor,
    _clip_image_processor,
    make_blip2_processor,
    opt_standin_bpe,
    real_clip_vocab,
    write_bert_tokenizer,
    write_clip_tokenizer,
)

# Files a complete folder of each role holds (besides the marker and the weights).
_REQUIRED = {
    "sd15": [
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ],
    "safety-checker": ["config.json", "preprocessor_config.json"],
    "blip2-itm": ["config.json", "preprocessor_config.json", "tokenizer_config.json"],
    "blip2-opt": ["config.json", "preprocessor_config.json", "tokenizer_config.json"],
    "clip-l14": ["config.json", "preprocessor_config.json", "vocab.json", "merges.txt"],
}
_WEIGHT_DIRS = {"sd15": ["unet", "vae", "text_encoder"]}
# Bytes per parameter, for the free-space check before a build.
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def is_complete(folder: str | os.PathLike, role: str) -> bool:
    """True when `folder` holds a finished real-size build of `role` (this version)."""
    folder = Path(folder)
    info = stand_in_info(folder)
    if not info or info.get("size") != REAL_SIZE or info.get("role") != role:
        return False
    if info.get("version") != REAL_SIZE_VERSION:
        return False
    if not all((folder / name).is_file() for name in _REQUIRED[role]):
        return False
    subfolders = _WEIGHT_DIRS.get(role, [""])
    return all(any((folder / sub).glob("*.safetensors")) for sub in subfolders)


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of every file under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def default_cache_dir(out_dir: str | os.PathLike) -> Path:
    """Where `build` keeps the open-clip-torch wheel and CLIP's BPE file: beside the role
    folders (`<root>/.cache` for `<root>/<role>`)."""
    return Path(out_dir).expanduser().absolute().parent / ".cache"


def build(
    role: str,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Build the real-size stand-in of `role` into `out_dir` and return the folder.

    Weights are random (seeded: the same role and dtype give the same files) and stored in
    half precision by default: float16 for "sd15" and "safety-checker", bfloat16 for
    "blip2-itm", "blip2-opt" and "clip-l14" (~15 GB for all five; float32 doubles it).
    `dtype` overrides that ("float32", "float16", "bfloat16"). Models are built directly
    in that dtype, never through a float32 copy. The CLIP vocabulary is fetched into
    `cache_dir` (default `default_cache_dir(out_dir)`), see `real_clip_vocab`.

    Idempotent: a complete real-size folder of this role is returned as is. Anything else
    at `out_dir` (an older version, an interrupted build) is replaced, unless it is a
    folder that is not a stand-in of this role, which is refused. The build writes into a
    temporary folder beside `out_dir` and renames it into place at the end, so readers
    never see a half-written model.
    """
    _check_role(role)
    out = Path(out_dir).expanduser().absolute()
    if is_complete(out, role):
        return out
    if out.exists():
        info = stand_in_info(out)
        empty = out.is_dir() and not any(out.iterdir())
        if not empty and not (info and info.get("role") == role):
            raise RealSizeError(
                f"{out} exists and is not a real-size {role} folder: refusing to overwrite it"
            )
    dtype = precision_name(dtype or DEFAULT_DTYPES[role])
    if dtype == "auto":
        raise ModelInputError("build needs a dtype (or None for the role's default), not 'auto'")
    out.parent.mkdir(parents=True, exist_ok=True)
    needed = published_role_params(role) * _BYTES[dtype] + 200 * 2**20
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        raise RealSizeError(
            f"{role} needs ~{needed / 2**30:.1f} GiB in {out.parent}, only {free / 2**30:.1f} "
            "GiB are free"
        )
    bpe_gz = real_clip_vocab(cache_dir or default_cache_dir(out))

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        started = time.monotonic()
        with _quiet():
            extra = _BUILDERS[role](tmp, dtype, bpe_gz)
        published = published_role_params(role)
        if abs(extra["params"] - published) > 0.01 * published:
            raise RealSizeError(
                f"{role} was built with {extra['params']:,} parameters, published "
                f"{published:,}: not the published configuration"
            )
        write_marker(
            tmp,
            KINDS[role],
            size=REAL_SIZE,
            role=role,
            version=REAL_SIZE_VERSION,
            hub_id=HUB_IDS[role],
            dtype=dtype,
            seed=SEED,
            published_params=published,
            build_seconds=round(time.monotonic() - started, 1),
            **extra,
        )
        # mkdtemp and some savers make files private; workers may run as another user.
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)  # empty, or an older/incomplete build of this role
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_all(
    root: str | os.PathLike,
    roles: Iterable[str] = ROLES,
    *,
    dtype: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """`build` every role into `root/<role>`; returns {role: folder}. See `build`."""
    root = Path(root).expanduser().absolute()
    roles = [_check_role(role) for role in roles]
    cache = cache_dir or root / ".cache"
    return {role: build(role, root / role, dtype=dtype, cache_dir=cache) for role in roles}


_CLIP_TOKENIZER_NOTE = (
    f"real CLIP BPE (49,408 tokens) from {CLIP_BPE_MEMBER} of the open-clip-torch wheel "
    f"(sha256 {CLIP_BPE_SHA256[:16]}...)"
)


def _save_new_model(role: str, dtype: str, folder: Path) -> int:
    """Make `role`'s model with random weights, save it into `folder`; its parameter count."""
    model = make_model(role, dtype=dtype)
    params = count_params(model)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
    return params


def _build_sd15(tmp: Path, dtype: str, bpe_gz) -> dict:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp / "_tokenizer", bpe_gz))
    parts = {part: make_model(f"sd15/{part}", dtype=dtype) for part in ("unet", "vae")}
    parts["text_encoder"] = make_model("sd15/text_encoder", dtype=dtype)
    counts = {f"sd15/{part}": count_params(model) for part, model in parts.items()}
    pipe = StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=tokenizer,
        unet=parts["unet"],
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,  # its own role and folder ("safety-checker")
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp / "model", safe_serialization=True)
    del pipe, parts
    # transformers 5 saves only tokenizer.json: keep the hub layout's vocab.json + merges.txt.
    shutil.rmtree(tmp / "model" / "tokenizer")
    os.rename(tmp / "_tokenizer", tmp / "model" / "tokenizer")
    for item in (tmp / "model").iterdir():
        os.rename(item, tmp / item.name)
    (tmp / "model").rmdir()
    return {
        "params": sum(counts.values()),
        "component_params": counts,
        "tokenizer": _CLIP_TOKENIZER_NOTE,
        "safety_checker": "not in this folder (requires_safety_checker=False): see the "
        "safety-checker role",
    }


def _build_safety_checker(tmp: Path, dtype: str, bpe_gz) -> dict:
    params = _save_new_model("safety-checker", dtype, tmp)
    _clip_image_processor().save_pretrained(tmp)
    return {"params": params}


def _build_blip2_itm(tmp: Path, dtype: str, bpe_gz) -> dict:
    write_bert_tokenizer(tmp, bpe_gz)
    _blip_image_processor().save_pretrained(tmp)
    params = _save_new_model("blip2-itm", dtype, tmp)
    return {
        "params": params,
        "tokenizer": "STAND-IN vocabulary: 30,522 word pieces laid out like "
        "bert-base-uncased (specials at the same ids) from the CLIP vocabulary's words, "
        "+ [DEC]; the real bert-base-uncased vocabulary is not available offline",
    }


def _build_blip2_opt(tmp: Path, dtype: str, bpe_gz) -> dict:
    vocab, merges = opt_standin_bpe(bpe_gz)
    processor = make_blip2_processor(bpe_gz, bpe=(vocab, merges))
    processor.save_pretrained(tmp)
    # The hub layout's separate files too: preprocessor_config.json (read by
    # `BlipImageProcessorPil.from_pretrained`), vocab.json + merges.txt.
    processor.image_processor.save_pretrained(tmp)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    del processor
    params = _save_new_model("blip2-opt", dtype, tmp)
    return {
        "params": params,
        "tokenizer": "STAND-IN vocabulary: byte-level BPE of OPT's size (50,265 tokens + "
        "<image> = 50,266) learned from the CLIP vocabulary's words, OPT's specials at ids "
        "0-3; the real GPT-2/OPT vocabulary is not available offline",
        "eos_token_id": "2 (</s>); the published config stops at '\\n' (50118)",
    }


def _build_clip_l14(tmp: Path, dtype: str, bpe_gz) -> dict:
    write_clip_tokenizer(tmp, bpe_gz)
    _clip_image_processor().save_pretrained(tmp)
    params = _save_new_model("clip-l14", dtype, tmp)
    return {"params": params, "tokenizer": _CLIP_TOKENIZER_NOTE}


_BUILDERS = {
    "sd15": _build_sd15,
    "safety-checker": _build_safety_checker,
    "blip2-itm": _build_blip2_itm,
    "blip2-opt": _build_blip2_opt,
    "clip-l14": _build_clip_l14,
}
