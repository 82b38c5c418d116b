"""bench/review.py's planting: the wrong labels it plants are plausible and WikiArt's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from catalog.models import Artwork, GenreLabel, LabelSource

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_review", ROOT / "bench" / "review.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db
def test_planted_labels_are_wrong_plausible_wikiart_labels(bench, imported_demo):
    before = dict(Artwork.objects.exclude(genre=None).values_list("id", "genre_id"))
    painted = {}
    for artist, genre in Artwork.objects.exclude(genre=None).values_list("artist_id", "genre_id"):
        painted.setdefault(artist, set()).add(genre)
    planted = bench._plant(Artwork, GenreLabel, LabelSource, 8, seed=1, split="val")
    assert len(planted) == 8
    for art in Artwork.objects.filter(pk__in=planted):
        assert art.genre_split == "val" and art.genre_source == LabelSource.WIKIART
        assert art.genre_id != before[art.pk]  # wrong now
        assert art.genre_id in painted[art.artist_id] or len(painted[art.artist_id]) == 1
        assert art.genre_labels.filter(source=LabelSource.WIKIART).count() == 2
    again = bench._plant(Artwork, GenreLabel, LabelSource, 8, seed=1, split="train")
    assert not Artwork.objects.filter(pk__in=again).exclude(genre_split="train").exists()
