"""The synthetic demo catalog: what each picture shows matches its title."""

import numpy as np
from PIL import Image

from catalog.demo import DEMO_GENRES, TITLE_WORDS, draw_painting, plan_demo_catalog


def _title_genre(path: str) -> str:
    """The genre whose title words made this work's title (from its file name)."""
    words = path.split("/", 1)[1].split("_", 1)[1].rsplit("-", 1)[0].replace("-", " ")
    found = {
        g
        for g, (first, _second) in TITLE_WORDS.items()
        if any(words.startswith(w.lower()) for w in first)
    }
    assert len(found) == 1, (path, found)
    return found.pop()


def test_every_picture_is_drawn_as_its_title_says_even_without_a_genre_label():
    plan = plan_demo_catalog()
    unlabelled = [w for w in plan if w.genre is None]
    assert len(unlabelled) > 10  # a fifth of the works have no genre label
    for work in plan:
        assert work.subject == _title_genre(work.path), work
        assert work.genre in (None, work.subject)


def test_written_images_draw_the_subject(demo_source):
    plan = plan_demo_catalog()
    seed = 7
    for n, work in enumerate(plan):
        if work.genre is not None:
            continue
        written = np.asarray(Image.open(demo_source / work.path), dtype=np.int16)

        def distance(genre, n=n, work=work, written=written):
            drawn = draw_painting(work.style, genre, seed * 100_003 + n)
            return np.abs(written - np.asarray(drawn, dtype=np.int16)).mean()

        # The stored JPEG is nearest to the drawing of its title's genre (by far).
        mine = distance(work.subject)
        nearest_other = min(distance(g) for g in DEMO_GENRES if g != work.subject)
        assert mine < 0.5 * nearest_other, (work.path, mine, nearest_other)
