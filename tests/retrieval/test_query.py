"""Prompt parsing: names in a prompt fill their slots, the rest is content."""

import pytest

from retrieval.query import PromptParser, Vocabulary

VOCAB = Vocabulary(
    artists=[
        (1, "Claude Monet"),
        (2, "Pablo Picasso"),
        (3, "Vincent van Gogh"),
        (4, "Jean Monet"),
        (5, "Rembrandt"),
    ],
    styles=[(10, "Impressionism"), (11, "Cubism"), (12, "Ukiyo_e"), (13, "Art_Nouveau")],
    genres=[(20, "still_life"), (21, "landscape"), (22, "portrait"), (23, "nude_painting")],
)


@pytest.fixture(scope="module")
def parser():
    return PromptParser(VOCAB)


@pytest.mark.parametrize(
    ("prompt", "slots", "content"),
    [
        (
            "a harbour at dawn by Claude Monet, impressionism",
            {"artist": "Claude Monet", "style": "Impressionism"},
            "a harbour at dawn",
        ),
        ("in the style of Picasso's Cubism", {"artist": "Pablo Picasso", "style": "Cubism"}, ""),
        (
            "still life with apples, van gogh",
            {"genre": "still_life", "artist": "Vincent van Gogh"},
            "apples",
        ),
        ("a cubist portrait", {"style": "Cubism", "genre": "portrait"}, ""),
        ("ukiyo-e waves", {"style": "Ukiyo_e"}, "waves"),
        ("a nude by Rembrandt", {"genre": "nude_painting", "artist": "Rembrandt"}, ""),
        ("belle ile rain effect", {}, "belle ile rain effect"),
    ],
)
def test_prompt_slots_and_content(parser, prompt, slots, content):
    parsed = parser.parse(prompt)
    assert {m.slot: m.name for m in parsed.matches} == slots
    assert parsed.content == content


def test_ambiguous_surname_is_not_guessed(parser):
    parsed = parser.parse("Monet garden at Giverny")
    assert parsed.artist is None and "monet" in parsed.content


def test_first_mention_of_a_slot_wins(parser):
    parsed = parser.parse("landscape or portrait")
    assert parsed.genre.name == "landscape" and "portrait" in parsed.content


def test_empty_vocabulary_and_prompt():
    empty = PromptParser(Vocabulary([], [], []))
    assert empty.parse("anything at all").content == "anything at all"
    assert PromptParser(VOCAB).parse("   ").matches == []


@pytest.mark.parametrize(
    "prompt", ["the isle of the dead by Arnold Böcklin", "the isle of the dead by arnold bocklin"]
)
def test_repaired_real_names_match_with_or_without_accents(prompt):
    from catalog.wikiart import artist_name_from_slug

    names = ["arnold-bã¶cklin", "joaquã\xadn-sorolla", "claude-monet"]
    parser = PromptParser(
        Vocabulary([(i, artist_name_from_slug(s)) for i, s in enumerate(names)], [], [])
    )
    parsed = parser.parse(prompt)
    assert [(m.slot, m.name) for m in parsed.matches] == [("artist", "Arnold Böcklin")]
    assert parsed.content == "the isle of the dead"
    sorolla = parser.parse("sewing the sail, Joaquin Sorolla")
    assert [m.name for m in sorolla.matches] == ["Joaquín Sorolla"]
