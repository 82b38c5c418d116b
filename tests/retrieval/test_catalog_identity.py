"""No silent wrong answers (issue #15, item 8): an index and the pgvector mirror record the
catalog they were built from, a process refuses to serve another catalog's, and two
databases sharing one index folder keep their own indexes. Also: two `embed_catalog` runs
at once (the second waits for the first)."""

from __future__ import annotations

import shutil
import threading
import uuid

import pytest
from django.core.cache import cache
from django.db import connection

from catalog.models import Artwork
from retrieval import catalog_embedding, selectors, services
from retrieval.models import ArtworkEmbedding, CatalogIdentity, EmbeddingSpace, MirrorBuild

PROMPT = "quiet hills, landscape"


def _become_another_catalog() -> str:
    """This database now holds "another catalog" (as a second database would)."""
    new = uuid.uuid4()
    CatalogIdentity.objects.update(catalog_id=new)
    cache.delete("retrieval:catalog-id")
    return str(new)


@pytest.mark.django_db
def test_the_migration_gives_the_catalog_an_id_that_the_index_records(indexed_demo):
    identity = CatalogIdentity.objects.get()
    assert services.catalog_id() == str(identity.catalog_id)
    space = EmbeddingSpace.objects.get()
    root = services.index_root(space)
    assert root.parent.name == str(identity.catalog_id) and root.name == space.key
    loaded = selectors.index_served(space)
    assert loaded.meta["user"]["catalog_id"] == str(identity.catalog_id)
    assert loaded.meta["user"]["catalog_rows"] == Artwork.objects.count() == loaded.n
    status = selectors.index_status()
    assert status["built"] and status["catalog_id"] == str(identity.catalog_id)


@pytest.mark.django_db
def test_two_catalogs_sharing_the_index_folder_keep_their_own_indexes(indexed_demo):
    """The issue's case: the demo database and a real one in one checkout, one
    MYTHRAGEN_INDEX_DIR. Before: one folder per space, so the second rebuild replaced the
    first catalog's index and its searches answered with the other catalog's artworks."""
    first = selectors.artwork_search(PROMPT, k=5)
    first_id = services.catalog_id()
    _become_another_catalog()
    with pytest.raises(services.RetrievalUnavailable, match="No search index is built yet"):
        selectors.artwork_search(PROMPT, k=5)  # its own folder: nothing built there yet
    other = services.index_rebuild()  # the second database builds its own
    assert other.version != first.index_version
    CatalogIdentity.objects.update(catalog_id=first_id)  # back to the first database
    cache.delete("retrieval:catalog-id")
    again = selectors.artwork_search(PROMPT, k=5)
    assert again.index_version == first.index_version  # its own index, untouched


@pytest.mark.django_db
def test_an_index_of_another_catalog_is_refused_with_the_command_that_rebuilds_it(
    indexed_demo, client
):
    space = EmbeddingSpace.objects.get()
    built_for = services.index_root(space)
    ours = _become_another_catalog()
    # Someone copies (or mounts) the other catalog's index where this one's belongs.
    shutil.copytree(built_for, services.index_root(space))
    selectors.index_store(space).reload()
    with pytest.raises(services.IndexOfAnotherCatalog) as refused:
        selectors.artwork_search(PROMPT, k=5)
    message = str(refused.value)
    assert "another catalog" in message and ours in message
    assert "python manage.py build_index" in message
    assert str(settings_root()) not in message  # no server path in an anonymous answer

    api = client.get("/api/search/", {"q": PROMPT})
    assert api.status_code == 503 and "build_index" in api.json()["detail"]
    page = client.get("/search/", {"q": PROMPT})
    assert page.status_code == 200 and b"another catalog" in page.content
    art = Artwork.objects.first()
    if connection.vendor != "postgresql":  # (PostgreSQL answers from the mirror)
        similar = client.get(f"/api/artworks/{art.pk}/similar/")
        assert similar.status_code == 503 and "build_index" in similar.json()["detail"]
        fragment = client.get(f"/artworks/{art.pk}/similar/")
        assert fragment.status_code == 200 and b"another catalog" in fragment.content
    status = selectors.index_status()
    assert status["built"] is False and "another catalog" in status["problem"]

    services.index_rebuild()  # the command the message names
    assert selectors.artwork_search(PROMPT, k=5).hits


def settings_root():
    from django.conf import settings

    return settings.RETRIEVAL_INDEX_DIR


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_pgvector_mirror_of_another_catalog_is_refused(indexed_demo, client):
    space = EmbeddingSpace.objects.get()
    build = MirrorBuild.objects.get(space=space)
    assert str(build.catalog_id) == services.catalog_id() and build.rows == Artwork.objects.count()
    art = Artwork.objects.first()
    assert selectors.artwork_similar(art, k=3)
    _become_another_catalog()
    cache.clear()
    with pytest.raises(services.IndexOfAnotherCatalog, match="pgvector mirror.*build_index"):
        selectors.artwork_similar(art, k=3)
    answer = client.get(f"/api/artworks/{art.pk}/similar/")
    assert answer.status_code == 503 and "build_index" in answer.json()["detail"]
    MirrorBuild.objects.all().delete()
    cache.clear()
    with pytest.raises(services.RetrievalUnavailable, match="mirror is not built yet"):
        selectors.artwork_similar(art, k=3)
    services.index_rebuild()
    assert selectors.artwork_similar(art, k=3)


@pytest.mark.django_db(transaction=True)
def test_two_embed_catalog_runs_at_once_take_turns(imported_demo):
    """A command and a rebuild job embedding the same catalog at once: the second waits for
    the first (and says so), then finds everything up to date. Before, both inserted the
    same rows and the second failed on the unique constraint."""
    from jobs.locks import LockBusy, exclusive

    services.embedder_get()  # loaded once, outside the race
    first_in, release = threading.Event(), threading.Event()
    real = catalog_embedding._embed_catalog  # noqa: SLF001
    reports, waits = {}, []

    def held_open(*args, **kwargs):
        if threading.current_thread().name == "first":
            first_in.set()
            assert release.wait(timeout=60)
        return real(*args, **kwargs)

    catalog_embedding._embed_catalog = held_open  # noqa: SLF001
    try:

        def run(name, progress=None):
            try:
                reports[name] = catalog_embedding.embed_catalog(progress=progress)
            except Exception as exc:  # noqa: BLE001 - the test checks the outcome
                reports[name] = exc
            finally:
                connection.close()

        first = threading.Thread(target=run, args=("first",), name="first")
        first.start()
        assert first_in.wait(timeout=60)
        second = threading.Thread(
            target=run, args=("second", lambda d, t, s="": waits.append(s)), name="second"
        )
        second.start()
        second.join(timeout=2)
        assert second.is_alive()  # waiting for the first ...
        assert waits and "waiting for another embedding run (pid " in waits[0]  # ... saying so
        space = EmbeddingSpace.objects.get()
        with (
            pytest.raises(LockBusy, match="already running"),
            exclusive(f"embed_catalog:{space.key}", wait=False),
        ):
            pass
        release.set()
        first.join(timeout=120)
        second.join(timeout=120)
    finally:
        catalog_embedding._embed_catalog = real  # noqa: SLF001
        release.set()
    n = Artwork.objects.count()
    assert reports["first"].captions_embedded == n, reports
    assert reports["second"].captions_embedded == 0 and reports["second"].up_to_date == n
    assert ArtworkEmbedding.objects.count() == n
