"""4. Curators correcting one artwork at the same moment (one connection each)."""

import threading

import pytest
from django.db import connection

from tests.helpers import wait_for


def _in_thread(target, results: dict, name: str) -> threading.Thread:
    """Run `target` in a thread with its own database connection; keep its outcome."""

    def run():
        try:
            results[name] = target()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            results[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_curators_correcting_one_artwork_at_once_exactly_one_wins(imported_demo, django_user_model):
    """Extends tests/labelling/test_services.py (two corrections one after the other) with
    real concurrency: four curators who all saw the same version write at the same moment,
    each on its own connection. Exactly one correction lands; the others are refused with a
    conflict naming who changed it; the history holds exactly one new curator label."""
    from catalog.models import Artwork, Genre, GenreLabel
    from labelling import services

    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    genres = list(Genre.objects.exclude(pk=art.genre_id)[:4])
    users = [django_user_model.objects.create_user(f"curator{i}", "", "pw") for i in range(4)]
    barrier = threading.Barrier(len(users))
    results: dict = {}

    def correct(i):
        def write():
            barrier.wait(timeout=30)
            return services.genre_label_correct(
                art.pk, genres[i], user=users[i], expected_version=seen
            )

        return write

    threads = [_in_thread(correct(i), results, f"c{i}") for i in range(len(users))]
    for thread in threads:
        thread.join(timeout=60)
    won = [n for n, r in results.items() if isinstance(r, GenreLabel)]
    lost = [r for r in results.values() if isinstance(r, services.GenreConflict)]
    assert len(won) == 1 and len(lost) == 3, results
    winner = int(won[0][1:])
    art.refresh_from_db()
    assert art.genre == genres[winner] and art.label_version == seen + 1
    assert all(f"{users[winner].username} changed" in str(c) for c in lost)
    assert GenreLabel.objects.filter(artwork=art, source="curator").count() == 1


def _second_curator_behind_the_first(django_user_model, monkeypatch):
    """Force, on PostgreSQL, the interleaving that loses an edit without locking: curator A
    holds the artwork's row (mid-write) while B's write starts. Checks that B waits on the
    row lock (seen in pg_stat_activity); returns (artwork, A's genre, B's outcome)."""
    from catalog.models import Artwork, Genre, GenreLabel
    from labelling import services

    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    first_genre, second_genre = Genre.objects.exclude(pk=art.genre_id)[:2]
    alice = django_user_model.objects.create_user("alice", "", "pw")
    bob = django_user_model.objects.create_user("bob", "", "pw")
    a_holds_the_row, release_a, b_pid = threading.Event(), threading.Event(), []
    real_add = services.genre_label_add

    def add_slowly(*args, **kwargs):
        if threading.current_thread().name == "alice":
            a_holds_the_row.set()
            assert release_a.wait(timeout=60)
        return real_add(*args, **kwargs)

    monkeypatch.setattr(services, "genre_label_add", add_slowly)
    results: dict = {}

    def bob_writes():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            b_pid.append(cursor.fetchone()[0])
        return services.genre_label_correct(art.pk, second_genre, user=bob, expected_version=seen)

    a = _in_thread(
        lambda: services.genre_label_correct(
            art.pk, first_genre, user=alice, expected_version=seen
        ),
        results,
        "alice",
    )
    assert a_holds_the_row.wait(timeout=30)
    b = _in_thread(bob_writes, results, "bob")

    def bob_waits_on_a_lock():
        if not b_pid:
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", b_pid)
            row = cursor.fetchone()
        return row is not None and row[0] == "Lock"

    try:
        wait_for(bob_waits_on_a_lock, timeout=30, interval=0.02)
        assert "bob" not in results  # still blocked behind alice
    finally:
        release_a.set()
        a.join(timeout=30)
        b.join(timeout=30)
    assert isinstance(results["alice"], GenreLabel), results
    art.refresh_from_db()
    assert art.genre == first_genre and art.label_version == seen + 1
    labels = GenreLabel.objects.filter(artwork=art, source="curator")
    assert list(labels.values_list("user__username", flat=True)) == ["alice"]
    return art, first_genre, results["bob"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_curator_waits_for_the_first_and_is_then_refused(
    imported_demo, django_user_model, monkeypatch
):
    """B waits for A's row lock, then sees A's version and is refused: A's edit stands."""
    from labelling.services import GenreConflict

    _art, _genre, bob = _second_curator_behind_the_first(django_user_model, monkeypatch)
    assert isinstance(bob, GenreConflict) and "alice changed this artwork's genre" in str(bob)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_refused_curator_is_told_the_genre_that_won(
    imported_demo, django_user_model, monkeypatch
):
    _art, genre, bob = _second_curator_behind_the_first(django_user_model, monkeypatch)
    assert bob.current_genre == genre.name
    assert f"changed this artwork's genre to {genre.display_name}" in str(bob)
