"""Turning a prompt into slots: which artist, style and genre it names, and what is left.

Pure Python (no Django, no models): `PromptParser` is built from the catalog's
vocabulary and reads a prompt as a person would, e.g. "a harbour at dawn by Chiyo
Hanabusa, ukiyo-e" -> artist Chiyo Hanabusa, style Ukiyo_e, content "a harbour at dawn".

A name is linked only on evidence, which every match carries (the pages show it):
- an artist's full name ("Chuck Close");
- a surname that one artist of the catalog has, when the prompt marks it as a name:
  "by Close", "Close's", "in the style of Close" (also "manner of", "after");
- a surname alone only when it is not also a common word (COMMON_WORD_NAMES: "close",
  "church", "rose", "still", ... stay content: "a portrait of a close friend" is no
  Chuck Close);
- a style by its name or adjective ("impressionism", "impressionist", "cubist");
- a genre by its name or a few common words ("nude", "religious", "sketch").

What the prompt names but the catalog lacks is reported, never dropped silently:
`ParsedPrompt.unknown` lists artists ("by Claude Monet" in a catalog without him), styles
and genres known to art history but not among the catalog's labels ("surrealism",
"seascape"), and surnames shared by several artists ("Monet": give the full name).
`ParsedPrompt.reconcile` drops a style or genre that the linked artist never painted in
(the caller looks that up in the catalog), following the strongest intent, the artist.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

GENRE_ALIASES = {
    "abstract_painting": ["abstract painting", "abstract"],
    "cityscape": ["cityscape", "city view", "townscape"],
    "genre_painting": ["genre painting", "genre scene"],
    "illustration": ["illustration"],
    "landscape": ["landscape"],
    "nude_painting": ["nude painting", "nude"],
    "portrait": ["portrait", "self portrait"],
    "religious_painting": ["religious painting", "religious"],
    "sketch_and_study": ["sketch and study", "sketch", "study"],
    "still_life": ["still life", "still-life"],
}
# Words that join names to the rest of a prompt; dropped when they dangle.
CONNECTORS = {"by", "in", "the", "style", "of", "a", "an", "and", "painted", "with", "s", "after"}
PARTICLES = {"van", "von", "de", "da", "del", "della", "di", "du", "le", "la", "der", "ter"}
STOP_SURNAMES = {"art", "the", "painting", "style", "study", "life", "city"}
# Surnames (and one-word names) of WikiArt artists that are also everyday English words,
# given names or places: alone they are read as words, never as the artist. Chosen by hand
# from the real catalog's 1,119 names.
_COMMON_WORD_NAMES = """
    aachen afro apple bell bill bowling brothers brown bush cane chase chicago church claus
    close coat constable cross dart david denis dove elder fine fish francis frank frost
    goes graves green guys held heron homer horn hunt indiana john louis maria martin
    messina miller moses north palermo porter porto reed robert rose smith springer steer
    stern still stout stuck sultan thomas tour turner vermont verona ward watts weir west
    wheeler wright younger benjamin
"""
COMMON_WORD_NAMES = frozenset(_COMMON_WORD_NAMES.split())
# Words right before a surname that mark it as a name ("by Close", "style of Close").
NAME_CUES = {("by",): "by", ("style", "of"): "style of", ("manner", "of"): "manner of"}
NAME_CUES[("after",)] = "after"
# Styles and genres of art history that ArtGAN's WikiArt classes do not have: a prompt
# naming one is told so instead of having the word silently searched as content.
OTHER_STYLES = (
    "surrealism", "surrealist", "dada", "dadaism", "dadaist", "futurism", "futurist",
    "art deco", "neoclassicism", "neoclassical", "neo classicism", "academicism",
    "academic art", "constructivism", "constructivist", "suprematism", "tonalism",
    "luminism", "pre raphaelite", "pre raphaelites", "op art", "photorealism",
    "hyperrealism", "conceptual art", "orientalism", "divisionism", "cloisonnism",
    "synthetism", "precisionism", "regionalism", "lyrical abstraction", "tachisme",
    "art informel", "kinetic art", "street art", "vorticism", "orphism", "rayonism",
    "neoplasticism", "de stijl", "bauhaus", "ashcan school", "barbizon school",
    "biedermeier", "naturalism", "classicism", "gothic", "byzantine", "magic realism",
    "socialist realism", "social realism", "neo expressionism", "neo impressionism",
    "post minimalism",
)  # fmt: skip
OTHER_GENRES = [
    "seascape",
    "marina",
    "marine painting",
    "battle painting",
    "history painting",
    "mythological painting",
    "allegorical painting",
    "animal painting",
    "flower painting",
    "veduta",
    "capriccio",
    "vanitas",
    "caricature",
    "cloudscape",
    "wildlife painting",
    "literary painting",
    "interior",
]
# "-ism" words that are not art styles.
COMMON_ISMS = {
    "tourism",
    "mechanism",
    "organism",
    "criticism",
    "optimism",
    "pessimism",
    "journalism",
    "heroism",
    "magnetism",
    "prism",
    "schism",
    "baptism",
    "rheumatism",
    "autism",
    "racism",
    "sexism",
    "terrorism",
    "patriotism",
    "egoism",
    "altruism",
    "skepticism",
    "scepticism",
    "truism",
    "exorcism",
    "aphorism",
    "witticism",
    "favouritism",
    "metabolism",
    "dynamism",
    "lyricism",
    "mysticism",
    "eroticism",
    "exoticism",
}
_WORD = re.compile(r"[A-Za-z0-9]+")
_POSSESSIVE = re.compile(r"'s\b")
_BREAK = re.compile(r"[,;:.!?()\[\]\"]")


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces ("Picasso's" -> "picasso")."""
    return " ".join(t.word for t in _tokenise(text))


@dataclass(frozen=True)
class Token:
    word: str  # lower-case ASCII
    original: str  # as written (accents folded)
    possessive: bool  # followed by 's
    capital: bool  # written with a capital letter
    breaks_before: bool  # a comma, full stop, ... between it and the previous word


def _tokenise(text: str) -> list[Token]:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    tokens: list[Token] = []
    end = 0
    for m in _WORD.finditer(text):
        if tokens and m.group(0).lower() == "s" and text[m.start() - 1 : m.start()] == "'":
            continue  # the s of "Picasso's": the previous token carries it
        gap = text[end : m.start()]
        after = text[m.end() : m.end() + 3]
        tokens.append(
            Token(
                word=m.group(0).lower(),
                original=m.group(0),
                possessive=bool(_POSSESSIVE.match(after)),
                capital=m.group(0)[0].isupper(),
                breaks_before=bool(_BREAK.search(gap)),
            )
        )
        end = m.end()
    return tokens


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
    evidence: str = ""  # why the words were read as this name
    span: tuple[int, int] = (0, 0)  # token positions [start, end)

    @property
    def display_name(self) -> str:
        """The name as people read it (WikiArt names styles and genres with
        underscores: "Ukiyo_e" is shown as "Ukiyo e", as the catalog shows it)."""
        return self.name.replace("_", " ")


@dataclass
class Unknown:
    """Words that name an artist, style or genre the catalog does not have."""

    slot: str
    text: str
    message: str


@dataclass
class ParsedPrompt:
    prompt: str
    content: str
    artist: Match | None = None
    style: Match | None = None
    genre: Match | None = None
    matches: list[Match] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the search did about the prompt
    words: list[str] = field(default_factory=list, repr=False)

    @property
    def messages(self) -> list[str]:
        """Every message for the person who wrote the prompt: unknown names, then notes."""
        return [u.message for u in self.unknown] + self.notes

    def without(self, slot: str, note: str) -> ParsedPrompt:
        """The same reading less the `slot` match, whose words become content again."""
        kept = [m for m in self.matches if m.slot != slot]
        return replace(
            self,
            content=_content(self.words, kept),
            matches=kept,
            notes=[*self.notes, note],
            **{slot: None},
        )

    def reconcile(self, artist_labels: Callable[[int], tuple[set[int], set[int]]]):
        """Drop a linked style or genre the linked artist has no works in, with a note.

        `artist_labels(artist_id)` gives the style ids and genre ids of the artist's works
        in the catalog. An artist and a style that never meet would rank the style's works
        by other painters first; the artist is the strongest intent, so it is followed.
        """
        if self.artist is None or (self.style is None and self.genre is None):
            return self
        styles, genres = artist_labels(self.artist.label_id)
        parsed = self
        for slot, present in (("style", styles), ("genre", genres)):
            match = getattr(parsed, slot)
            if match is not None and match.label_id not in present:
                parsed = parsed.without(
                    slot,
                    f"{self.artist.name} has no {match.display_name} works in the catalog: "
                    f"the search follows the artist (“{match.text}” is searched as a word).",
                )
        return parsed


GENERATIONS = {"younger", "elder", "jr", "sr", "ii", "iii"}


def surname_words(words: tuple[str, ...]) -> tuple[str, ...]:
    """A name's surname (normalised words): the last word with the particles before it
    ("van der goes", "de la tour"), less a generational suffix ("holbein" of "hans holbein
    the younger")."""
    w = list(words)
    if len(w) > 2 and w[-1] in GENERATIONS:
        w = w[:-1]
        if len(w) > 2 and w[-1] == "the":
            w = w[:-1]
    start = len(w) - 1
    while start > 1 and w[start - 1] in PARTICLES:
        start -= 1
    return tuple(w[start:])


def _content(words: list[str], matches: Iterable[Match]) -> str:
    """The prompt's words outside the matches, less connectors left dangling."""
    taken = set()
    for m in matches:
        taken.update(range(*m.span))
    pieces: list[list[str]] = [[]]
    for i, word in enumerate(words):
        if i in taken:
            if pieces[-1]:
                pieces.append([])
        else:
            pieces[-1].append(word)
    # Connectors that joined a piece to a removed name dangle: "a [portrait] of a close
    # friend" keeps "a close friend", "a harbour by [Monet]" keeps "a harbour".
    for piece in pieces:
        while piece and piece[-1] in CONNECTORS:
            piece.pop()
        while piece and piece[0] in CONNECTORS - {"a", "an", "the"}:
            piece.pop(0)
    return " ".join(" ".join(p) for p in pieces if p)


def _style_forms(name: str) -> list[str]:
    base = normalise(name.replace("_", " "))
    forms = {base}
    if base.endswith("ism"):
        forms.add(base[:-3] + "ist")  # "cubist", "impressionist"
        if base != "realism":  # "realistic" is an everyday word, not the movement
            forms.add(base[:-3] + "istic")
    if base == "ukiyo e":
        forms.add("ukiyoe")
    if base == "naive art primitivism":
        forms |= {"naive art", "primitivism", "naive"}
    if base == "art nouveau":
        forms.add("art nouveau modern")
    if base == "mannerism late renaissance":
        forms |= {"mannerism", "late renaissance", "mannerist"}
    if base == "color field painting":
        forms |= {"color field", "colour field", "colour field painting"}
    return sorted(forms)


@dataclass(frozen=True)
class _Entry:
    slot: str  # artist | style | genre | other-style | other-genre | ambiguous
    label_id: int = 0
    name: str = ""
    kind: str = ""  # full | surname | style | genre
    owners: tuple[str, ...] = ()


class PromptParser:
    """Recognises catalog names in prompts; build once per vocabulary."""

    MAX_PHRASE = 6

    def __init__(self, vocabulary: Vocabulary) -> None:
        table: dict[tuple[str, ...], _Entry] = {}
        surnames: dict[tuple[str, ...], list[tuple[int, str]]] = {}
        for label_id, name in vocabulary.artists:
            words = tuple(normalise(name).split())
            if not words:
                continue
            table.setdefault(words, _Entry("artist", label_id, name, "full"))
            if len(words) < 2:
                continue
            surname = surname_words(words)
            # With its particles ("van gogh", "de la tour") and without ("gogh", "tour").
            for last in {surname, surname[-1:]}:
                if len(" ".join(last)) >= 4 and last[-1] not in STOP_SURNAMES:
                    surnames.setdefault(last, []).append((label_id, name))
        for last, owners in surnames.items():
            if last in table:
                continue  # a one-word artist of that name
            if len(owners) == 1:
                table[last] = _Entry("artist", owners[0][0], owners[0][1], "surname")
            else:
                names = tuple(sorted(n for _i, n in owners))
                table[last] = _Entry("ambiguous", kind="surname", owners=names)
        style_names = {}
        for label_id, name in vocabulary.styles:
            style_names[name] = label_id
            for form in _style_forms(name):
                table.setdefault(tuple(form.split()), _Entry("style", label_id, name, "style"))
        renaissance = sorted(n.replace("_", " ") for n in style_names if "Renaissance" in n)
        if renaissance:
            table.setdefault(
                ("renaissance",), _Entry("ambiguous", kind="style", owners=tuple(renaissance))
            )
        for label_id, name in vocabulary.genres:
            for form in GENRE_ALIASES.get(name, [name.replace("_", " ")]):
                table.setdefault(
                    tuple(normalise(form).split()), _Entry("genre", label_id, name, "genre")
                )
        known_genres = {n for _i, n in vocabulary.genres}
        for form in OTHER_STYLES:
            table.setdefault(tuple(form.split()), _Entry("other-style", name=form))
        for form in OTHER_GENRES:
            if form.replace(" ", "_") not in known_genres:
                table.setdefault(tuple(form.split()), _Entry("other-genre", name=form))
        self._table = table
        self._genres = sorted(n.replace("_", " ") for n in known_genres)
        self._styles = sorted(n.replace("_", " ") for n in style_names)

    # -- reading ---------------------------------------------------------------------

    def parse(self, prompt: str) -> ParsedPrompt:
        tokens = _tokenise(prompt)
        words = [t.word for t in tokens]
        parsed = ParsedPrompt(prompt=prompt, content=" ".join(words), words=words)
        if not tokens:
            return parsed
        taken: set[int] = set()
        i = 0
        while i < len(tokens):
            found = self._match_at(tokens, i, parsed)
            if found is None:
                i += 1
                continue
            length, match, unknown = found
            if match is not None and getattr(parsed, match.slot) is None:
                setattr(parsed, match.slot, match)
                parsed.matches.append(match)
                taken.update(range(i, i + length))
            elif unknown is not None and unknown.message not in parsed.messages:
                parsed.unknown.append(unknown)
            i += length
        self._unknown_artists(tokens, taken, parsed)
        parsed.content = _content(words, parsed.matches)
        return parsed

    def _match_at(self, tokens: list[Token], i: int, parsed: ParsedPrompt):
        """The longest phrase at token i read as a name: (length, Match, Unknown) or None."""
        words = [t.word for t in tokens]
        for length in range(min(self.MAX_PHRASE, len(tokens) - i), 0, -1):
            key = tuple(words[i : i + length])
            entry = self._table.get(key)
            if entry is None:
                continue
            text = " ".join(t.original for t in tokens[i : i + length])
            span = (i, i + length)
            if entry.slot == "other-style":
                return length, None, self._other("style", text)
            if entry.slot == "other-genre":
                return length, None, self._other("genre", text)
            if entry.slot == "ambiguous":
                if entry.kind == "surname" and not self._name_evidence(tokens, i, length, key):
                    continue
                what = "artists" if entry.kind == "surname" else "styles"
                return (
                    length,
                    None,
                    Unknown(
                        "artist" if entry.kind == "surname" else "style",
                        text,
                        f"“{text}” could be any of these {what}: {', '.join(entry.owners)}. "
                        "Give the full name to use one.",
                    ),
                )
            if entry.kind == "surname":
                evidence = self._name_evidence(tokens, i, length, key)
                if evidence is None:
                    continue  # a common word, not a name here
            elif entry.kind == "full" and entry.slot == "artist":
                if len(key) == 1 and key[0] in COMMON_WORD_NAMES:
                    evidence = self._name_evidence(tokens, i, length, key)
                    if evidence is None:
                        continue
                else:
                    evidence = f"full name “{text}”"
            elif entry.slot == "style":
                evidence = f"style word “{text}”"
            else:
                evidence = f"genre word “{text}”"
            return (
                length,
                Match(entry.slot, entry.label_id, entry.name, key_text(key), evidence, span),
                None,
            )
        ism = words[i]
        if ism.endswith("ism") and len(ism) >= 7 and ism not in COMMON_ISMS and ism.isalpha():
            return 1, None, self._other("style", tokens[i].original)
        return None

    def _name_evidence(self, tokens, i: int, length: int, key) -> str | None:
        """Why a surname is read as a name here, or None when nothing says so."""
        text = " ".join(t.original for t in tokens[i : i + length])
        before = tuple(t.word for t in tokens[max(0, i - 2) : i])
        for cue, label in NAME_CUES.items():
            if before[-len(cue) :] == cue and not tokens[i].breaks_before:
                return f"surname after “{label}”: “{label} {text}”"
        if tokens[i + length - 1].possessive:
            return f"possessive “{text}'s”"
        if " ".join(key) not in COMMON_WORD_NAMES:
            return f"surname “{text}” (not a common word)"
        return None

    def _other(self, slot: str, text: str) -> Unknown:
        if slot == "style":
            return Unknown(
                "style",
                text,
                f"“{text}” is not one of the catalog's {len(self._styles)} styles: it is "
                "searched as a word.",
            )
        return Unknown(
            "genre",
            text,
            f"“{text}” is not one of the catalog's genres ({', '.join(self._genres)}): it is "
            "searched as a word.",
        )

    def _unknown_artists(self, tokens: list[Token], taken: set[int], parsed: ParsedPrompt):
        """Names after "by", "style of" or before "'s" that match no artist of the catalog.

        Capitalised words mark a name; in a prompt written all in lower case, the words
        after "by"/"style of" up to a comma (at most four) do.
        """
        lower = not any(t.capital for t in tokens)
        claimed = {u.text.lower() for u in parsed.unknown}
        starts = []
        for i, token in enumerate(tokens):
            prev = tuple(t.word for t in tokens[max(0, i - 2) : i])
            cue = any(prev[-len(c) :] == c for c in NAME_CUES if c != ("after",))
            if cue and i not in taken and not token.breaks_before:
                starts.append((i, "cue"))
            elif token.possessive and token.capital and i not in taken and i > 0:
                starts.append((i, "possessive"))
        for i, why in starts:
            name: list[Token] = []
            if why == "possessive":
                j = i
                while j > 0 and tokens[j - 1].capital and j - 1 not in taken:
                    j -= 1
                name = [t for t in tokens[j : i + 1] if t.capital]
            else:
                for j in range(i, min(i + 4, len(tokens))):
                    t = tokens[j]
                    if j in taken or (j > i and t.breaks_before) or t.word in CONNECTORS:
                        break
                    if not (t.capital or (lower and t.word.isalpha())):
                        break
                    name.append(t)
                    if t.possessive:
                        break
                if lower and len(name) < 2:
                    continue  # one lower-case word after "by" is as likely a word
            text = " ".join(t.original for t in name)
            if not name or text.lower() in claimed or not text[:1].isalpha():
                continue
            claimed.add(text.lower())
            parsed.unknown.append(
                Unknown(
                    "artist",
                    text,
                    f"“{text}” is not an artist in the catalog: it is searched as words, "
                    "not as an artist.",
                )
            )


def key_text(key: tuple[str, ...]) -> str:
    return " ".join(key)
