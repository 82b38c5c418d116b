"""The per-process label snapshot: artworks get their artist, style and genre without a
join, and a changed label reaches every reader."""

from django.core.cache import cache

from catalog import selectors
from catalog.models import Artist, Artwork, Genre


def _names(artworks):
    return [
        (a.pk, a.artist.name, a.artist.slug, a.style.name, a.genre.name if a.genre else None)
        for a in artworks
    ]


def test_listed_artworks_carry_the_labels_a_join_would_give(
    imported_demo, django_assert_num_queries
):
    joined = list(Artwork.objects.select_related("artist", "style", "genre").order_by("id"))
    assert any(a.genre_id is None for a in joined) and any(a.genre_id for a in joined)
    selectors.label_snapshot()  # warm
    with django_assert_num_queries(1):  # the artworks only; no label is fetched
        listed = list(selectors.artwork_list())
        assert _names(listed) == _names(joined)
    ids = [a.pk for a in joined[:7]]
    with django_assert_num_queries(1):
        bulk = selectors.with_labels(Artwork.objects.all()).in_bulk(ids)
        assert _names(bulk[i] for i in ids) == _names(joined[:7])


def test_a_saved_label_is_seen_at_once(imported_demo):
    artwork = selectors.artwork_list().first()
    before = selectors.label_snapshot()
    artist = Artist.objects.get(pk=artwork.artist_id)
    artist.name = "Renamed Painter"
    artist.save()  # post_save: the token is deleted, every process reloads
    assert selectors.label_snapshot() is not before
    assert selectors.artwork_list().get(pk=artwork.pk).artist.name == "Renamed Painter"
    genre = Genre.objects.create(name="vanitas")
    assert genre.pk in selectors.label_snapshot().genres


def test_unsignalled_writes_are_seen_after_the_token_goes(imported_demo):
    artwork = selectors.artwork_list().first()
    selectors.label_snapshot()
    Artist.objects.filter(pk=artwork.artist_id).update(name="Quietly Renamed")  # no signal
    assert selectors.artwork_list().get(pk=artwork.pk).artist.name != "Quietly Renamed"
    cache.delete(selectors.LABELS_CACHE_KEY)  # what expiry (LABELS_CACHE_SECONDS) does
    assert selectors.artwork_list().get(pk=artwork.pk).artist.name == "Quietly Renamed"


def test_processes_sharing_a_cache_agree_on_one_token(imported_demo):
    mine = selectors.label_snapshot()
    cache.set(selectors.LABELS_CACHE_KEY, "another-process-generation", 60)
    theirs = selectors.label_snapshot()
    assert theirs is not mine and theirs.token == "another-process-generation"
    assert selectors.label_snapshot() is theirs  # no reload while the token stands


def test_a_label_newer_than_the_snapshot_loads_lazily(imported_demo):
    selectors.label_snapshot()
    artwork = Artwork.objects.order_by("id").first()
    newcomer = Artist.objects.bulk_create([Artist(slug="new-hand", name="New Hand")])[0]
    Artwork.objects.filter(pk=artwork.pk).update(artist=newcomer)  # no signal either way
    assert newcomer.pk not in selectors.label_snapshot().artists
    assert selectors.artwork_list().get(pk=artwork.pk).artist.name == "New Hand"


def test_the_import_invalidates_the_snapshot(imported_demo, demo_dir):
    from catalog import services

    first = selectors.label_snapshot()
    services.wikiart_import(demo_dir)  # bulk writes: no signals, so the import says so
    assert selectors.label_snapshot() is not first


def test_without_a_working_cache_labels_are_loaded_each_time(imported_demo, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    artwork = Artwork.objects.order_by("id").first()
    selectors.label_snapshot()
    Artist.objects.filter(pk=artwork.artist_id).update(name="Never Stale")
    assert selectors.artwork_list().get(pk=artwork.pk).artist.name == "Never Stale"
