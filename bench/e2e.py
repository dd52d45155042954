"""End-to-end indexing speed: from Instagram's OAuth callback to every face searchable.

Run from the repository root::

    .venv/bin/python bench/e2e.py [--photos 620] [--cdn-ms 0,150,300] [--graph-ms 100]
        [--handshake-ms cdn] [--configs sqlite-orm-1,sqlite-orm-3,pg-redis-1,pg-redis-2,pg-redis-3]
        [--engine local|rekognition] [--service-ms 150] [--tps 50] [--repeat 1] [--rev REV]

Each measurement is its own child process on a fresh data folder (and a fresh
PostgreSQL database / Redis db 13 for ``pg-redis-*``): a loopback Instagram in
a separate process serves an account of about ``0.62 * photos`` posts (every
fourth a carousel of 2-4) made of distinct generated photos with faces
(``photoset.py``), answering each CDN request after ``--cdn-ms`` and each API
call after ``--graph-ms``; it keeps connections alive, as Instagram's servers
do, and the first request on each new connection waits ``--handshake-ms`` more
(the TCP and TLS handshakes; by default as long as a CDN answer). The product
runs as ``make run`` does: gunicorn (``Procfile`` web) and ``manage.py
qcluster`` with N worker processes. A scripted browser logs in, presses
"Continue to Instagram", allows, and the clock starts when it sends the OAuth
callback. Reported: seconds to the run's ``done``, photos/s, seconds to the
first Face row (searchable from then on), peak RSS (VmHWM) of the largest web
and queue process, and the engine-alone rate on the same photos measured just
before and just after in the same child (the mean of both; N processes for the
local engine; for Rekognition, ``--tps`` threads against the same simulated
service), so the ratio means something on a busy machine. ``--rev`` measures
another revision's product too (a temporary git worktree, driven by this
tree's bench and fakes), the two taking turns in each cell, rows marked ``@REV``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness  # noqa: F401  (puts the repository on sys.path)
from harness import ROOT, revision_tree
from loopback import start_server
from photoset import generate
from product import PASSWORD, browser_links_instagram, free_port, peak_rss_mb, stop, wait_until_up

PY = sys.executable
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/faces_speed_e2e")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
STATIC_ROOT = Path(tempfile.gettempdir()) / "faces-e2e-static"
# The engine-alone reference runs on this many of the photos just before and just after the run.
REFERENCE_PHOTOS = 200


# ---------------------------------------------------------------- one measurement (child)


def fresh_postgres() -> None:
    import psycopg

    base, name = PG_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def engine_alone(paths: list[Path], processes: int, tps: int) -> float:
    """Photos/s of the engine (plus face thumbnails) alone on the same photos."""
    import multiprocessing

    from django.contrib.auth import get_user_model
    from django.db import connections

    from indexing.engines import get_engine

    data = [p.read_bytes() for p in paths]
    owner_id = get_user_model().objects.get(email="bench@example.com").pk
    if get_engine().concurrent_calls == 1:  # CPU-bound: one process per worker
        connections.close_all()
        context = multiprocessing.get_context("spawn")  # forking a process with loaded models can hang
        with context.Pool(processes, initializer=_init_engine, initargs=(owner_id,)) as pool:
            pool.map(_index_one, data[: processes * 2], chunksize=1)
            started = time.perf_counter()
            pool.map(_index_one, data, chunksize=2)
            return len(data) / (time.perf_counter() - started)
    from concurrent.futures import ThreadPoolExecutor

    _init_engine(owner_id)
    with ThreadPoolExecutor(max(1, tps)) as pool:
        started = time.perf_counter()
        list(pool.map(_index_one, data))
        return len(data) / (time.perf_counter() - started)


_engine = None


def _init_engine(owner_id: int) -> None:
    global _engine
    import django

    django.setup()  # a spawned process starts bare (the environment carries the settings)
    from indexing.engines import get_engine

    _engine = get_engine()
    getattr(_engine, "warm_up", lambda: None)()  # the warm-up map below loads the rest
    from django.contrib.auth import get_user_model

    _engine.owner = get_user_model().objects.get(pk=owner_id)
    _engine.ensure_collection(_engine.owner)


def _index_one(data: bytes) -> int:
    from indexing.images import decode_image
    from indexing.thumbnails import face_thumbnail

    result = _engine.index_image(_engine.owner, data, "bench")
    image = result.image if result.image is not None else decode_image(data, 1600).image
    for face in result.faces:
        face_thumbnail(image, face.box)
    return len(result.faces)


def measure(args) -> dict:
    """One configuration at one latency; returns the row as a dict."""
    db, broker, workers = args.one.split("-")
    workers = int(workers)
    tree = Path(args.tree or ROOT)  # the product measured: this tree or another revision's
    sys.path.insert(0, str(tree))
    static_root = STATIC_ROOT if tree == ROOT else STATIC_ROOT.with_name(f"{STATIC_ROOT.name}-{tree.name}")
    data_dir = Path(tempfile.mkdtemp(prefix="faces-e2e-"))
    env = {"DJANGO_SETTINGS_MODULE": "faces_site.settings", "FACES_DATA_DIR": str(data_dir),
           "SECRET_KEY": "bench-e2e-secret-key-bench-e2e-secret-key", "STATIC_ROOT": str(static_root),
           "FACES_WORKERS": str(workers), "FACES_RATE_LIMIT_IMPORT": "", "PYTHONUNBUFFERED": "1"}
    if db == "pg":
        fresh_postgres()
        env["DATABASE_URL"] = PG_URL
    else:
        env["DATABASE_URL"] = f"sqlite:///{data_dir}/faces.sqlite3"
    os.environ.pop("REDIS_URL", None)
    if broker == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        env["REDIS_URL"] = REDIS_URL
    handshake = args.cdn_ms if args.handshake_ms == "cdn" else float(args.handshake_ms)
    instagram, info = start_server("instagram", str(args.photos), str(args.cdn_ms), str(args.graph_ms),
                                   str(handshake))
    env.update(INSTAGRAM_AUTH_URL=info["url"], INSTAGRAM_API_URL=info["url"], INSTAGRAM_GRAPH_URL=info["url"],
               INSTAGRAM_CLIENT_ID=info["client_id"], INSTAGRAM_CLIENT_SECRET=info["secret"])
    rekognition = None
    if args.engine == "rekognition":
        rekognition, rek = start_server("rekognition", str(args.photos), str(args.service_ms))
        env.update(FACES_ENGINE="rekognition", AWS_ENDPOINT_URL=rek["url"], AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   FACES_REKOGNITION_TPS=str(args.tps))
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not (static_root / "staticfiles.json").exists():
        call_command("collectstatic", interactive=False, verbosity=0)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from allauth.account.models import EmailAddress

    from accounts.models import FaceConsent
    from indexing.models import Face, IndexRun

    user = get_user_model().objects.create_user(username="bench", email="bench@example.com", password=PASSWORD)
    FaceConsent.objects.create(user=user, version=settings.FACES_CONSENT_VERSION, accepted=True)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)  # sign-in needs it

    photos = generate(args.photos)
    reference = [engine_alone(photos[:REFERENCE_PHOTOS], workers, int(args.tps))]
    port = free_port()
    logs = open(data_dir / "processes.log", "ab")
    popen = {"cwd": tree, "env": {**os.environ}, "stdout": logs, "stderr": subprocess.STDOUT,
             "start_new_session": True}
    web = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "faces_site.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "4", "--timeout", "60"], **popen)
    cluster = subprocess.Popen([PY, str(tree / "manage.py"), "qcluster"], **popen)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", workers)
        started, run_url = browser_links_instagram(f"http://127.0.0.1:{port}")
        run_id = int(re.search(r"/runs/(\d+)/", run_url).group(1))
        deadline = time.monotonic() + args.timeout
        while IndexRun.objects.get(pk=run_id).status not in ("done", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} not done after {args.timeout} s")
            time.sleep(0.1)
        run = IndexRun.objects.get(pk=run_id)
        first = Face.objects.filter(owner=user).order_by("created_at").values_list("created_at", flat=True).first()
        rss_web = peak_rss_mb(web.pid)
        rss_cluster = peak_rss_mb(cluster.pid)
    finally:
        stop(web)
        stop(cluster)
        instagram.stdin.close()
        instagram.wait(10)
    seconds = run.finished_at.timestamp() - started
    reference.append(engine_alone(photos[-REFERENCE_PHOTOS:], workers, int(args.tps)))
    if rekognition is not None:
        rekognition.stdin.close()
        rekognition.wait(10)
    rate = run.photos_done / seconds
    alone = sum(reference) / len(reference)
    return {
        "config": args.one, "engine": args.engine, "cdn_ms": args.cdn_ms, "graph_ms": args.graph_ms,
        "status": run.status, "posts": run.posts_total, "photos": run.photos_done, "faces": run.faces_found,
        "failed": run.posts_failed, "seconds": round(seconds, 2), "photos_per_s": round(rate, 1),
        "first_face_s": round(first.timestamp() - started, 2) if first else None,
        "engine_alone_per_s": round(alone, 1), "engine_alone_spread": [round(r, 1) for r in reference],
        "ratio": round(rate / alone, 2),
        "rss_web_mb": round(max(r for _, r, _ in rss_web)),
        "rss_queue_mb": round(max(r for _, r, _ in rss_cluster)),
        "processes": len(rss_web) + len(rss_cluster),
    }


# ---------------------------------------------------------------- the table (parent)


COLUMNS = (("config", 20), ("cdn_ms", 6), ("photos", 6), ("seconds", 8), ("photos_per_s", 8),
           ("engine_alone_per_s", 8), ("ratio", 6), ("first_face_s", 7), ("rss_web_mb", 7), ("rss_queue_mb", 7))
HEADERS = ("config", "CDN ms", "photos", "seconds", "photo/s", "engine/s", "ratio", "1st face", "web MB",
           "queue MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=620)
    parser.add_argument("--cdn-ms", default="0,150,300")
    parser.add_argument("--graph-ms", type=float, default=100.0)
    parser.add_argument("--handshake-ms", default="cdn", help="a new connection's extra wait; cdn: the CDN's")
    parser.add_argument("--configs", default="sqlite-orm-1,sqlite-orm-3,pg-redis-1,pg-redis-2,pg-redis-3")
    parser.add_argument("--engine", choices=["local", "rekognition"], default="local")
    parser.add_argument("--service-ms", type=float, default=150.0, help="simulated Rekognition latency")
    parser.add_argument("--tps", type=float, default=50.0, help="FACES_REKOGNITION_TPS")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; then a median row too")
    parser.add_argument("--rev", help="also measure this revision's product, the two taking turns")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.cdn_ms = float(args.cdn_ms)
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    generate(args.photos)
    if args.rev:
        with revision_tree(args.rev) as worktree:
            table(args, {"": ROOT, f"@{args.rev}": worktree})
    else:
        table(args, {"": ROOT})


def table(args, trees: dict[str, Path]) -> None:
    """Every config at every CDN latency, ``--repeat`` times, the trees taking turns; medians per tree."""
    print(f"{args.engine} engine, {args.photos} photos, Graph {args.graph_ms:g} ms, handshake {args.handshake_ms}"
          f"{' ms' * (args.handshake_ms != 'cdn')}, {os.cpu_count()} CPUs"
          + (f", Rekognition {args.service_ms:g} ms at {args.tps:g} TPS" if args.engine == "rekognition" else ""))
    print(" ".join(f"{h:>{w}}" for h, (_, w) in zip(HEADERS, COLUMNS)))
    for config in args.configs.split(","):
        for cdn in args.cdn_ms.split(","):
            rows: dict[str, list[dict]] = {label: [] for label in trees}
            for turn in range(args.repeat):
                for label in list(trees)[:: 1 if turn % 2 == 0 else -1]:
                    if (row := run_one(args, config, cdn, trees[label], label)) is not None:
                        rows[label].append(row)
            for label, done in rows.items():
                if len(done) > 1:
                    cells = median_row(done, f"median{label}")
                    print(" ".join(f"{value!s:>{w}}" for value, (_, w) in zip(cells, COLUMNS)), flush=True)


def run_one(args, config: str, cdn: str, tree: Path = ROOT, label: str = "") -> dict | None:
    """One measurement of ``tree``'s product in its own child process; prints its row and returns it."""
    command = [PY, __file__, "--one", config, "--tree", str(tree), "--cdn-ms", cdn,
               "--graph-ms", str(args.graph_ms), "--handshake-ms", args.handshake_ms,
               "--photos", str(args.photos), "--engine", args.engine, "--service-ms",
               str(args.service_ms), "--tps", str(args.tps), "--timeout", str(args.timeout)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not found:
        print(f"{config} at CDN {cdn} ms failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return None
    row = json.loads(found[-1][len("RESULT "):])
    row["config"] += label
    print(" ".join(f"{row[key]!s:>{w}}" for key, w in COLUMNS), flush=True)
    return row


def median_row(rows: list[dict], name: str = "median") -> list:
    """The cells of several runs of one configuration: medians, the peak RSS at its highest."""
    cells = []
    for key, _ in COLUMNS:
        values = [row[key] for row in rows]
        if key == "config":
            cells.append(name)
        elif key.startswith("rss_"):
            cells.append(max(values))
        elif isinstance(values[0], (int, float)):
            cells.append(round(statistics.median(values), 2))
        else:
            cells.append(values[0])
    return cells


if __name__ == "__main__":
    main()
