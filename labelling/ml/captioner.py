"""Image captioning with BLIP-2 (OPT): greedy, deterministic captions for artworks."""

from __future__ import annotations

from PIL import Image

from mlcore.precision import resolve_precision
from mlcore.role import RoleRegistry

from .errors import LabellingInputError
from .loading import SharedBlip2Role, check_batch_size, check_images

DEFAULT_CAPTION_MODEL_ID = "Salesforce/blip2-opt-2.7b"


class Captioner(SharedBlip2Role):
    """Captions PIL images with a BLIP-2 checkpoint (hub id or local folder).

    A `ModelRole`: `load()` is lazy and idempotent; the loaded model is shared with
    `GenreVQA` for the same (model id, device, precision). Decoding is greedy (no
    sampling, one beam), so the same image always gets the same caption, alone or in a
    batch.
    """

    def caption(
        self,
        images: list[Image.Image],
        max_new_tokens: int = 30,
        batch_size: int = 8,
        prompt: str | None = None,
    ) -> list[str]:
        """One caption per image, in order: stripped, whitespace collapsed.

        A generation with no text (the model emitted end-of-text at once) is returned as
        "" and the caller decides what to store instead. `prompt` (e.g. "a painting of")
        is fed to the language model after the image; only the continuation is returned.
        """
        images = check_images(images)
        check_batch_size(batch_size)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise LabellingInputError(f"max_new_tokens must be >= 1, not {max_new_tokens!r}")
        if not images:
            return []
        self.load()
        captions: list[str] = []
        for start in range(0, len(images), batch_size):
            captions += self._caption_batch(
                images[start : start + batch_size], max_new_tokens, prompt
            )
        return captions

    def _caption_batch(
        self, images: list[Image.Image], max_new_tokens: int, prompt: str | None
    ) -> list[str]:
        import torch

        loaded = self._shared
        model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.model.config
        pixel_values = loaded.pixel_values(images)
        n = len(images)
        if prompt:
            # As Blip2Processor does: num_query_tokens <image> placeholders, then the text.
            input_ids = tokenizer([prompt] * n, return_tensors="pt").input_ids  # BOS + prompt
            image_ids = torch.full((n, config.num_query_tokens), config.image_token_index)
            input_ids = torch.cat([image_ids, input_ids], dim=1)
        else:
            # Exactly what BLIP-2's generate() builds when given no prompt: images + BOS.
            start = [config.image_token_index] * config.num_query_tokens
            start.append(config.text_config.bos_token_id)
            input_ids = torch.tensor([start] * n)
        input_ids = input_ids.to(loaded.device)
        with torch.inference_mode():
            output = model.generate(
                pixel_values=pixel_values,
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
            )
        if not config.is_encoder_decoder:  # decoder-only LMs return the prompt too
            output = output[:, input_ids.shape[1] :]
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]


_registry = RoleRegistry()


def get_captioner(
    model_id: str = DEFAULT_CAPTION_MODEL_ID,
    device: str = "cpu",
    precision: str = "auto",
    setting: str | None = None,
) -> Captioner:
    """The process-wide `Captioner` for (model id, device, precision), made on first use.

    Not loaded yet: the first `caption()` (or an explicit `load()`) loads it.
    """
    key = (str(model_id), str(device), resolve_precision(precision, str(device)))
    return _registry.get(
        key, lambda: Captioner(model_id, device=device, precision=precision, setting=setting)
    )


def clear_captioners() -> None:
    _registry.clear()
