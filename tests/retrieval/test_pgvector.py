"""The pgvector mirror on PostgreSQL: rows, the HNSW index and filtered queries."""

import pytest
from django.db import connection, transaction

from catalog.models import Artwork
from retrieval import selectors
from retrieval.models import ArtworkVectorMirror, EmbeddingSpace
from retrieval.pgvector import pgvector_index_name, similar_sql

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_mirror_holds_every_fused_vector(indexed_demo):
    space = EmbeddingSpace.objects.get()
    assert ArtworkVectorMirror.objects.filter(space=space).count() == Artwork.objects.count()
    row = ArtworkVectorMirror.objects.filter(space=space).first()
    assert len(row.embedding) == space.fused_dim


def _plan(cursor, space, art_id: int, allowed=None, k: int = 5) -> str:
    row = ArtworkVectorMirror.objects.get(space=space, artwork_id=art_id)
    table = ArtworkVectorMirror._meta.db_table
    sql, params = similar_sql(table, space.pk, space.fused_dim, row.embedding, art_id, k, allowed)
    cursor.execute("EXPLAIN " + sql, params)
    return "\n".join(r[0] for r in cursor.fetchall())


def test_similar_uses_the_hnsw_index(indexed_demo):
    space = EmbeddingSpace.objects.get()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny table: force the planner's hand
        plan = _plan(cursor, space, Artwork.objects.first().pk)
    assert pgvector_index_name(space) in plan


def test_filtered_similar_returns_k_rows_when_they_exist(indexed_demo):
    art = Artwork.objects.exclude(style__name="Minimalism").first()
    pairs = selectors.artwork_similar(art, k=10, filters={"style": "Minimalism"})
    n = Artwork.objects.filter(style__name="Minimalism").count()
    assert len(pairs) == min(10, n) and {a.style.name for a, _s in pairs} == {"Minimalism"}
    scores = [s for _a, s in pairs]
    assert scores == sorted(scores, reverse=True)


def test_filtered_similar_through_the_hnsw_index_still_returns_k_rows(indexed_demo, settings):
    """The demo table is small enough for the planner to prefer an exact scan, which
    always fills k: switch that off so the HNSW index answers, as it does on the real
    catalog, and narrow its beam to 10 candidates (the demo has 120 artworks; the real
    catalog's 81k dwarf the default 100). Few of those are in one style: without iterative
    scans the query came back short."""
    settings.RETRIEVAL_PG_EF_SEARCH = 10
    art = Artwork.objects.exclude(style__name="Minimalism").first()
    n = Artwork.objects.filter(style__name="Minimalism").count()
    space = EmbeddingSpace.objects.get()
    assert n >= 10 and Artwork.objects.count() > 5 * n  # a selective filter
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # undone with the test's transaction
        cursor.execute("SET enable_sort = off")
        allowed = list(
            Artwork.objects.filter(style__name="Minimalism").values_list("id", flat=True)
        )
        plan = _plan(cursor, space, art.pk, allowed, k=10)
    assert pgvector_index_name(space) in plan
    pairs = selectors.artwork_similar(art, k=10, filters={"style": "Minimalism"})
    assert len(pairs) == 10 and {a.style.name for a, _s in pairs} == {"Minimalism"}


def test_pgvector_and_faiss_agree_on_neighbours(indexed_demo):
    from retrieval.selectors import index_store

    art = Artwork.objects.first()
    space = EmbeddingSpace.objects.get()
    pg = [a.pk for a, _s in selectors.artwork_similar(art, k=5)]
    loaded = index_store(space).current()
    _scores, ids = loaded.search(loaded.vector_of(art.pk)[None, :], 6)
    faiss_ids = [int(i) for i in ids[0] if i != art.pk][:5]
    assert len(set(pg) & set(faiss_ids)) >= 4


def test_similar_scores_are_the_inner_products_faiss_gives(indexed_demo):
    """A query artwork without a genre has a zero genre block (norm sqrt(3)/2): cosine
    would score its neighbours 1/0.866 higher than FAISS's inner product does, and rank
    rows lacking a genre differently. pgvector uses the inner product too."""
    from retrieval.selectors import index_store

    art = Artwork.objects.filter(genre__isnull=True).order_by("id").first()
    assert art is not None
    space = EmbeddingSpace.objects.get()
    loaded = index_store(space).current()
    vector = loaded.vector_of(art.pk)
    assert abs(float(vector @ vector) - 0.75) < 1e-4  # three of four blocks
    pairs = selectors.artwork_similar(art, k=6)
    scores, ids = loaded.search(vector[None, :], 7)
    expected = [float(s) for i, s in zip(ids[0], scores[0], strict=True) if i != art.pk][:6]
    # The same best scores (robust to ties between identical rows) ...
    assert [s for _a, s in pairs] == pytest.approx(expected, abs=1e-5)
    # ... and each one is the inner product with that very artwork (cosine is not).
    for other, score in pairs:
        assert score == pytest.approx(float(vector @ loaded.vector_of(other.pk)), abs=1e-5)
