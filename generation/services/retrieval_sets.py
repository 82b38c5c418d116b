"""Retrieval sets: the paper's Fig. 5 sets a request trains its two LoRAs on, and the
prompt of the prompt-only baseline, both from one reading of the prompt."""

from __future__ import annotations

from generation.models import LoraKind
from generation.services.requests import GenerationRequestError

SET_SLOTS = {LoraKind.ARTIST_STYLE: ("artist", "style"), LoraKind.GENRE_STYLE: ("genre", "style")}


def label_phrase(name: str) -> str:
    """A label's name as words (WikiArt names styles and genres with underscores)."""
    return name.replace("_", " ")


def retrieval_sets_build(prompt: str, k: int, filters: dict | None = None) -> dict:
    """The paper's Fig. 5 retrieval sets: top-k artworks for artist+style and for genre+style.

    The prompt is parsed once, by the search for the whole prompt. Each set then searches
    the prompt's remaining content with its resolved labels, passed by id
    (`retrieval.selectors.artwork_search_by_labels`), within the sub-collection (artworks
    with images only: LoRAs train on images). A set whose attributes the prompt does not
    name falls back to the whole prompt's results.
    """
    from retrieval import selectors as retrieval

    scope = {**(filters or {}), "has_image": "true"}
    try:
        base = retrieval.artwork_search(prompt, k=k, filters=scope)
    except retrieval.SearchInputError as exc:
        raise GenerationRequestError(str(exc)) from exc
    parsed = base.parsed
    matched = {m.slot: m for m in (parsed.matches if parsed else [])}
    content = parsed.content if parsed else prompt
    sets = {}
    for kind, slots in SET_SLOTS.items():
        present = [matched[s] for s in slots if s in matched]
        missing = [s for s in slots if s not in matched]
        if present:
            labels = {m.slot: m.label_id for m in present}
            result = retrieval.artwork_search_by_labels(content, labels, k=k, filters=scope)
            # What the set searched with, for people (it is never parsed again).
            query = ", ".join([*(label_phrase(m.name) for m in present), content]).strip(", ")
        else:
            labels, query, result = {}, prompt, base
        if not result.hits:
            raise GenerationRequestError(
                {"filters": ["no artwork with an image to retrieve in this sub-collection"]}
            )
        sets[str(kind)] = {
            "query": query,
            "labels": labels,
            "attributes": {m.slot: m.name for m in present},
            # Said on the page: a set whose attributes the prompt does not name is not what
            # its name promises ("artist + style" with no artist is a style set).
            "missing": missing,
            "artworks": [[h.artwork.pk, round(float(h.score), 6)] for h in result.hits],
        }
    return {
        "parsed": {
            "content": content,
            "matches": {slot: m.name for slot, m in matched.items()},
            "evidence": {m.slot: m.evidence for m in matched.values()},
            "messages": parsed.messages if parsed else [],
        },
        "index_version": base.index_version,
        "model_id": base.model_id,
        "is_tiny": base.is_tiny,
        "sets": sets,
    }


def baseline_prompt(prompt: str, retrieval: dict) -> str:
    """The prompt-only baseline: the content "in the style of" the resolved attributes
    (`retrieval`: what `retrieval_sets_build` returned); the prompt itself when the prompt
    names no attribute or has no other words."""
    parsed = retrieval.get("parsed") or {}
    matches = parsed.get("matches") or {}
    names = [
        label_phrase(matches[slot]) for slot in ("artist", "style", "genre") if slot in matches
    ]
    content = parsed.get("content") or ""
    if not names or not content:
        return prompt
    return f"{content}, in the style of {', '.join(names)}"
