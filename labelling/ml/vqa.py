"""Genre labels by visual question answering: score each candidate genre as BLIP-2's answer.

For one image and a closed set of genres, the language model reads the image (its
Q-Former query embeddings), the question, and then each genre as the answer; the score
of a genre is the log-likelihood of its answer tokens under teacher forcing. A softmax
over the genre set turns the scores into probabilities that sum to 1.

Cost: the vision encoder + Q-Former run once per image, the language model runs once
over (image, question) per image, and its key/value cache is then shared by all genres,
which only add their few answer tokens, all in one batch.

Length normalisation (default on): a summed log-likelihood adds one negative term per
answer token, so multi-token genres ("sketch and study", "religious painting") lose to
one-token ones ("portrait") whatever the image shows. Dividing by the number of answer
tokens (the mean log-probability per token) removes that bias. It is not free: the later
tokens of a long name are often near-certain once its first word is given ("and study"
after "sketch"), which can flatter long names; `length_normalise=False` gives the plain
sum (the likelihood of the whole answer) for comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mlcore.precision import resolve_precision
from mlcore.role import RoleRegistry

from .errors import LabellingInputError
from .loading import LoadedBlip2, SharedBlip2Role, check_batch_size, check_images

if TYPE_CHECKING:
    import torch

DEFAULT_VQA_MODEL_ID = "Salesforce/blip2-opt-2.7b"
DEFAULT_QUESTION = "Question: What is the genre of this painting? Answer:"


def genre_answer_text(genre: str) -> str:
    """The answer text for a genre name: "still_life" -> "still life" (spaces collapsed)."""
    if not isinstance(genre, str):
        raise LabellingInputError(f"genre names must be strings, not {type(genre).__name__}")
    text = " ".join(genre.replace("_", " ").split())
    if not text:
        raise LabellingInputError(f"empty genre name: {genre!r}")
    return text


def check_genres(genres: list[str]) -> list[str]:
    """Human-form answers for a non-empty list of distinct genre names."""
    if not isinstance(genres, list | tuple) or not genres:
        raise LabellingInputError("genres must be a non-empty list of genre names")
    answers = [genre_answer_text(g) for g in genres]
    seen: dict[str, str] = {}
    for genre, answer in zip(genres, answers, strict=True):
        key = answer.casefold()
        if key in seen:
            raise LabellingInputError(f"duplicate genres: {seen[key]!r} and {genre!r}")
        seen[key] = genre
    return answers


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for very negative log-likelihoods)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class GenreVQA(SharedBlip2Role):
    """Scores candidate genres for images with a BLIP-2 (decoder-only, OPT) checkpoint.

    A `ModelRole`: `load()` is lazy and idempotent; the loaded model is shared with
    `Captioner` for the same (model id, device, precision). Results are deterministic and
    do not depend on how images are batched (up to float rounding, ~1e-6).
    """

    def __init__(
        self,
        model_id: str,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        setting: str | None = None,
        question: str = DEFAULT_QUESTION,
    ):
        if not isinstance(question, str) or not question.strip():
            raise LabellingInputError("the VQA question must be a non-empty string")
        super().__init__(model_id, device=device, precision=precision, setting=setting)
        # The answer is appended as " <genre>", so a trailing space would be doubled.
        self.question = question.rstrip()

    def _accept(self, loaded: LoadedBlip2) -> None:
        if loaded.model.config.is_encoder_decoder:
            raise self.unavailable(
                "genre scoring needs a decoder-only (OPT) BLIP-2 checkpoint, "
                "this one has an encoder-decoder (T5) language model"
            )

    # -- scoring ---------------------------------------------------------------------

    def log_likelihoods(
        self,
        images: list[Image.Image],
        genres: list[str],
        batch_size: int = 8,
        length_normalise: bool = True,
    ) -> np.ndarray:
        """(n_images, n_genres) log-likelihood of each genre as the answer (float64).

        Summed over the answer tokens, or their mean when `length_normalise` is set.
        """
        images = check_images(images)
        answers = check_genres(genres)
        check_batch_size(batch_size)
        if not images:
            return np.zeros((0, len(answers)), dtype=np.float64)
        self.load()
        answer_ids, answer_mask = self._answer_tokens(answers)
        rows = [
            self._score_batch(images[start : start + batch_size], answer_ids, answer_mask)
            for start in range(0, len(images), batch_size)
        ]
        summed = np.concatenate(rows, axis=0)
        if length_normalise:
            return summed / answer_mask.sum(dim=1).numpy().astype(np.float64)[None, :]
        return summed

    def score(
        self,
        images: list[Image.Image],
        genres: list[str],
        batch_size: int = 8,
        length_normalise: bool = True,
    ) -> np.ndarray:
        """(n_images, n_genres) probabilities, each row summing to 1, columns in `genres` order."""
        return softmax(self.log_likelihoods(images, genres, batch_size, length_normalise))

    def predict(
        self,
        images: list[Image.Image],
        genres: list[str],
        batch_size: int = 8,
        length_normalise: bool = True,
    ) -> list[tuple[str, float, np.ndarray]]:
        """Per image: (the most probable genre, as spelled in `genres`; its probability;
        the whole probability row)."""
        probs = self.score(images, genres, batch_size, length_normalise)
        best = probs.argmax(axis=1)
        return [(genres[j], float(row[j]), row) for j, row in zip(best, probs, strict=True)]

    def _answer_tokens(self, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (n_genres, max_len) answer ids and their mask."""
        import torch

        tokenizer = self._shared.tokenizer
        # " " + answer: the answer follows "Answer:" after a space, and byte-level BPE
        # tokenises "Answer: still life" as "Answer", ":", " still", " life".
        encoded = [tokenizer(" " + a, add_special_tokens=False).input_ids for a in answers]
        longest = max(len(ids) for ids in encoded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(encoded), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), longest), dtype=torch.long)
        for i, row in enumerate(encoded):
            if not row:
                raise LabellingInputError(f"genre {answers[i]!r} encodes to no tokens")
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def _score_batch(
        self, images: list[Image.Image], answer_ids: torch.Tensor, answer_mask: torch.Tensor
    ) -> np.ndarray:
        """Summed answer log-likelihoods (len(images), n_genres) for one batch of images."""
        import torch

        loaded = self._shared
        model, device = loaded.model, loaded.device
        lm = model.language_model
        n_images, n_genres = len(images), answer_ids.shape[0]
        answer_ids, answer_mask = answer_ids.to(device), answer_mask.to(device)

        with torch.inference_mode():
            # 1. Vision encoder + Q-Former + projection: once per image.
            pixel_values = loaded.pixel_values(images)
            image_embeds = model.get_image_features(pixel_values=pixel_values).pooler_output
            # 2. (image, question) through the language model: once per image.
            question_ids = loaded.tokenizer(self.question, return_tensors="pt").input_ids
            question_embeds = model.get_input_embeddings()(question_ids.to(device))
            prefix = torch.cat(
                [
                    image_embeds.to(question_embeds.dtype),
                    question_embeds.expand(n_images, -1, -1),
                ],
                dim=1,
            )
            prefix_mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=device)
            out = lm(inputs_embeds=prefix, attention_mask=prefix_mask, use_cache=True)
            # The last prefix position predicts every answer's first token.
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            total = first[:, answer_ids[:, 0]]  # (n_images, n_genres)
            if answer_ids.shape[1] > 1:
                # 3. All genres at once, sharing each image's cached prefix: row
                # i * n_genres + g is (image i, genre g).
                cache = out.past_key_values
                cache.batch_repeat_interleave(n_genres)
                inputs = answer_ids[:, :-1].repeat(n_images, 1)
                targets = answer_ids[:, 1:].repeat(n_images, 1)
                target_mask = answer_mask[:, 1:].repeat(n_images, 1)
                attention = torch.cat(
                    [
                        prefix_mask.repeat_interleave(n_genres, dim=0),
                        answer_mask[:, :-1].repeat(n_images, 1),
                    ],
                    dim=1,
                )
                rest = lm(
                    input_ids=inputs,
                    attention_mask=attention,
                    past_key_values=cache,
                    use_cache=False,
                ).logits
                logp = torch.log_softmax(rest.float(), dim=-1)
                picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * target_mask
                total = total + picked.sum(dim=1).view(n_images, n_genres)
        return total.double().cpu().numpy()


_registry = RoleRegistry()


def get_vqa(
    model_id: str = DEFAULT_VQA_MODEL_ID,
    device: str = "cpu",
    precision: str = "auto",
    setting: str | None = None,
    question: str = DEFAULT_QUESTION,
) -> GenreVQA:
    """The process-wide `GenreVQA` for (model id, device, precision, question), made on
    first use. Not loaded yet: the first `score()` (or an explicit `load()`) loads it.
    """
    key = (str(model_id), str(device), resolve_precision(precision, str(device)), question)
    return _registry.get(
        key,
        lambda: GenreVQA(
            model_id, device=device, precision=precision, setting=setting, question=question
        ),
    )


def clear_vqas() -> None:
    _registry.clear()


__all__ = [
    "DEFAULT_QUESTION",
    "DEFAULT_VQA_MODEL_ID",
    "GenreVQA",
    "check_genres",
    "genre_answer_text",
    "get_vqa",
    "softmax",
]
