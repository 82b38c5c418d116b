"""Import the full real WikiArt metadata into fresh databases and time it.

    .venv/bin/python bench/import_wikiart.py [--data ../shared/data/wikiart/artgan]

Runs migrate + import_wikiart in a subprocess for a fresh SQLite file and a fresh
embedded PostgreSQL+pgvector (pgserver), then prints the catalog counts and the
import time of each side by side (target: under 2 minutes on either).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import manage, pgserver_stop  # noqa: E402 - the root is importable now

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wikiart" / "artgan"
EXPECTED = {
    "artworks": 81_446,
    "artists": 1_119,
    "styles": 27,
    "genres": 10,
    "without_genre": 16_452,
}


def _manage(env: dict, *args: str) -> str:
    return manage(env, *args)[1]


def run(name: str, database_url: str, data: Path) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    _manage(env, "migrate", "--noinput", "-v0")
    started = time.perf_counter()
    _manage(env, "import_wikiart", str(data), "--no-progress", "--batch-size", "5000")
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    _manage(env, "import_wikiart", str(data), "--no-progress", "--batch-size", "5000")
    rerun_s = time.perf_counter() - started
    counts = json.loads(
        _manage(
            env,
            "shell",
            "-c",
            "import json; from catalog import selectors; "
            "print(json.dumps(selectors.catalog_counts()))",
        )
        .strip()
        .splitlines()[-1]
    )
    return {"backend": name, "import_s": import_s, "rerun_s": rerun_s, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the real metadata lives in ../shared/data (see README)")
    with tempfile.TemporaryDirectory(prefix="mythragen-bench-") as tmp:
        rows = [
            run("SQLite", f"sqlite:///{tmp}/bench.sqlite3", args.data),
            run("PostgreSQL+pgvector", f"pgserver://{tmp}/pg", args.data),
        ]
        pgserver_stop(f"{tmp}/pg", delete=False)
    keys = ["import_s", "rerun_s", *EXPECTED]
    print(f"{'':22}" + "".join(f"{r['backend']:>22}" for r in rows) + f"{'expected':>12}")
    for key in keys:
        cells = "".join(
            f"{r[key]:>22.1f}" if key.endswith("_s") else f"{r[key]:>22,}" for r in rows
        )
        print(f"{key:22}{cells}{EXPECTED.get(key, ''):>12}")
    print(f"{'ratio PG/SQLite import':22}{rows[1]['import_s'] / rows[0]['import_s']:>22.2f}")
    ok = all(r[k] == v for r in rows for k, v in EXPECTED.items())
    print(
        "counts match the published figures" if ok else "COUNTS DIFFER from the published figures"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
