"""The pgvector mirror on PostgreSQL: fused vectors in a vector column, its HNSW indexes.

Its writes, and the SQL of its index and of "similar artworks" (`retrieval.selectors`
runs that; `bench/pgvector_scale.py` measures it at 1 M rows). The mirror holds the same
fused vectors as the FAISS index; each space gets a partial HNSW index (inner product, as
FAISS scores), and `MirrorBuild` records the catalog a complete mirror is of.
"""

from __future__ import annotations

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction

from retrieval.models import ArtworkVectorMirror, EmbeddingSpace, MirrorBuild


def mirror_upsert(space, ids: list[int], hashes: list[str], fused: np.ndarray) -> None:
    ArtworkVectorMirror.objects.bulk_create(
        [
            ArtworkVectorMirror(space=space, artwork_id=i, fused_hash=h, embedding=v)
            for i, h, v in zip(ids, hashes, fused, strict=True)
        ],
        update_conflicts=True,
        unique_fields=["space", "artwork"],
        update_fields=["fused_hash", "embedding"],
        batch_size=1000,
    )


def pgvector_index_name(space: EmbeddingSpace) -> str:
    return f"retrieval_mirror_hnsw_ip_{space.pk}"


def pgvector_index_sql(table: str, name: str, space_pk: int, dim: int) -> str:
    """The partial HNSW index (inner product) of one space's mirror rows.

    Inner product, as FAISS scores the same vectors: a fused row lacking a label (a fifth
    of WikiArt has no genre) has a zero block and a norm below 1, and cosine would divide
    that away, ranking such rows differently on PostgreSQL than on SQLite (measured on the
    real catalog: exact cosine and exact inner product shared only 91% of the 50 nearest
    neighbours of an artwork). Binary quantisation with exact re-ranking was measured as
    an alternative (`bench/pgvector_scale.py`) and lost on recall at every size tried.
    """
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
        f"USING hnsw ((embedding::vector({dim})) vector_ip_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE space_id = {int(space_pk)}"
    )


def vector_literal(vector) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def similar_sql(
    table: str, space_pk: int, dim: int, vector, exclude_id: int, k: int, allowed=None
) -> tuple[str, list]:
    """(SQL, parameters): the k mirror rows nearest to `vector` by inner product (`<#>` is
    its negative), with FAISS's score, `exclude_id` left out and, with `allowed`, only
    those artwork ids, in the form the partial HNSW index (`pgvector_index_sql`) serves.
    Run it with `hnsw.iterative_scan` on, so that a filtered scan still fills k."""
    cast = f"vector({dim})"
    literal = vector_literal(vector)
    where, params = similar_filter_sql(space_pk, exclude_id, allowed)
    sql = (
        f"SELECT artwork_id, -((embedding::{cast}) <#> %s::{cast}) AS score FROM {table} "
        f"WHERE {where} ORDER BY (embedding::{cast}) <#> %s::{cast} LIMIT %s"
    )
    return sql, [literal, *params, literal, k]


def similar_filter_sql(space_pk: int, exclude_id: int, allowed=None) -> tuple[str, list]:
    """(WHERE clause, parameters) of a "similar artworks" query: the space's rows but
    `exclude_id`, and with `allowed`, only those artwork ids."""
    where = "space_id = %s AND artwork_id <> %s"
    params: list = [space_pk, exclude_id]
    if allowed is not None:
        where += " AND artwork_id = ANY(%s)"
        params.append([int(i) for i in allowed])
    return where, params


def pgvector_index_ensure(space: EmbeddingSpace) -> None:
    """Create the space's partial HNSW index, once (and drop the cosine index of earlier
    versions)."""
    table = ArtworkVectorMirror._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred FK checks from this transaction's inserts would block CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute(f"DROP INDEX IF EXISTS retrieval_mirror_hnsw_{int(space.pk)}")  # cosine
        cursor.execute(
            pgvector_index_sql(table, pgvector_index_name(space), space.pk, space.fused_dim)
        )


def mirror_build_record(space: EmbeddingSpace, identity: str) -> MirrorBuild:
    """Record that the space's pgvector mirror is complete for this catalog (its rows)."""
    rows = ArtworkVectorMirror.objects.filter(space=space).count()
    build, _ = MirrorBuild.objects.update_or_create(
        space=space, defaults={"catalog_id": identity, "rows": rows}
    )
    cache.delete(f"retrieval:mirror:{space.pk}")
    return build
