"""Image-generation metrics: CLIP-T, CLIP-I, KID and FID (numpy / torch, no Django).

Conventions:

* CLIP-T (`clip_scores`): 100 * cos(image embedding, text embedding), clipped at 0, per
  image: the CLIPScore convention of torchmetrics (`CLIPScore`) without Hessel et al.'s 2.5
  weight. Range [0, 100]; ViT-L/14 scores of good SD images are ~25-35.
* CLIP-I (`clip_image_similarity`): mean cosine over every (generated, reference) pair of
  CLIP image embeddings (DreamBooth's CLIP-I). Range [-1, 1].
* KID: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged
  over random subsets (Binkowski et al.; as in torch-fidelity / clean-fid). Returns
  (mean, std); ~0 for samples of one distribution (can be slightly negative).
* FID: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) with `scipy.linalg.sqrtm`.
  The classic FID uses Inception-v3 pool features; `clip_image_features` gives CLIP
  features instead (FID_CLIP), which is what this project can run offline. Values from
  different feature extractors are not comparable: the dicts returned by `clip_evaluate`
  name the backbone.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.precision import resolve_precision
from mlcore.role import ModelRole

from ._common import quiet_ml_logs
from .errors import GenerationInputError

_clip_cache: dict[str, Any] = {}
_clip_lock = threading.Lock()


class ClipBackbone(ModelRole):
    """A CLIP model + tokenizer + PIL image processor loaded once from a folder or id."""

    what = "CLIP evaluation model"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = "MYTHRAGEN_CLIP_MODEL",
    ) -> None:
        super().__init__(model_path, device=device, precision=precision, setting=setting)
        self.model = None

    @property
    def model_path(self) -> str:
        return self.model_id

    @property
    def name(self) -> str:
        """A readable backbone id: the model's `_name_or_path` or folder, stand-ins tagged."""
        path = Path(self.model_path)
        label = self.model_path
        config = path / "config.json"
        if config.is_file():
            with contextlib.suppress(ValueError):
                label = json.loads(config.read_text()).get("_name_or_path") or label
        info = self.stand_in
        return f"{info['size']}-clip ({self.model_path})" if info else label

    def _load(self) -> None:
        self.check_local()
        quiet_ml_logs()
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        try:
            model = CLIPModel.from_pretrained(self.model_path, dtype=self.dtype)
            self.tokenizer = CLIPTokenizer.from_pretrained(self.model_path)
            self.processor = CLIPImageProcessorPil.from_pretrained(self.model_path)
        except Exception as exc:  # noqa: BLE001
            raise self.unavailable(f"{type(exc).__name__}: {exc}", exc) from exc
        self.model = model.to(self.device).eval()

    def image_features(self, images: Sequence, batch_size: int = 16) -> np.ndarray:
        """L2-normalised image embeddings, (N, D) float32."""
        import torch

        self.load()
        out = []
        for i in range(0, len(images), batch_size):
            batch = [im.convert("RGB") for im in images[i : i + batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                emb = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
            emb = getattr(emb, "pooler_output", emb)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def text_features(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised text embeddings, (N, D) float32 (texts truncated to 77 tokens)."""
        import torch

        self.load()
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                emb = self.model.get_text_features(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device),
                )
            emb = getattr(emb, "pooler_output", emb)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        self.load()
        return int(self.model.config.projection_dim)


def get_clip(model_path: str | Path, device: str = "cpu", precision: str = "auto") -> ClipBackbone:
    """Per-process registry: each CLIP backbone is loaded once."""
    key = f"{model_path}|{device}|{resolve_precision(precision, device)}"
    with _clip_lock:
        if key not in _clip_cache:
            _clip_cache[key] = ClipBackbone(model_path, device=device, precision=precision)
        return _clip_cache[key].load()


def clip_image_features(clip_model_path: str | Path, images: Sequence) -> np.ndarray:
    """CLIP image embeddings (L2-normalised) of PIL images: features for KID / FID_CLIP."""
    return get_clip(clip_model_path).image_features(images)


def clip_scores(
    clip_model_path: str | Path, images: Sequence, prompts: Sequence[str]
) -> np.ndarray:
    """CLIP-T per image: max(100 * cos(image_i, prompt_i), 0) (torchmetrics' CLIPScore)."""
    if len(images) != len(prompts):
        raise GenerationInputError("clip_scores needs one prompt per image")
    if not images:
        return np.zeros(0, np.float32)
    clip = get_clip(clip_model_path)
    cos = np.sum(clip.image_features(images) * clip.text_features(prompts), axis=1)
    return np.maximum(100.0 * cos, 0.0).astype(np.float32)


def clip_image_similarity(
    clip_model_path: str | Path, images: Sequence, references: Sequence
) -> float:
    """CLIP-I: mean cosine over all (generated, reference) image pairs."""
    if not images or not references:
        raise GenerationInputError("clip_image_similarity needs images and references")
    clip = get_clip(clip_model_path)
    a, b = clip.image_features(images), clip.image_features(references)
    return float(np.mean(a @ b.T))


def clip_evaluate(
    clip_model_path: str | Path,
    images: Sequence,
    prompts: Sequence[str],
    references: Sequence = (),
) -> dict[str, Any]:
    """CLIP-T (and CLIP-I when references are given) as a dict that names the backbone."""
    clip = get_clip(clip_model_path)
    scores = clip_scores(clip_model_path, images, prompts)
    result: dict[str, Any] = {
        "backbone": clip.name,
        "n_images": len(images),
        "clip_t": float(scores.mean()) if len(scores) else float("nan"),
        "clip_t_std": float(scores.std()) if len(scores) else float("nan"),
        "clip_t_convention": "max(100*cos, 0)",
    }
    if references:
        result["clip_i"] = clip_image_similarity(clip_model_path, images, references)
        result["n_references"] = len(references)
    return result


def _as_features(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise GenerationInputError(f"{name} must be a (N >= 2, D) feature array")
    return arr


def kid(
    features_a,
    features_b,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel): (mean, std)."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise GenerationInputError("feature dimensions differ")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise GenerationInputError("KID needs at least 2 samples per set")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(values.mean()), float(values.std())


def fid(features_a, features_b, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise GenerationInputError("feature dimensions differ")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product: regularise (as pytorch-fid does)
        offset = np.eye(s_a.shape[0]) * eps
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)
    return float(max(value, 0.0))
