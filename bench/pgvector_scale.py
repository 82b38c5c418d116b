"""The pgvector mirror at scale: "similar artworks" over 1 M fused vectors in PostgreSQL.

    .venv/bin/python bench/pgvector_scale.py --rows 1000000 [--kinds float,bq,half]
        [--small-rows 200000] [--queries 50] [--candidates 200,400,800]
        [--ef-search 100,200,400] [--storage PLAIN]
        [--stage generate,load,index,serve] [--work DIR]

The catalog is `bench/scale.py`'s (WikiArt's structure scaled up; generated once into
`--work`), loaded into an embedded PostgreSQL 18 + pgvector (`config.pgserver`) in a
table of the mirror's columns (`ArtworkVectorMirror`: a `vector` of 1,536-d fused rows).
Index kinds, each built on the `--rows` table (`--kinds`) and on a `--small-rows` table:

- `float`: what production builds and asks (`retrieval.pgvector.pgvector_index_sql` and
  `similar_sql`): HNSW over the float rows by inner product, `hnsw.ef_search` as
  `RETRIEVAL_PG_EF_SEARCH`;
- `bq`, an alternative tried (SQL here): HNSW over binary-quantised rows (Hamming), the
  `--candidates` nearest re-ranked by the exact inner product;
- `half`, another (SQL here): HNSW over the rows cast to `halfvec` (2 bytes a dimension),
  ordered by the halfvec inner product, at each `--ef-search`.

Queries are what "similar artworks" asks: an artwork's own fused vector, k 50, itself
excluded, unrestricted and restricted to one style's artworks (as the page's filters),
with iterative index scans (a filtered query must still return 50 rows). Recall@50 is
tie-aware against the exact top 50 over the same rows (numpy, structure-aware:
`slot_exact_rows`), whose time per query is printed beside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

K = 50
D = 4 * 384  # fused width: four 384-d blocks
TABLE, SPACE = "mirror_bench", 1


def connect(work: Path):
    import psycopg
    from pgvector.psycopg import register_vector

    from config.pgserver import ensure_server

    conn = psycopg.connect(ensure_server(work / "pg"), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def load(work: Path, table: str, rows: int, storage: str = "") -> dict:
    from scale import load_parts

    parts, _ids = load_parts(work)
    rows = min(rows, parts.n)
    conn = connect(work)
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    # The mirror's columns (retrieval.models.ArtworkVectorMirror), without its foreign keys.
    conn.execute(
        f"CREATE TABLE {table} (id bigserial PRIMARY KEY, space_id bigint NOT NULL, "
        "artwork_id bigint NOT NULL, fused_hash varchar(64) NOT NULL DEFAULT '', "
        "embedding vector NOT NULL)"
    )
    if storage:  # the mirror's column storage (retrieval.pgvector.MIRROR_STORAGE)
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE {storage}")
    started = time.perf_counter()
    step = 20_000
    with conn.cursor() as cur:
        for start in range(0, rows, step):
            fused = parts.fused(np.arange(start, min(start + step, rows)))
            with cur.copy(
                f"COPY {table} (space_id, artwork_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "vector"])
                for i, v in enumerate(fused):
                    copy.write_row((SPACE, start + i + 1, v))
    conn.execute(f"CREATE UNIQUE INDEX ON {table} (space_id, artwork_id)")
    conn.execute(f"ANALYZE {table}")
    size = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]
    return {"rows": rows, "load_s": round(time.perf_counter() - started, 1), "table_gb": size / 1e9}


def bq_index_sql(table: str, name: str, dim: int) -> str:
    """The alternative tried: HNSW over binary-quantised rows (Hamming distance)."""
    return (
        f"CREATE INDEX {name} ON {table} USING hnsw "
        f"((binary_quantize(embedding::vector({dim}))::bit({dim})) bit_hamming_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE space_id = {SPACE}"
    )


def bq_similar_sql(table: str, dim: int, vector, exclude_id: int, k: int, allowed, cand: int):
    """Its query: the `cand` nearest quantised rows, re-ranked by the exact inner product."""
    from retrieval.pgvector import similar_filter_sql, vector_literal

    cast, bits, literal = f"vector({dim})", f"bit({dim})", vector_literal(vector)
    where, params = similar_filter_sql(SPACE, exclude_id, allowed)
    sql = (
        f"SELECT artwork_id, -((embedding::{cast}) <#> %s::{cast}) AS score FROM ("
        f"SELECT artwork_id, embedding FROM {table} WHERE {where} "
        f"ORDER BY binary_quantize(embedding::{cast})::{bits} "
        f"<~> binary_quantize(%s::{cast})::{bits} LIMIT %s) AS c ORDER BY score DESC LIMIT %s"
    )
    return sql, [literal, *params, literal, cand, k]


def half_index_sql(table: str, name: str, dim: int) -> str:
    """The other alternative tried: HNSW over the rows cast to halfvec (half the bytes)."""
    return (
        f"CREATE INDEX {name} ON {table} USING hnsw "
        f"((embedding::halfvec({dim})) halfvec_ip_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE space_id = {SPACE}"
    )


def half_similar_sql(table: str, dim: int, vector, exclude_id: int, k: int, allowed):
    """Its query: ordered by the halfvec inner product, scored with the float one."""
    from retrieval.pgvector import similar_filter_sql, vector_literal

    cast, half, literal = f"vector({dim})", f"halfvec({dim})", vector_literal(vector)
    where, params = similar_filter_sql(SPACE, exclude_id, allowed)
    sql = (
        f"SELECT artwork_id, -((embedding::{cast}) <#> %s::{cast}) AS score FROM {table} "
        f"WHERE {where} ORDER BY (embedding::{half}) <#> %s::{half} LIMIT %s"
    )
    return sql, [literal, *params, literal, k]


def index(work: Path, table: str, kind: str) -> dict:
    from retrieval.pgvector import pgvector_index_sql

    conn = connect(work)
    conn.execute("SET maintenance_work_mem = '6GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")  # the leader + 1: two cores
    name = f"{table}_{kind}"
    conn.execute(f"DROP INDEX IF EXISTS {name}")
    sql = {
        "bq": lambda: bq_index_sql(table, name, D),
        "half": lambda: half_index_sql(table, name, D),
        "float": lambda: pgvector_index_sql(table, name, SPACE, D),
    }[kind]()
    started = time.perf_counter()
    conn.execute(sql)
    seconds = time.perf_counter() - started
    size = conn.execute(f"SELECT pg_relation_size('{name}')").fetchone()[0]
    return {"kind": kind, "build_s": round(seconds, 1), "index_gb": round(size / 1e9, 3)}


def serve(work: Path, table: str, kind: str, count: int, candidates: list[int]) -> dict:
    from scale import load_parts

    from retrieval.ml.index.exact import slot_exact_rows
    from retrieval.pgvector import similar_sql

    parts, _ids = load_parts(work)
    conn = connect(work)
    n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    rng = np.random.default_rng(7)
    rows = rng.choice(n, count, replace=False)
    queries = parts.fused(rows)
    style_of = parts.label_of_row[:n, 2]
    out = {"rows": n, "kind": kind, "forms": {}}
    t0 = time.perf_counter()
    exact_rows = np.arange(n)
    _scores, want = slot_exact_rows(parts, queries, K + 1, exact_rows)
    out["exact_numpy_ms_per_query"] = round((time.perf_counter() - t0) / count * 1000, 1)
    for form in ("all", "one style"):
        for cand in candidates:
            lat, recalls, short = [], [], 0
            for qi, row in enumerate(rows):
                q = queries[qi]
                allowed = None
                if form == "one style":
                    allowed = np.flatnonzero(style_of == style_of[row]) + 1
                if kind == "bq":
                    sql, params = bq_similar_sql(table, D, q, int(row) + 1, K, allowed, cand)
                elif kind == "half":
                    sql, params = half_similar_sql(table, D, q, int(row) + 1, K, allowed)
                else:
                    sql, params = similar_sql(table, SPACE, D, q, int(row) + 1, K, allowed)
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    ef = cand if kind == "half" else max(cand, K)  # bq: ef >= its LIMIT
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                    got = conn.execute(sql, params).fetchall()
                lat.append(time.perf_counter() - started)
                ids = np.array([r[0] for r in got], dtype=np.int64) - 1
                short += len(ids) < K
                # tie-aware recall: true scores of what came back against the exact k-th
                if allowed is None:
                    truth = want[qi][want[qi] != row][:K]
                else:
                    pool = allowed - 1
                    pool = pool[pool != row]
                    _s, t = slot_exact_rows(parts, q[None], K, pool)
                    truth = t[0]
                kth = float((parts.fused(truth[-1:]) @ q)[0])
                mine = parts.fused(ids) @ q if len(ids) else np.zeros(0)
                recalls.append(min(K, int((mine >= kth - 1e-5).sum())) / K)
            key = f"{form}, candidates {cand}" if kind == "bq" else f"{form}, ef_search {cand}"
            out["forms"][key] = {
                "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
                "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 2),
                "recall@50": round(float(np.mean(recalls)), 3),
                "queries short of 50": int(short),
            }
            print(kind, key, out["forms"][key], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small-rows", type=int, default=200_000)
    ap.add_argument("--kinds", default="float,bq", help="indexes on the --rows table")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--candidates", default="100,200,400", help="bq: rows re-ranked")
    ap.add_argument("--ef-search", default="100,200,400", help="half: hnsw.ef_search values")
    ap.add_argument("--work", type=Path, default=ROOT / "var" / "bench-pgvector")
    ap.add_argument("--stage", default="generate,load,index,serve")
    ap.add_argument("--storage", default="", help="PLAIN, MAIN, EXTERNAL (default: the type's)")
    args = ap.parse_args()
    # retrieval.pgvector (the SQL measured) is a Django module; its database is not used.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    work = args.work / str(args.rows)
    work.mkdir(parents=True, exist_ok=True)
    stages = args.stage.split(",")
    cands = [int(c) for c in args.candidates.split(",")]
    efs = [int(c) for c in args.ef_search.split(",")]
    report: dict = {}
    try:
        if "generate" in stages and not (work / "labels.npz").exists():
            from scale import generate

            t = time.perf_counter()
            report["generate"] = generate(args.rows, work)
            report["generate"]["seconds"] = round(time.perf_counter() - t, 1)
            print(report["generate"], flush=True)
        small = f"{TABLE}_small"
        kinds = args.kinds.split(",")
        tables = [(TABLE, args.rows, kinds)]
        if args.small_rows:
            tables.append((small, args.small_rows, ["float", "bq"]))
        for table, rows, table_kinds in tables:
            if "load" in stages:
                report[f"load {table}"] = load(work, table, rows, args.storage)
                print("load", table, report[f"load {table}"], flush=True)
            for kind in table_kinds:
                if "index" in stages:
                    report[f"index {table} {kind}"] = index(work, table, kind)
                    print("index", table, report[f"index {table} {kind}"], flush=True)
                if "serve" in stages:
                    wide = {"float": [settings.RETRIEVAL_PG_EF_SEARCH], "half": efs}.get(
                        kind, cands
                    )
                    report[f"serve {table} {kind}"] = serve(work, table, kind, args.queries, wide)
    finally:
        from config.pgserver import stop_server

        stop_server(work / "pg")
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
