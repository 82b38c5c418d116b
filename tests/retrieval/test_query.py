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


# -- reading like a person: names only on evidence, unknown names said ------------------

REAL_LIKE = Vocabulary(
    artists=[
        (1, "Chuck Close"),
        (2, "Caravaggio"),
        (3, "Pablo Picasso"),
        (4, "Frederic Edwin Church"),
        (5, "Clyfford Still"),
        (6, "Afro"),
        (7, "Claude Monet"),
        (8, "Jean Monet"),
    ],
    styles=[(10, "Realism"), (11, "Baroque"), (12, "Impressionism"), (13, "Cubism")]
    + [(14, "Early_Renaissance"), (15, "High_Renaissance")],
    genres=[(20, "portrait"), (21, "landscape"), (22, "still_life"), (23, "religious_painting")],
)


@pytest.fixture(scope="module")
def real_parser():
    return PromptParser(REAL_LIKE)


@pytest.mark.parametrize(
    ("prompt", "artist", "evidence"),
    [
        ("a portrait of a close friend", None, None),  # a common word alone
        ("a portrait of a close friend by Close", "Chuck Close", "surname after “by”"),
        ("Chuck Close's self-portrait", "Chuck Close", "full name"),
        ("a church on a hill", None, None),
        ("a church on a hill in the style of Church", "Frederic Edwin Church", "style of"),
        ("Church's sunset", "Frederic Edwin Church", "possessive"),
        ("an afro hairstyle", None, None),  # a one-word name that is a word
        ("a still life in the manner of Still", "Clyfford Still", "manner of"),
        ("guitar, picasso", "Pablo Picasso", "not a common word"),  # a rare surname alone
    ],
)
def test_a_name_is_linked_only_on_evidence(real_parser, prompt, artist, evidence):
    parsed = real_parser.parse(prompt)
    assert (parsed.artist.name if parsed.artist else None) == artist, parsed.matches
    if evidence:
        assert evidence in parsed.artist.evidence, parsed.artist.evidence
    if artist is None:
        assert parsed.unknown == []  # a common word is no unknown artist either


def test_every_match_carries_its_evidence(real_parser):
    parsed = real_parser.parse("a cubist portrait by Picasso")
    assert {m.slot: m.evidence for m in parsed.matches} == {
        "style": "style word “cubist”",
        "genre": "genre word “portrait”",
        "artist": "surname after “by”: “by Picasso”",
    }


def test_connectors_around_a_removed_name_do_not_stay_in_the_content(real_parser):
    assert real_parser.parse("a portrait of a close friend").content == "a close friend"
    assert real_parser.parse("a harbour by Caravaggio at dawn").content == "a harbour at dawn"


@pytest.mark.parametrize(
    ("prompt", "slot", "text", "says"),
    [
        ("a harbour at dawn by Salvador Dali", "artist", "Salvador Dali", "not an artist"),
        ("a harbour by claude manet, impressionism", "artist", "claude manet", "not an artist"),
        ("a sea in Turner's light", "artist", "Turner", "not an artist"),
        ("a surrealist dream", "style", "surrealist", "not one of the catalog's 6 styles"),
        ("art deco poster", "style", "art deco", "not one of the catalog's"),
        ("a seascape at night", "genre", "seascape", "not one of the catalog's genres"),
        ("Monet water lilies", "artist", "Monet", "Claude Monet, Jean Monet"),
        ("a renaissance madonna", "style", "renaissance", "Early Renaissance, High Renaissance"),
        ("dadaism collage", "style", "dadaism", "not one of the catalog's"),
        ("an unknownism study", "style", "unknownism", "not one of the catalog's"),
    ],
)
def test_names_the_catalog_lacks_are_said_not_dropped(real_parser, prompt, slot, text, says):
    parsed = real_parser.parse(prompt)
    assert [(u.slot, u.text) for u in parsed.unknown] == [(slot, text)], parsed.unknown
    assert says in parsed.unknown[0].message
    assert parsed.messages == [parsed.unknown[0].message]
    assert getattr(parsed, slot) is None


@pytest.mark.parametrize(
    "prompt",
    [
        "a cottage by the sea",  # "by" + a connector
        "painted by moonlight",  # one lower-case word after "by"
        "criticism of tourism",  # -isms that are no styles
        "a landscape by Caravaggio",  # a known artist
    ],
)
def test_ordinary_words_are_not_reported_as_unknown_names(real_parser, prompt):
    assert real_parser.parse(prompt).unknown == []


def test_contradictory_labels_follow_the_artist_and_say_so(real_parser):
    parsed = real_parser.parse(
        "captured with striking realism, dramatic light, inspired by Caravaggio"
    )
    assert {m.slot for m in parsed.matches} == {"artist", "style"}
    # Caravaggio's works in the catalog: Baroque portraits and religious paintings only.
    reconciled = parsed.reconcile(lambda artist_id: ({11}, {20, 23}))
    assert [m.name for m in reconciled.matches] == ["Caravaggio"]
    assert reconciled.style is None and reconciled.artist.name == "Caravaggio"
    assert "realism" in reconciled.content.split()  # the word still counts as content
    assert reconciled.notes == [
        "Caravaggio has no Realism works in the catalog: the search follows the artist "
        "(“realism” is searched as a word)."
    ]
    # Labels that meet in the catalog are kept as they are.
    assert parsed.reconcile(lambda artist_id: ({10, 11}, set())) is parsed
    portrait = real_parser.parse("a landscape by Caravaggio").reconcile(lambda a: ({11}, {20}))
    assert portrait.genre is None and "landscape" in portrait.content


@pytest.mark.parametrize(
    ("prompt", "artist"),
    [
        ("an altarpiece by van der Goes", "Hugo Van Der Goes"),
        ("an altarpiece by Goes", "Hugo Van Der Goes"),  # a common word, but after "by"
        ("the goes of a river", None),  # the word alone
        ("a pastel in the style of de La Tour", "Maurice Quentin De La Tour"),
        ("a portrait by Holbein", "Hans Holbein The Younger"),  # no generational suffix
        ("Gogh's irises", "Vincent van Gogh"),
    ],
)
def test_surnames_keep_their_particles_and_lose_their_suffixes(prompt, artist):
    parser = PromptParser(
        Vocabulary(
            [
                (1, "Hugo Van Der Goes"),
                (2, "Maurice Quentin De La Tour"),
                (3, "Hans Holbein The Younger"),
                (4, "Vincent van Gogh"),
            ],
            [],
            [],
        )
    )
    parsed = parser.parse(prompt)
    assert (parsed.artist.name if parsed.artist else None) == artist, parsed
