"""The index at scale: synthetic catalogs of WikiArt's structure, 100 k to 10 M artworks.

    .venv/bin/python bench/scale.py --rows 1000000 [--queries 50] [--nprobe 48,16,32,96]
                                    [--work DIR] [--threads 1] [--brute] [--keep] [--kind K]
                                    [--artists N]

Three stages, each its own process (so each peak RSS is its own; `--stage` runs one):

1. generate: a catalog with WikiArt's structure scaled up (10 genres plus "none", whose
   block is zero, 27 styles, rows / 100 artists clipped to 10,000-100,000 with a long tail
   (Zipf 0.75: the largest holds ~3%, as Van Gogh's 2.3% of WikiArt), each artist keeping
   to a main style and genre; 384-d content vectors (MiniLM's width) around 2,000 cluster
   centres, each artist favouring three; 12% of rows share a common title's content, from
   5,000 titles of Zipf popularity). Written as `SlotParts`:
   `content.npy` (float32, chunk by chunk) and `labels.npz` (label tables and each row's
   labels); the fused 1,536-d rows are never materialised.
2. build: `build_index(parts, ids, root, blocks=4)` with the defaults, as
   `retrieval.services.index_rebuild` calls it (the kind is chosen by size: above
   `COMPRESSED_MIN` rows the compressed kind). Build time, peak RSS, disk.
3. serve: `IndexStore(root).current()` (what a web process does) and queries of every
   prompt form through `LoadedIndex.search`, k 50: content only, content + artist,
   content + style, artist only, genre + style only, a small sub-collection (one style's
   artworks, `allowed_ids`) and a large one (half the catalog). For each, p50/p95 latency
   and tie-aware recall@50 against the structure-aware exact search
   (`slot_exact_rows` over the same parts), whose latency is measured in the same run;
   the served index's speed-up against it is the figure to quote. Each `--nprobe` value
   is measured (all forms together); the per-form table uses the first. RSS while
   serving is read before the exact baseline touches every content page. `--brute` (at
   most 300 k rows) adds numpy brute force over materialised fused rows.

Searches run with `--threads` OpenMP/BLAS threads (default 1: a web process answers one
request per worker, and FAISS's OpenMP threads spin on a busy 2-core machine: 0.7 ms
against 16 ms per query were seen here with 2 threads while a test run used the cores);
the build uses every core. Synthetic vectors are not MiniLM embeddings: recall figures
hold for clustered data of this shape, not for every catalog.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

W = 384  # content width (MiniLM); fused rows are 4 * W
K = 50
FORMS = (
    "content",
    "content+artist",
    "content+style",
    "artist only",
    "genre+style only",
    "sub-collection: one style",
    "sub-collection: half",
)


def unit(rng, m: int) -> np.ndarray:
    v = rng.standard_normal((m, W), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def zipf(rng, m: int, size: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, m + 1) ** s
    return rng.choice(m, size, p=p / p.sum())


def generate(rows: int, work: Path, artists: int | None = None) -> dict:
    rng = np.random.default_rng(0)
    artists = artists or int(np.clip(rows // 100, 10_000, 100_000))
    genres = np.vstack([np.zeros((1, W), np.float32), unit(rng, 10)])  # 0: no genre
    styles, artist_table = unit(rng, 27), unit(rng, artists)
    centres, titles = unit(rng, 2000), unit(rng, 5000)
    main_style = zipf(rng, 27, artists, 0.8)
    other_style = rng.integers(0, 27, artists)
    main_genre = 1 + zipf(rng, 10, artists, 0.6)
    homes = rng.integers(0, 2000, (artists, 3))
    label_of_row = np.zeros((rows, 3), np.int32)
    out = np.lib.format.open_memmap(
        work / "content.npy", mode="w+", dtype=np.float32, shape=(rows, W)
    )
    chunk = 200_000
    for start in range(0, rows, chunk):
        m = min(chunk, rows - start)
        artist = zipf(rng, artists, m, 0.75)  # the largest ~3% (WikiArt: Van Gogh 2.3%)
        style = np.where(rng.random(m) < 0.8, main_style[artist], other_style[artist])
        roll = rng.random(m)
        genre = np.where(roll < 0.6, main_genre[artist], rng.integers(1, 11, m))
        genre[roll > 0.9] = 0
        label_of_row[start : start + m] = np.stack([genre, artist, style], axis=1)
        home = np.where(
            rng.random(m) < 0.7, homes[artist, rng.integers(0, 3, m)], rng.integers(0, 2000, m)
        )
        x = centres[home] + rng.standard_normal((m, W), dtype=np.float32) / np.sqrt(W)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        dup = rng.random(m) < 0.12  # works titled alike share their content vector
        x[dup] = titles[zipf(rng, 5000, int(dup.sum()), 1.0)]
        out[start : start + m] = x
    out.flush()
    del out
    np.savez(
        work / "labels.npz",
        genres=genres,
        artists=artist_table,
        styles=styles,
        label_of_row=label_of_row,
    )
    return {"rows": rows, "artists": artists, "genres": 10, "styles": 27}


def load_parts(work: Path):
    from retrieval.ml.index import SlotParts

    labels = np.load(work / "labels.npz")
    parts = SlotParts(
        content=np.load(work / "content.npy", mmap_mode="r"),
        labels=(labels["genres"], labels["artists"], labels["styles"]),
        label_of_row=labels["label_of_row"],
    )
    return parts, np.arange(1, parts.n + 1, dtype=np.int64)


def build(work: Path, kind: str) -> dict:
    from mlcore.memory import memory_report
    from retrieval.ml.index import build_index

    parts, ids = load_parts(work)
    shutil.rmtree(work / "index", ignore_errors=True)
    info = build_index(parts, ids, work / "index", blocks=4, kind=kind)
    files = {p.name: p.stat().st_size for p in info.path.iterdir()}
    meta = json.loads((info.path / "meta.json").read_text())
    return {
        "kind": info.kind,
        "build_s": round(info.seconds, 1),
        "params": meta["params"],
        "disk_gb": round(sum(files.values()) / 1e9, 3),
        "files_mb": {k: round(v / 1e6, 1) for k, v in sorted(files.items())},
        "peak_rss_gb": memory_report().as_gb()["peak_rss"],
    }


def queries_of_every_form(work: Path, count: int, parts, ids):
    """(form, query vector, allowed ids or None) triples, `count` of each form."""
    from retrieval.ml.fusion import query_vector

    rng = np.random.default_rng(1)
    genres, artists, styles = parts.labels
    out = []
    style_rows = {}
    for form in FORMS:
        for _ in range(count):
            row = int(rng.integers(0, parts.n))
            g, a, s = (int(v) for v in parts.label_of_row[row])
            near = np.asarray(parts.content[row]) + 0.5 * rng.standard_normal(W) / np.sqrt(W)
            allowed = None
            if form == "content":
                q = query_vector(near, dim=W)
            elif form == "content+artist":
                q = query_vector(near, artist=artists[a], dim=W)
            elif form == "content+style":
                q = query_vector(near, style=styles[s], dim=W)
            elif form == "artist only":
                q = query_vector(artist=artists[a], dim=W)
            elif form == "genre+style only":
                q = query_vector(genre=genres[max(g, 1)], style=styles[s], dim=W)
            elif form == "sub-collection: one style":
                if s not in style_rows:
                    style_rows[s] = ids[parts.label_of_row[:, 2] == s]
                q, allowed = query_vector(near, dim=W), style_rows[s]
            else:
                q = query_vector(near, style=styles[s], dim=W)
                allowed = ids[::2]
            out.append((form, q, allowed))
    return out


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def serve(work: Path, count: int, nprobes: list[int], brute: bool) -> dict:
    import faiss

    from mlcore.memory import memory_report
    from retrieval.ml.index import IndexStore
    from retrieval.ml.index.compressed import loaded_parts
    from retrieval.ml.index.exact import slot_exact_rows

    started = time.perf_counter()
    loaded = IndexStore(work / "index").current()
    load_s = time.perf_counter() - started
    ids = np.asarray(loaded.ids)
    input_parts, _ = load_parts(work)
    queries = queries_of_every_form(work, count, input_parts, ids)
    del input_parts
    ivf = faiss.extract_index_ivf(loaded.slots.index) if loaded.kind == "compressed" else None

    def served(nprobe):
        if ivf is not None:
            ivf.nprobe = nprobe
        times, found = [], []
        for _form, q, allowed in queries:
            t = time.perf_counter()
            _scores, got = loaded.search(q[None, :], K, allowed_ids=allowed)
            times.append(time.perf_counter() - t)
            found.append(got[0])
        return times, found

    served(nprobes[0])  # warm the mapped pages a first query would fault in
    runs = {nprobe: served(nprobe) for nprobe in (nprobes if ivf is not None else nprobes[:1])}
    serving_memory = memory_report().as_gb()

    # The structure-aware exact search over the same parts (the loaded index's own:
    # content.npy in label-combination order, label tables), as the baseline.
    tables = loaded.slots.tables if loaded.slots is not None else None
    parts = loaded.parts if loaded.parts is not None else loaded_parts(loaded.slots)
    exact_t, exact_scores = [], []
    for _form, q, allowed in queries:
        t = time.perf_counter()
        positions = None
        if allowed is not None:
            positions = np.sort(tables["position_of_row"][loaded.rows_of(allowed)])
        scores, _pos = slot_exact_rows(parts, q[None, :], K, positions)
        exact_t.append(time.perf_counter() - t)
        exact_scores.append(scores[0])
    brute_t = []
    if brute:
        fused = parts.fused()  # in content.npy's order; ids do not matter for timing
        for _form, q, allowed in queries:
            t = time.perf_counter()
            rows = None if allowed is None else np.flatnonzero(np.isin(ids, allowed))
            block = fused if rows is None else fused[rows]
            scores = block @ q
            np.argpartition(-scores, K - 1)[:K]
            brute_t.append(time.perf_counter() - t)

    def recall(found) -> list[float]:
        values = []
        for (_form, q, _allowed), got, want in zip(queries, found, exact_scores, strict=True):
            got = got[got >= 0]
            true = loaded.vectors_of(got) @ q if len(got) else np.zeros(0)
            values.append(float((true >= want[K - 1] - 1e-5).sum()) / K)
        return values

    forms = [form for form, _q, _a in queries]
    result = {
        "kind": loaded.kind,
        "n": loaded.n,
        "load_s": round(load_s, 3),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "serving_memory_gb": serving_memory,
        "exact_p50_ms": round(pct(exact_t, 50), 2),
        "brute_p50_ms": round(pct(brute_t, 50), 2) if brute_t else None,
        "sweep": {},
        "forms": {},
    }
    for nprobe, (times, found) in runs.items():
        rec = recall(found)
        result["sweep"][nprobe] = {
            "p50_ms": round(pct(times, 50), 3),
            "p95_ms": round(pct(times, 95), 3),
            "recall50": round(float(np.mean(rec)), 4),
            "min_recall50": round(float(np.min(rec)), 2),
            "x_vs_structured": round(pct(exact_t, 50) / pct(times, 50), 1),
        }
        if nprobe == nprobes[0]:
            for form in FORMS:
                pick = [i for i, f in enumerate(forms) if f == form]
                ft = [times[i] for i in pick]
                et = [exact_t[i] for i in pick]
                result["forms"][form] = {
                    "p50_ms": round(pct(ft, 50), 3),
                    "p95_ms": round(pct(ft, 95), 3),
                    "recall50": round(float(np.mean([rec[i] for i in pick])), 4),
                    "exact_p50_ms": round(pct(et, 50), 2),
                    "x_vs_structured": round(pct(et, 50) / pct(ft, 50), 1),
                }
    result["peak_rss_gb_after_exact"] = memory_report().as_gb()["peak_rss"]
    return result


def run_stage(stage: str, args, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    command = [sys.executable, __file__, "--stage", stage, "--rows", str(args.rows)]
    command += ["--work", str(args.work), "--queries", str(args.queries)]
    command += ["--nprobe", args.nprobe, "--kind", args.kind] + (["--brute"] if args.brute else [])
    command += ["--artists", str(args.artists)] if args.artists else []
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    figures = json.loads((args.work / f"{stage}.json").read_text())
    figures["stage_s"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50, help="per prompt form")
    parser.add_argument("--nprobe", default="48,16,32,96", help="IVF lists scanned, first: table")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="search threads (OpenMP/BLAS)")
    parser.add_argument("--brute", action="store_true", help="numpy brute force too (<= 300k)")
    parser.add_argument("--kind", default="auto", help="index kind (auto: by size)")
    parser.add_argument("--artists", type=int, default=None, help="default rows/100, 10k-100k")
    parser.add_argument("--keep", action="store_true", help="reuse a generated catalog")
    parser.add_argument("--stage", choices=("all", "generate", "build", "serve"), default="all")
    args = parser.parse_args()
    args.work = args.work or ROOT / "var" / "bench-scale" / str(args.rows)
    if args.brute and args.rows > 300_000:
        sys.exit("--brute materialises the fused rows: at most 300,000")
    nprobes = [int(v) for v in args.nprobe.split(",")]
    if args.stage != "all":
        figures = {
            "generate": lambda: generate(args.rows, args.work, args.artists),
            "build": lambda: build(args.work, args.kind),
            "serve": lambda: serve(args.work, args.queries, nprobes, args.brute),
        }[args.stage]()
        (args.work / f"{args.stage}.json").write_text(json.dumps(figures, indent=1))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.keep and (args.work / "generate.json").exists()):
        print(json.dumps({"generate": run_stage("generate", args, None)}), flush=True)
    print(json.dumps({"build": run_stage("build", args, None)}), flush=True)
    result = run_stage("serve", args, args.threads)
    print(json.dumps({"serve": result}), flush=True)
    print(f"\n{result['n']:,} rows, kind {result['kind']}, k={K}, {args.queries} queries a form")
    print(f"{'':28}{'p50 ms':>9}{'p95 ms':>9}{'recall@50':>11}{'exact p50':>11}{'x exact':>9}")
    for form, row in result["forms"].items():
        print(
            f"{form:28}{row['p50_ms']:>9.3f}{row['p95_ms']:>9.3f}{row['recall50']:>11.4f}"
            f"{row['exact_p50_ms']:>11.2f}{row['x_vs_structured']:>9.1f}"
        )
    for nprobe, row in result["sweep"].items():
        print(f"nprobe {nprobe}: {row}")


if __name__ == "__main__":
    main()
