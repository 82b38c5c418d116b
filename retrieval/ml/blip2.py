"""`Blip2Embedder`: BLIP-2 Q-Former image-text contrastive (ITC) embeddings, 256-d.

As in the MythraGen paper (`Salesforce/blip2-itm-vit-g`). The text vector is the projected
[CLS] output of the Q-Former text branch,
`Blip2TextModelWithProjection(...).text_embeds[:, 0]`. An image gives 32 projected,
normalised query-token vectors, `Blip2VisionModelWithProjection(...).image_embeds` of
shape (B, 32, 256); BLIP-2's own ITC score for a (text, image) pair is the MAX cosine over
those 32 tokens.

Image pooling (one 256-d vector per image for the fused index)
---------------------------------------------------------------
A single-vector index needs one vector per image; BLIP-2 scores with the max over 32. The
options exposed as `image_pooling` are:

* ``"mean"`` (default): mean of the 32 normalised token vectors, renormalised. Its cosine
  with a text vector is the average token cosine divided by the norm of the mean, a smooth
  proxy for the max, and it lives in the same space as text [CLS] vectors, which is what
  the fused content vector (image + caption + genre) adds together.
* ``"first"``: query token 0 only (discards 31/32 of what the Q-Former extracted).
* ``"max"``: element-wise max over tokens, renormalised (not a point on the model's own
  similarity; included as a baseline).

Measured on tiny models (random weights; 200 synthetic images of coloured discs, 100
random captions from the tiny vocabulary; target = the model's own max-over-tokens ITC
ranking of the 200 images for each caption; mean over captions of the top-10 overlap and
of Spearman's rho between the pooled-vector scores and the target):

    model                                   mean          first         max
    built tiny model (init 0.3, tokens       0.69 / 0.93   0.66 / 0.90   0.48 / 0.87
      of one image at cosine ~0.95)
    9 variants (init 0.1/0.3/1.0 x 3 seeds) 0.57 / 0.89   0.50 / 0.83   0.47 / 0.86
      average; mean best in 6 of 9

The mean reproduces the max-over-tokens ranking best on average, so it is the default.
With random weights these figures say how faithfully one pooled vector stands in for the 32
tokens, not how good retrieval is; the overlap is far from 1, so when exact BLIP-2 scores
matter, re-rank the top hits with `embed_image_tokens` + `max_token_scores` (which
reproduces `Blip2ForImageTextRetrieval`'s ITC `logits_per_image`; a test checks it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from retrieval.ml.embedding import (
    TextImageEmbedder,
    check_batch_size,
    check_image_batch,
    l2_normalise,
    quiet_transformers,
    torch_threads,
)

DEFAULT_BLIP2_RETRIEVAL_ID = "Salesforce/blip2-itm-vit-g"
IMAGE_POOLINGS = ("mean", "first", "max")


class Blip2Embedder(TextImageEmbedder):
    """BLIP-2 Q-Former ITC embeddings (256-d) for texts and images.

    The text and vision halves are separate models (`Blip2TextModelWithProjection`,
    `Blip2VisionModelWithProjection`) read from the same checkpoint. `load()` loads the
    text half only (what a search prompt needs: the Q-Former, ~0.1 B parameters); the ViT-g
    vision tower (~1 B) loads on the first image, or by `load_images()`. From safetensors,
    loading one half reads only its own tensors: a web process that embeds prompts never
    maps or copies the vision weights (bench/models.py measures it).
    """

    what = "BLIP-2 retrieval model"
    has_image = True
    # What the first image costs a process that so far only encoded prompts (the page shows
    # it). ViT-g/14 at 224 px: 0.99 B parameters, 2 bytes each in bfloat16, 4 in float32.
    image_side_cost = (
        "the first image search loads BLIP-2's ViT-g vision tower (about 1 B parameters: "
        "2 GB in bfloat16, 4 GB in float32) into the serving process; prompts need only "
        "the text half (about 0.1 B)"
    )

    def __init__(
        self,
        model_id: str | os.PathLike | None = None,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = None,
        image_pooling: str = "mean",
        max_length: int = 64,
    ):
        super().__init__(
            str(model_id or DEFAULT_BLIP2_RETRIEVAL_ID),
            device=device,
            precision=precision,
            setting=setting,
        )
        if image_pooling not in IMAGE_POOLINGS:
            raise ValueError(
                f"image_pooling must be one of {IMAGE_POOLINGS}, got {image_pooling!r}"
            )
        self.image_pooling = image_pooling
        self.max_length = max_length
        self.dim = 256
        self.num_query_tokens = 32
        self._text_model = None
        self._tokenizer = None
        self._vision_model = None
        self._image_processor = None

    def _from_pretrained(self, cls, what: str):
        try:
            with quiet_transformers():
                model, info = cls.from_pretrained(
                    self.model_id, dtype=self.dtype, output_loading_info=True
                )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            reason = "no local copy and no hub access"
            if not isinstance(exc, OSError):
                reason = f"{type(exc).__name__}: {exc}"
            raise self.unavailable(reason, exc) from exc
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            # E.g. a captioning checkpoint without the ITC projections: random projections
            # would give meaningless vectors, so refuse instead of serving them.
            raise self.unavailable(
                f"not a BLIP-2 image-text retrieval checkpoint: the {what} side lacks "
                f"{len(missing)} weights such as {missing[0]!r}"
            )
        return model.to(self.device).eval()

    def _load_text(self) -> None:
        if self._text_model is not None:
            return
        with self._lock:
            if self._text_model is not None:
                return
            self.check_local()
            from transformers import AutoTokenizer, Blip2TextModelWithProjection

            model = self._from_pretrained(Blip2TextModelWithProjection, "text")
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_id)
            except (OSError, ValueError) as exc:
                raise self.unavailable(f"tokenizer: {type(exc).__name__}: {exc}", exc) from exc
            config = model.config
            self.dim = int(config.image_text_hidden_size)
            self.num_query_tokens = int(config.num_query_tokens)
            max_positions = int(config.qformer_config.max_position_embeddings)
            self.max_length = min(self.max_length, max_positions)
            self._tokenizer = tokenizer
            self._text_model = model

    def _load_vision(self) -> None:
        if self._vision_model is not None:
            return
        with self._lock:
            if self._vision_model is not None:
                return
            self.check_local()
            from transformers import Blip2VisionModelWithProjection
            from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

            model = self._from_pretrained(Blip2VisionModelWithProjection, "vision")
            try:
                processor = BlipImageProcessorPil.from_pretrained(self.model_id)
            except (OSError, ValueError) as exc:
                raise self.unavailable(
                    f"image processor: {type(exc).__name__}: {exc}", exc
                ) from exc
            self.dim = int(model.config.image_text_hidden_size)
            self.num_query_tokens = int(model.config.num_query_tokens)
            self._image_processor = processor
            self._vision_model = model

    def _load(self) -> None:
        self._load_text()

    def load_images(self) -> Blip2Embedder:
        """Load the vision half too (workers that embed the catalog's images)."""
        self.load()
        self._load_vision()
        return self

    @property
    def vision_loaded(self) -> bool:
        return self._vision_model is not None

    def _unload(self) -> None:
        self._text_model = self._tokenizer = None
        self._vision_model = self._image_processor = None

    # Texts embed through the base class's `embed_texts` (`load()` is the text half);
    # the image methods below load the vision half (see the class docstring).
    def _embed_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                encoded = self._tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                result = self._text_model(
                    input_ids=encoded["input_ids"].to(self.device),
                    attention_mask=encoded["attention_mask"].to(self.device),
                )
                out[rows] = result.text_embeds[:, 0, :].float().cpu().numpy()
        return out

    def _image_tokens(self, images: list[Any], batch_size: int) -> Iterator[np.ndarray]:
        import torch

        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = [image.convert("RGB") for image in images[start : start + batch_size]]
                pixels = self._image_processor(images=batch, return_tensors="pt")["pixel_values"]
                pixels = pixels.to(self.device, dtype=self.dtype)
                result = self._vision_model(pixel_values=pixels)
                yield result.image_embeds.float().cpu().numpy()

    def _embed_images(self, images: list[Any], batch_size: int) -> np.ndarray:
        pooled = [
            pool_tokens(t, self.image_pooling) for t in self._image_tokens(images, batch_size)
        ]
        return np.concatenate(pooled, axis=0)

    def embed_images(
        self, images: Sequence[Any], batch_size: int = 32, *, threads: int | None = None
    ) -> np.ndarray:
        images = check_image_batch(images)
        batch_size = check_batch_size(batch_size)
        self.load_images()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_images(images, batch_size))

    def embed_image_tokens(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """The 32 normalised query-token vectors per image: (n, 32, dim) float32."""
        images = check_image_batch(images)
        batch_size = check_batch_size(batch_size)
        self.load_images()
        if not images:
            return np.zeros((0, self.num_query_tokens, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(list(self._image_tokens(images, batch_size)), axis=0))


def pool_tokens(tokens: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """One unit vector per image from its (T, d) query-token vectors: (n, T, d) -> (n, d).

    See the module docstring for the choice of "mean" and the measurements behind it.
    """
    tokens = np.asarray(tokens, dtype=np.float32)
    if pooling == "mean":
        pooled = tokens.mean(axis=1)
    elif pooling == "first":
        pooled = tokens[:, 0, :]
    elif pooling == "max":
        pooled = tokens.max(axis=1)
    else:
        raise ValueError(f"image pooling must be one of {IMAGE_POOLINGS}, got {pooling!r}")
    return l2_normalise(pooled)
