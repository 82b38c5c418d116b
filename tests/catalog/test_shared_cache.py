"""Every web worker sees the same catalog caches: the label snapshot's generation token,
the counts and what is derived from the labels live in Django's cache (CACHE_URL), and a
write drops them there, so another process sees the change at once, not a minute later."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from catalog import selectors
from catalog.models import Genre, Style
from tests import helpers

pytestmark = pytest.mark.django_db(transaction=True)

READ = (
    "import json, django; django.setup(); from catalog import selectors as s; "
    "snap = s.label_snapshot(); print(json.dumps({'token': s.labels_token(), "
    "'styles': s.catalog_counts()['styles'], "
    "'names': sorted(x.name for x in snap.styles.values())}))"
)


@pytest.fixture
def shared_cache(settings, tmp_path):
    """A cache every process on this machine shares (as Redis is, across machines)."""
    folder = tmp_path / "cache"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(folder),
        }
    }
    return f"filecache://{folder}"


def _other_worker(cache_url: str) -> dict:
    """What another web worker (a separate process on the same database) reads."""
    out = subprocess.run(
        [sys.executable, "-c", READ],
        cwd=helpers.ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": helpers.test_database_url(),
            "CACHE_URL": cache_url,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_another_worker_sees_the_same_labels_and_counts_and_every_change_at_once(
    shared_cache,
):
    Style.objects.create(name="baroque")
    Genre.objects.create(name="portrait")
    token = selectors.labels_token()
    assert selectors.catalog_counts()["styles"] == 1  # cached now, for 30 s
    other = _other_worker(shared_cache)
    assert other == {"token": token, "styles": 1, "names": ["baroque"]}

    Style.objects.create(name="cubism")  # a write: its signal drops the shared entries
    here = selectors.label_snapshot()
    assert sorted(s.name for s in here.styles.values()) == ["baroque", "cubism"]
    assert here.token != token and selectors.catalog_counts()["styles"] == 2
    other = _other_worker(shared_cache)
    assert other == {"token": here.token, "styles": 2, "names": ["baroque", "cubism"]}


def test_label_derived_entries_follow_the_label_generation(shared_cache):
    from catalog.models import Artist

    artist = Artist.objects.create(slug="a-b", name="A B")
    assert selectors.artist_label_ids(artist.pk) == (set(), set())
    first = selectors.labels_token()
    Genre.objects.create(name="landscape")  # a label write: a new generation
    assert selectors.labels_token() != first
    # Entries of the old generation are not read again (the key names the generation).
    old, new = (f"catalog:artist-labels:{t}:{artist.pk}" for t in (first, selectors.labels_token()))
    assert selectors.cache.get(old) is not None and selectors.cache.get(new) is None
