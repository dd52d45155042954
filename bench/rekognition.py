"""Index throughput of the Rekognition engine at 1, 4 and 16 concurrent requests.

Shows that the remote engine fans out: indexing is network-bound, so N requests
in flight index about N times faster until AWS's TPS quota (or our shared rate
limit) caps it. It runs against the loopback Rekognition (tests/fakes) in two
modes, because the fake does the face math on this machine's CPU:

* ``cpu``: the fake runs the local engine's detector and embedder for every
  request, so the numbers are bounded by this machine's cores;
* ``latency``: the fake answers from precomputed analyses after a fixed
  simulated service time (``--latency-ms``, default 150 ms, about what
  IndexFaces takes), which measures the client-side fan-out alone: boto3,
  signing, HTTP, our image checks and the shared rate limiter.

Each request is a real ``RekognitionEngine.index_image`` call over HTTP.

    .venv/bin/python bench/rekognition.py [--photos 100] [--latency-ms 150]
        [--concurrency 1,4,16] [--mode both|cpu|latency] [--tps 1000]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import FIXTURES


def setup_django(data_dir: str, migrate: bool = True) -> None:
    """A throwaway SQLite database and file cache: the bench never touches real data."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "faces_site.settings"
    os.environ["FACES_DATA_DIR"] = data_dir
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("AWS_STORAGE_BUCKET_NAME", None)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_REKOGNITION"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def serve_fake(conn, data_dir: str, mode: str, latency_ms: float, files: list[str]) -> None:
    """Child process: the fake Rekognition, so its work never competes with the client for the GIL."""
    setup_django(data_dir, migrate=False)
    from tests.fakes.rekognition import FakeRekognition

    if mode == "cpu":
        fake = FakeRekognition(cache_analyses=False)
    else:
        fake = FakeRekognition(latency_ms=latency_ms)
        for name in files:
            fake.analyze(Path(name).read_bytes())  # precompute: answers cost no face math while timed
    with fake:
        conn.send(fake.url)
        conn.recv()  # until the parent is done


def photos(count: int) -> list[tuple[str, Path]]:
    files = sorted((FIXTURES / "people").rglob("*.jpg")) + sorted((FIXTURES / "groups").glob("*.jpg"))
    if not files:
        sys.exit(f"no fixture photos under {FIXTURES}")
    return [(f"bench/{i}/{files[i % len(files)].name}", files[i % len(files)]) for i in range(count)]


def run(engine, owner, batch: list[tuple[str, bytes]], concurrency: int) -> tuple[float, list[float], int]:
    """Index ``batch`` with ``concurrency`` threads; return wall seconds, per-call seconds, faces."""
    timings: list[float] = []
    faces = 0

    def one(item: tuple[str, bytes]) -> int:
        external_id, data = item
        started = time.perf_counter()
        result = engine.index_image(owner, data, external_id)
        timings.append(time.perf_counter() - started)
        return len(result.faces)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        faces = sum(pool.map(one, batch))
    return time.perf_counter() - started, timings, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--mode", choices=["both", "cpu", "latency"], default="both")
    parser.add_argument("--tps", type=float, default=1000.0, help="FACES_REKOGNITION_TPS for the run")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="faces-bench-") as data_dir:
        setup_django(data_dir)
        logging.getLogger("indexing").setLevel(logging.WARNING)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from indexing.engines.rekognition import RekognitionEngine
        from indexing.models import FaceCollection

        settings.FACES_REKOGNITION_TPS = args.tps
        owner = get_user_model().objects.create_user(username="bench", email="bench@example.com")
        paths = photos(args.photos)
        batch = [(external_id, path.read_bytes()) for external_id, path in paths]
        modes = ["cpu", "latency"] if args.mode == "both" else [args.mode]
        print(
            f"Rekognition engine index throughput: {len(batch)} photos per run, loopback fake in its own "
            f"process, {os.cpu_count()} CPUs, rate limit {args.tps:g} TPS"
        )
        print(f"{'mode':<28} {'conc':>4} {'seconds':>8} {'photos/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'faces':>6}")
        context = multiprocessing.get_context("spawn")
        for mode in modes:
            label = "fake runs face math (CPU)" if mode == "cpu" else f"simulated {args.latency_ms:g} ms service"
            parent, child = context.Pipe()
            files = sorted({str(path) for _, path in paths})
            server = context.Process(target=serve_fake, args=(child, data_dir, mode, args.latency_ms, files))
            server.start()
            try:
                settings.AWS_ENDPOINT_URL = parent.recv()
                FaceCollection.objects.filter(owner=owner).delete()  # a new fake: a new collection
                engine = RekognitionEngine()
                engine.ensure_collection(owner)
                for concurrency in levels:
                    seconds, timings, faces = run(engine, owner, batch, concurrency)
                    ms = sorted(t * 1000 for t in timings)
                    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
                    print(
                        f"{label:<28} {concurrency:>4} {seconds:>8.2f} {len(batch) / seconds:>9.1f} "
                        f"{statistics.median(ms):>7.0f} {p95:>7.0f} {faces:>6}"
                    )
            finally:
                parent.send("stop")
                server.join(30)
            if mode == "latency":
                ideal = len(batch) * args.latency_ms / 1000
                print(
                    f"{'':<28} ideal with N in flight: "
                    f"{', '.join(f'{ideal / n:.2f} s at {n}' for n in levels)}"
                )

if __name__ == "__main__":
    main()
