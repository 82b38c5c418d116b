"""Turning a prompt into slots: which artist, style and genre it names, and what is left.

Pure Python (no Django, no models): `PromptParser` is built from the catalog's
vocabulary and recognises names in a prompt such as "a harbour at dawn by Claude Monet,
impressionism" -> artist Claude Monet, style Impressionism, content "a harbour at dawn".
Artists match by full name, or by surname when it is unique in the catalog ("Picasso's
Cubism"); styles also by their adjective ("impressionist", "cubist"); genres by their
name and a few common words ("nude", "religious", "sketch").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

GENRE_ALIASES = {
    "abstract_painting": ["abstract painting", "abstract"],
    "cityscape": ["cityscape", "city view", "townscape"],
    "genre_painting": ["genre painting", "genre scene"],
    "illustration": ["illustration"],
    "landscape": ["landscape"],
    "nude_painting": ["nude painting", "nude"],
    "portrait": ["portrait"],
    "religious_painting": ["religious painting", "religious"],
    "sketch_and_study": ["sketch and study", "sketch", "study"],
    "still_life": ["still life", "still-life"],
}
# Words that join names to the rest of a prompt; dropped when they dangle.
CONNECTORS = {"by", "in", "the", "style", "of", "a", "an", "and", "painted", "with", "s"}
PARTICLES = {"van", "von", "de", "da", "del", "della", "di", "du", "le", "la", "der", "ter"}
STOP_SURNAMES = {"art", "the", "painting", "style", "study", "life", "still", "city"}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"'s\b", "", text)
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


@dataclass(frozen=True)
class Vocabulary:
    """Names to recognise: (id, name) pairs for artists, styles and genres."""

    artists: list[tuple[int, str]]
    styles: list[tuple[int, str]]
    genres: list[tuple[int, str]]


@dataclass
class Match:
    slot: str
    label_id: int
    name: str
    text: str  # the words of the prompt that matched

    @property
    def display_name(self) -> str:
        """The name as people read it (WikiArt names styles and genres with
        underscores: "Ukiyo_e" is shown as "Ukiyo e", as the catalog shows it)."""
        return self.name.replace("_", " ")


@dataclass
class ParsedPrompt:
    prompt: str
    content: str
    artist: Match | None = None
    style: Match | None = None
    genre: Match | None = None
    matches: list[Match] = field(default_factory=list)


def _style_forms(name: str) -> list[str]:
    base = normalise(name.replace("_", " "))
    forms = {base}
    if base.endswith("ism"):
        forms.add(base[:-3] + "ist")
    if base == "ukiyo e":
        forms.add("ukiyoe")
    if base == "naive art primitivism":
        forms |= {"naive art", "primitivism", "naive"}
    if base == "art nouveau":
        forms.add("art nouveau modern")
    if base == "mannerism late renaissance":
        forms |= {"mannerism", "late renaissance", "mannerist"}
    return sorted(forms)


class PromptParser:
    """Recognises catalog names in prompts; build once per vocabulary."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        phrases: dict[str, tuple[str, int, str]] = {}
        surnames: dict[str, list[tuple[int, str]]] = {}
        for label_id, name in vocabulary.artists:
            full = normalise(name)
            if full:
                phrases.setdefault(full, ("artist", label_id, name))
                words = full.split()
                last = words[-1]
                if len(words) >= 3 and words[-2] in PARTICLES:
                    last = " ".join(words[-2:])  # "van gogh", "de vlaminck"
                if len(last) >= 4 and last not in STOP_SURNAMES and len(words) > 1:
                    surnames.setdefault(last, []).append((label_id, name))
        for last, owners in surnames.items():
            if len(owners) == 1:
                phrases.setdefault(last, ("artist", owners[0][0], owners[0][1]))
        for label_id, name in vocabulary.styles:
            for form in _style_forms(name):
                phrases.setdefault(form, ("style", label_id, name))
        for label_id, name in vocabulary.genres:
            for form in GENRE_ALIASES.get(name, [name.replace("_", " ")]):
                phrases.setdefault(normalise(form), ("genre", label_id, name))
        # Longest phrases first, so "still life" wins over "life", "van gogh" over "gogh".
        ordered = sorted(phrases, key=lambda p: (-len(p.split()), -len(p)))
        self._phrases = phrases
        self._pattern = (
            re.compile(r"\b(" + "|".join(re.escape(p) for p in ordered) + r")\b")
            if ordered
            else None
        )

    def parse(self, prompt: str) -> ParsedPrompt:
        text = normalise(prompt)
        parsed = ParsedPrompt(prompt=prompt, content=text)
        if self._pattern is None or not text:
            return parsed
        keep: list[str] = []
        pos = 0
        for m in self._pattern.finditer(text):
            slot, label_id, name = self._phrases[m.group(1)]
            if getattr(parsed, slot) is not None:
                continue  # the first mention of a slot wins; later ones stay content
            match = Match(slot=slot, label_id=label_id, name=name, text=m.group(1))
            setattr(parsed, slot, match)
            parsed.matches.append(match)
            keep.append(text[pos : m.start()])
            pos = m.end()
        keep.append(text[pos:])
        words = " ".join(keep).split()
        while words and words[-1] in CONNECTORS:
            words.pop()
        while words and words[0] in CONNECTORS - {"a", "an", "the"}:
            words.pop(0)
        parsed.content = " ".join(words)
        return parsed
