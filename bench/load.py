"""Load benchmark of the served app: gunicorn (bin/serve, production settings) on loopback,
PostgreSQL with the full real WikiArt metadata, baselines measured in the same run.

    .venv/bin/python bench/load.py                      # 50 users, 60 s per phase
    .venv/bin/python bench/load.py --reuse-retrieval    # database + index of bench/retrieval.py
    .venv/bin/python bench/load.py --reuse --users 10 --duration 10   # a smoke run

Setup. A fresh embedded PostgreSQL+pgvector in var/bench-load (DATABASE_URL=pgserver://...):
migrate, import the 81,446 real artworks (metadata only, ../shared/data/wikiart/artgan,
read in place), `build_index` (offline MiniLM, FAISS + pgvector). `--reuse` keeps a
var/bench-load built earlier; `--reuse-retrieval` uses the one bench/retrieval.py leaves in
var/bench-retrieval; `--demo` uses the small synthetic demo catalog (smoke runs only).
Then `bin/serve` in production mode (DJANGO_DEBUG=false, manifest static files, HTTPS
as told by X-Forwarded-Proto, CONN_MAX_AGE 60 s, access log off) on a free port.

Traffic. Each virtual user has one keep-alive connection and repeats visits drawn from the
mix: catalog browsing (`/` with filters and pages), search (`/api/search/?q=...` and the
`/search/` page), an artwork page followed at once by its similar-artworks fragment (as the
page's script fetches it), and two baselines: a hashed static file served by WhiteNoise
(no Django view) and the DRF API root `/api/` (Django, no database query). The baselines
run under the same load, in the same run, so every route's latency is also given as a
ratio to them.

Client model. Virtual users are a closed model: a user waits for its answer, then thinks
(exponential, mean `--think` s) before the next visit, like people at a browser. Phase 1
("think") is that realistic load; phase 2 ("saturation") removes the think time, so the
same users send back to back and the server runs flat out: its throughput is the
capacity, and its latency is simply users / throughput (Little's law), so with 50 users
on 2 cores no route can have p95 < 100 ms there by construction. The load generator is
threads + http.client in one process; its own CPU use is reported beside the server's and
PostgreSQL's, and "rest of machine" is everything else on the host (other work on a
shared machine shows up there).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import (  # noqa: E402 - after the project root is importable
    HarnessError,
    free_port,
    manage,
    pgserver_stop,
    start_logged,
    wait_listening,
)

DATA = ROOT.parent / "shared" / "data" / "wikiart" / "artgan"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Visit weights (an artwork visit is two requests: the page and its similar fragment).
DEFAULT_MIX = "browse=35,search_api=15,search_page=15,artwork=25,static=5,api_root=5"
ROUTES = ["browse", "search_api", "search_page", "artwork", "similar", "api_root", "static"]
BASELINES = ["static", "api_root"]


# --------------------------------------------------------------------------- setup


def prepare_database(args, work: Path, env: dict) -> None:
    """Build (or reuse) the database and index the server will use."""
    # An index of this catalog: <index>/<catalog id>/<space>/CURRENT (older layouts: rebuild).
    built = any((work / "index").glob("*/*/CURRENT"))
    if args.reuse_retrieval:
        if not built:
            sys.exit(f"{work} has no index: run bench/retrieval.py first, or drop the flag")
        return
    if args.reuse and built:
        return
    if work.exists():
        pgserver_stop(work / "pg")
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    manage(env, "migrate", "--noinput", "-v0")
    if args.demo:
        manage(env, "make_demo_catalog", str(work / "demo"), "--no-images")
        source = work / "demo"
    else:
        if not args.data.is_dir():
            sys.exit(f"{args.data} is missing (the real metadata lives in ../shared/data)")
        source = args.data
    seconds, _ = manage(env, "import_wikiart", str(source), "--no-progress")
    print(f"import: {seconds:.1f} s", flush=True)
    seconds, _ = manage(env, "build_index", "--no-progress")
    print(f"embed + index: {seconds:.1f} s", flush=True)


def vocabulary(env: dict) -> dict:
    """What the requests are made of: ids, names and prompts from the database."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connections
    from django.db.models import Count

    from catalog.models import Artist, Artwork, Genre, Style

    rng = random.Random(0)
    ids = list(Artwork.objects.values_list("pk", flat=True))
    sample = rng.sample(ids, min(3000, len(ids)))
    artists = list(
        Artist.objects.annotate(n=Count("artworks"))
        .order_by("-n")
        .values_list("slug", "name")[:300]
    )
    styles = list(Style.objects.values_list("name", flat=True))
    genres = list(Genre.objects.values_list("name", flat=True))
    titles = list(
        Artwork.objects.filter(pk__in=sample[:600]).values_list(
            "title", "artist__name", "style__name"
        )
    )
    connections.close_all()
    prompts = []
    for n, (title, artist, style) in enumerate(titles):
        style = (style or "").replace("_", " ")
        prompts.append(
            [
                f"{title} by {artist}",
                title,
                f"a painting by {artist}, {style}",
                f"{title}, {style}",
            ][n % 4]
        )
    return {
        "ids": sample,
        "artists": artists,
        "styles": styles,
        "genres": genres,
        "prompts": [p for p in prompts if p.strip()],
    }


def start_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    """bin/serve (gunicorn, as production runs it), once it listens."""
    proc = start_logged([str(ROOT / "bin" / "serve")], env, log, session=True)
    try:
        return wait_listening(proc, port, log, timeout=300, name="bin/serve")
    except HarnessError as exc:
        sys.exit(str(exc))


# --------------------------------------------------------------------------- CPU accounting


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime, plus those of children it has reaped (a live child counts itself)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its (live) descendants."""
    return proc_cpu_seconds(pid) + sum(tree_cpu_seconds(k) for k in children(pid))


def machine_busy_seconds() -> float:
    parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def memory_mb(pid: int) -> dict:
    """Resident memory: private (anonymous) and file-backed (shared libraries and the
    memory-mapped index, shared with every other process that maps them)."""
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = round(int(rest.split()[0]) / 1024)
    return values


@dataclass
class CpuMeter:
    server_pid: int
    db_pid: int | None

    def sample(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "t": time.monotonic(),
            "server": tree_cpu_seconds(self.server_pid),
            "postgres": tree_cpu_seconds(self.db_pid) if self.db_pid else 0.0,
            "load generator": usage.ru_utime + usage.ru_stime,
            "machine": machine_busy_seconds(),
        }

    @staticmethod
    def percent(before: dict, after: dict) -> dict:
        wall = after["t"] - before["t"]
        used = {k: (after[k] - before[k]) / wall * 100 for k in before if k != "t"}
        used["rest of machine"] = max(
            0.0, used.pop("machine") - used["server"] - used["postgres"] - used["load generator"]
        )
        return used


# --------------------------------------------------------------------------- the client


@dataclass
class Sample:
    route: str
    start: float
    latency: float
    status: int  # 0: no answer (connection error or timeout)
    error: str = ""


@dataclass
class Traffic:
    vocab: dict
    css_url: str
    mix: list[tuple[str, float]]

    def visit(self, rng: random.Random) -> list[tuple[str, str]]:
        """One visit: the (route, path) requests a user makes without pausing."""
        kind = rng.choices([k for k, _ in self.mix], weights=[w for _, w in self.mix])[0]
        v = self.vocab
        if kind == "browse":
            params = {}
            roll = rng.random()
            if roll < 0.25:
                params["style"] = rng.choice(v["styles"])
            elif roll < 0.45:
                params["genre"] = rng.choice(v["genres"])
            elif roll < 0.6:
                params["artist"] = rng.choice(v["artists"])[0]
            elif roll < 0.7:
                params["style"] = rng.choice(v["styles"])
                params["genre"] = rng.choice(v["genres"])
            elif roll < 0.75:
                params["year_min"] = rng.randrange(1400, 1950, 10)
                params["year_max"] = params["year_min"] + 50
            if rng.random() < 0.5:
                params["page"] = rng.randint(2, 5 if params else 40)
            return [("browse", "/" + (f"?{urlencode(params)}" if params else ""))]
        if kind == "search_api":
            params = {"q": rng.choice(v["prompts"]), "k": 20}
            if rng.random() < 0.2:
                params["style"] = rng.choice(v["styles"])
            return [("search_api", f"/api/search/?{urlencode(params)}")]
        if kind == "search_page":
            return [("search_page", f"/search/?{urlencode({'q': rng.choice(v['prompts'])})}")]
        if kind == "artwork":
            pk = rng.choice(v["ids"])
            return [("artwork", f"/artworks/{pk}/"), ("similar", f"/artworks/{pk}/similar/")]
        if kind == "static":
            return [("static", self.css_url)]
        return [("api_root", "/api/")]


class Client:
    """One keep-alive connection; reconnects once when the server closed it while idle."""

    HEADERS = {"Host": "127.0.0.1", "X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"}

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout, self.conn = port, timeout, None

    def get(self, path: str) -> tuple[int, str]:
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers=self.HEADERS)
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status, ""
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if fresh or attempt:  # a stale idle connection gets one retry
                    return 0, type(exc).__name__
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self.close()
                return 0, type(exc).__name__
        return 0, "unreachable"

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Phase:
    name: str
    users: int
    duration: float
    think: float
    samples: list[Sample] = field(default_factory=list)
    cpu: dict = field(default_factory=dict)


def run_phase(phase: Phase, traffic: Traffic, port: int, timeout: float, meter, record=True):
    start = time.perf_counter() + 0.2
    end = start + phase.duration
    per_user: list[list[Sample]] = [[] for _ in range(phase.users)]

    def user(n: int):
        rng = random.Random(n * 7919 + int(phase.think * 1000))
        client = Client(port, timeout)
        # Stagger the start so the users do not arrive as one burst.
        time.sleep(max(0.0, start - time.perf_counter()) + rng.uniform(0, phase.think or 0.2))
        while time.perf_counter() < end:
            for route, path in traffic.visit(rng):
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                status, error = client.get(path)
                per_user[n].append(Sample(route, t0, time.perf_counter() - t0, status, error))
            if phase.think:
                pause = rng.expovariate(1 / phase.think)
                time.sleep(min(pause, max(0.0, end - time.perf_counter())))
        client.close()

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(phase.users)]
    before = meter.sample() if meter else None
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=phase.duration + timeout + 30)
    if meter:
        phase.cpu = CpuMeter.percent(before, meter.sample())
    if record:
        phase.samples = [s for samples in per_user for s in samples if start <= s.start < end]
    return phase


# --------------------------------------------------------------------------- report


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values))) - 1))
    return sorted_values[rank] * 1000


def summarise(phase: Phase) -> dict:
    by_route = defaultdict(list)
    for s in phase.samples:
        by_route[s.route].append(s)
    rows = {}
    for route in [*ROUTES, "all"]:
        samples = phase.samples if route == "all" else by_route.get(route, [])
        if not samples:
            continue
        ok = sorted(s.latency for s in samples if 200 <= s.status < 400)
        every = sorted(s.latency for s in samples)
        errors = Counter(s.error or str(s.status) for s in samples if not (200 <= s.status < 400))
        rows[route] = {
            "requests": len(samples),
            "rps": len(samples) / phase.duration,
            "p50_ms": pct(ok or every, 50),
            "p95_ms": pct(ok or every, 95),
            "p99_ms": pct(ok or every, 99),
            "max_ms": (every[-1] * 1000) if every else float("nan"),
            "mean_ms": sum(every) / len(every) * 1000,
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
        }
    return rows


def print_phase(phase: Phase, rows: dict) -> None:
    think = f"think {phase.think:g} s (exponential)" if phase.think else "no think time"
    print(f"\n== {phase.name}: {phase.users} users, {think}, {phase.duration:g} s")
    base = {b: rows[b]["p50_ms"] for b in BASELINES if b in rows}
    head = f"{'route':14}{'req':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    head += f"{'max ms':>9}{'errors':>8}" + "".join(f"{'p50 / ' + b:>16}" for b in base)
    print(head)
    for route, r in rows.items():
        label = route + (" (base)" if route in BASELINES else "")
        line = f"{label:14}{r['requests']:>7}{r['rps']:>8.1f}{r['p50_ms']:>9.1f}"
        line += f"{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.0f}{r['errors']:>8}"
        line += "".join(f"{r['p50_ms'] / v:>16.1f}" for v in base.values())
        print(line)
    kinds = {route: r["error_kinds"] for route, r in rows.items() if r["errors"] and route != "all"}
    if kinds:
        print(f"errors by kind: {kinds}")
    if phase.cpu:
        print(
            "CPU, % of one core: "
            + ", ".join(f"{k} {v:.0f}" for k, v in phase.cpu.items())
            + f"  (machine: {os.cpu_count()} cores)"
        )
    total = rows.get("all")
    if total and not phase.think:
        print(
            f"Little's law: users / throughput = {phase.users / total['rps'] * 1000:.0f} ms, "
            f"measured mean latency {total['mean_ms']:.0f} ms"
        )


# --------------------------------------------------------------------------- main


def parse_mix(text: str) -> list[tuple[str, float]]:
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in ROUTES or name == "similar":
            sys.exit(f"unknown visit kind {name!r} in --mix")
        mix.append((name, float(weight)))
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="virtual users (default 50)")
    parser.add_argument("--duration", type=float, default=60, help="seconds per phase")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time (s)")
    parser.add_argument("--phases", default="think,saturation", help="think,saturation")
    parser.add_argument("--warmup", type=float, default=15, help="unrecorded warm-up (s)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker")
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"visit weights ({DEFAULT_MIX})")
    parser.add_argument("--reuse", action="store_true", help="keep var/bench-load if built")
    parser.add_argument(
        "--reuse-retrieval", action="store_true", help="var/bench-retrieval of bench/retrieval"
    )
    parser.add_argument("--demo", action="store_true", help="synthetic demo catalog (smoke runs)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if args.reuse_retrieval:
        work = ROOT / "var" / "bench-retrieval"
    else:
        work = ROOT / "var" / ("bench-load-demo" if args.demo else "bench-load")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"pgserver://{work / 'pg'}",
        "MYTHRAGEN_EMBEDDER": "minilm",
        "MYTHRAGEN_INDEX_DIR": str(work / "index"),
        "MEDIA_ROOT": str(work / "media"),
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        # Production mode, as documented (the proxy's part is played by the client).
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "MYTHRAGEN_TUNING": json.dumps({"STATIC_ROOT": str(work / "static")}),
        "MYTHRAGEN_ADDR": f"127.0.0.1:{port}",
    }
    # gunicorn's own options over config/gunicorn.conf.py's defaults (CONN_MAX_AGE is 60 s
    # in production, as documented).
    gunicorn = ["--access-logfile", "/dev/null"]
    if args.workers:
        gunicorn += ["--workers", str(args.workers)]
    if args.threads:
        gunicorn += ["--threads", str(args.threads)]
    env["GUNICORN_CMD_ARGS"] = " ".join(gunicorn)

    prepare_database(args, work, env)
    vocab = vocabulary(env)
    print(
        f"catalog sample: {len(vocab['ids'])} artworks, {len(vocab['artists'])} artists, "
        f"{len(vocab['styles'])} styles, {len(vocab['genres'])} genres, "
        f"{len(vocab['prompts'])} prompts",
        flush=True,
    )
    server = start_server(env, port, work / "serve.log")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/", headers=Client.HEADERS | {"Accept-Encoding": "identity"})
        response = conn.getresponse()
        page = response.read().decode()
        conn.close()
        # The stylesheet's hashed (manifest) URL, as the page links it: the static baseline.
        css = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', page)
        if response.status != 200 or not css:
            sys.exit(f"the served page is not what was expected (status {response.status})")
        traffic = Traffic(vocab, css.group(1), parse_mix(args.mix))
        first = Client(port, 120)
        t = time.perf_counter()
        status, _ = first.get(f"/api/search/?{urlencode({'q': vocab['prompts'][0]})}")
        print(f"first search (loads the text encoder): {status} in {time.perf_counter() - t:.1f} s")
        first.close()
        db_pid = None
        pid_file = work / "pg" / "postmaster.pid"
        if pid_file.exists():
            db_pid = int(pid_file.read_text().split()[0])
        meter = CpuMeter(server.pid, db_pid)
        workers = children(server.pid)
        print(
            f"server: gunicorn pid {server.pid}, {len(workers)} workers x "
            f"{args.threads or 2} threads; warm-up {args.warmup:g} s",
            flush=True,
        )
        if args.warmup:
            warm_users = min(args.users, 2 * max(1, len(workers)) * 4)
            run_phase(Phase("warm-up", warm_users, args.warmup, 0), traffic, port, 60, None, False)

        results = {"config": vars(args)}
        for name in args.phases.split(","):
            think = args.think if name == "think" else 0.0
            phase = run_phase(
                Phase(name, args.users, args.duration, think), traffic, port, args.timeout, meter
            )
            rows = summarise(phase)
            print_phase(phase, rows)
            results[name] = {"routes": rows, "cpu_percent_of_one_core": phase.cpu}
        memory = {pid: memory_mb(pid) for pid in children(server.pid)}
        print(f"\ngunicorn worker memory (MB): {memory}")
        results["worker_memory_mb"] = memory
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        from config.pgserver import stop_server  # the embedded PostgreSQL stops too

        stop_server(work / "pg")


if __name__ == "__main__":
    main()
