"""Bounded load test: concurrent users searching by photo and browsing the gallery.

Runs the product as deployed at scale on one machine: gunicorn in front of
PostgreSQL (a dedicated database, created here and dropped afterwards), the
local face engine in the web processes, the file cache shared by them and the
production rate limits. Everything is on loopback.

Setup (not timed): one tenant's library is imported through the real pipeline
(``faces_import --sync`` of the fixture photos); every other user gets a copy
of those rows (their own Face rows and embeddings, the same stored files), so
each search runs against a real per-tenant matrix. Each user is logged in by
a session created in the database, and each thread uses its own HTTP session.

Timed: every user (a thread) does ``--iterations`` times: POST a photo to
/search/ (302 to the results page), GET the results page (the face search),
GET /gallery/. The request count is fixed (users x iterations x 3, plus one
GET /search/ per user for the CSRF token) and a time limit stops the run if
the server cannot keep up. It prints requests, errors, throughput and p50/p95
latencies per endpoint, and exits non-zero on any error.

    .venv/bin/python bench/load.py [--users 50] [--iterations 5] [--time-limit 300]
        [--workers 2] [--threads 4] [--pg postgres://postgres@127.0.0.1:5432] [--db faces_load] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness import FIXTURES, ROOT

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
MATCHES = re.compile(r"(\d+) photos?, best match first")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_database(server: str, name: str) -> str:
    """A fresh, empty database of our own on the local server."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "AWS_STORAGE_BUCKET_NAME", "DEBUG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="faces_site.settings",
        DATABASE_URL=database_url,
        FACES_DATA_DIR=str(data_dir),
        SECRET_KEY="load-test-" + os.urandom(16).hex(),
        ALLOWED_HOSTS="127.0.0.1",
        FACES_ENGINE="local",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    return env


def seed(users: int) -> tuple[list[str], dict[str, int]]:
    """Users with libraries and logged-in sessions; returns session ids and library sizes."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import FaceConsent
    from indexing.models import Face, FaceCollection, Photo, Post, Source

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    User = get_user_model()
    first = "load0@example.com"
    started = time.monotonic()
    call_command(
        "faces_import", "--user", first, "--create-user", "--sync",
        str(FIXTURES / "people"), str(FIXTURES / "groups"), stdout=open(os.devnull, "w"),
    )
    print(f"seeded {first} through the pipeline in {time.monotonic() - started:.1f}s")

    tenant = User.objects.get(email=first)
    posts = list(Post.objects.filter(owner=tenant).order_by("pk"))
    photos = list(Photo.objects.filter(owner=tenant).order_by("pk"))
    faces = list(Face.objects.filter(owner=tenant).order_by("pk"))
    for n in range(1, users):
        user = User.objects.create_user(username=f"load{n}", email=f"load{n}@example.com", password=None)
        FaceConsent.objects.record(user)
        source = Source.objects.create(owner=user, kind=Source.Kind.UPLOAD, name="copy of the seeded library")
        post_map, photo_map = {}, {}
        for post in posts:
            old = post.pk
            post.pk, post.owner, post.source, post.run = None, user, source, None
            post.save(force_insert=True)
            post_map[old] = post.pk
        for photo in photos:
            old = photo.pk
            photo.pk, photo.owner_id, photo.post_id = None, user.pk, post_map[photo.post_id]
            photo.save(force_insert=True)
            photo_map[old] = photo.pk
        Face.objects.bulk_create(
            Face(**{**{f.attname: getattr(face, f.attname) for f in Face._meta.concrete_fields},
                    "id": None, "owner_id": user.pk, "photo_id": photo_map[face.photo_id], "person_id": None})
            for face in faces
        )
        FaceCollection.objects.create(owner=user, engine="local", version=FaceCollection.fresh_version())
        # Restore the seeded tenant's objects for the next copy.
        posts = list(Post.objects.filter(owner=tenant).order_by("pk"))
        photos = list(Photo.objects.filter(owner=tenant).order_by("pk"))
    sessions = []
    for user in User.objects.filter(email__startswith="load").order_by("pk"):
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    sizes = {"photos": len(photos), "faces": len(faces)}
    return sessions, sizes


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies[endpoint].append(seconds)
            if error:
                self.errors.append(f"{endpoint}: {error}")


def user_session(base: str, session_id: str, photos: list[bytes], iterations: int, deadline: float,
                 start: threading.Barrier, results: Results, seed_value: int) -> None:
    """One user: own HTTP session, searches and gallery visits, recorded."""
    rng = random.Random(seed_value)
    http = requests.Session()
    http.cookies.set("sessionid", session_id, domain="127.0.0.1")

    def timed(endpoint: str, method: str, url: str, expect: int, **kwargs):
        if time.monotonic() > deadline:
            results.record(endpoint, 0.0, "not sent: time limit reached")
            return None
        began = time.perf_counter()
        try:
            response = http.request(method, base + url, timeout=60, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            results.record(endpoint, time.perf_counter() - began, exc.__class__.__name__)
            return None
        elapsed = time.perf_counter() - began
        error = None if response.status_code == expect else f"HTTP {response.status_code} for {url}"
        results.record(endpoint, elapsed, error)
        return response if error is None else None

    start.wait()
    page = timed("GET /search/", "GET", "/search/", 200)
    token = CSRF_INPUT.search(page.text).group(1) if page is not None else ""
    for _ in range(iterations):
        image = rng.choice(photos)
        posted = timed("POST /search/", "POST", "/search/", 302,
                       files={"image": ("query.jpg", image, "image/jpeg")},
                       data={"csrfmiddlewaretoken": token}, headers={"Referer": base + "/search/"})
        if posted is not None:
            results_page = timed("GET /search/<id>/", "GET", posted.headers["Location"], 200)
            found = MATCHES.search(results_page.text) if results_page is not None else None
            if results_page is not None and (found is None or int(found.group(1)) == 0):
                # The query photo is in every library: no match means the search did not work.
                results.errors.append("GET /search/<id>/: no match for a photo of the library")
        timed("GET /gallery/", "GET", "/gallery/", 200)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=300, help="seconds for the timed part")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--db", default="faces_load", help="database to create (dropped at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the database and data folder")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="faces-load-"))
    database_url = create_database(args.pg, args.db)
    env = server_env(database_url, data_dir)
    os.environ.update(env)
    server = None
    try:
        sessions, sizes = seed(args.users)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(data_dir / "gunicorn.log", "wb")
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "faces_site.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--threads", str(args.threads), "--timeout", "60",
             "--graceful-timeout", "10"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        for _ in range(300):
            try:
                if requests.get(base + "/accounts/login/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{(data_dir / 'gunicorn.log').read_text()[-3000:]}")
            time.sleep(0.2)

        photos = [path.read_bytes() for path in sorted((FIXTURES / "people").glob("*/*.jpg"))]
        # Warm-up, not timed: each worker process loads the face models on its first search.
        warm = Results()
        warm_threads = [
            threading.Thread(target=user_session, args=(base, sessions[i % len(sessions)], photos, 1,
                                                         time.monotonic() + 120, threading.Barrier(1), warm, i))
            for i in range(args.workers * 2)
        ]
        for thread in warm_threads:
            thread.start()
        for thread in warm_threads:
            thread.join()

        results = Results()
        barrier = threading.Barrier(args.users + 1)
        deadline = time.monotonic() + args.time_limit
        threads = [
            threading.Thread(target=user_session,
                             args=(base, sessions[i % len(sessions)], photos, args.iterations, deadline, barrier,
                                   results, 1000 + i))
            for i in range(args.users)
        ]
        for thread in threads:
            thread.start()
        barrier.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began

        expected = args.users * (1 + 3 * args.iterations)
        every = [s for values in results.latencies.values() for s in values]
        print(f"\nLoad test: {args.users} concurrent users x {args.iterations} iterations against gunicorn "
              f"({args.workers} workers x {args.threads} threads) + PostgreSQL, local engine; "
              f"each library {sizes['photos']} photos / {sizes['faces']} faces")
        print(f"requests: {results.requests} (expected {expected}), errors: {len(results.errors)}, "
              f"wall: {wall:.1f}s, throughput: {results.requests / wall:.1f} req/s")
        print(f"{'endpoint':<20}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
        for endpoint in ("GET /search/", "POST /search/", "GET /search/<id>/", "GET /gallery/"):
            values = results.latencies.get(endpoint, [])
            print(f"{endpoint:<20}{len(values):>6}{percentile(values, .5) * 1000:>10.0f}"
                  f"{percentile(values, .95) * 1000:>10.0f}{max(values, default=0) * 1000:>10.0f}")
        print(f"{'all':<20}{len(every):>6}{percentile(every, .5) * 1000:>10.0f}"
              f"{percentile(every, .95) * 1000:>10.0f}{max(every, default=0) * 1000:>10.0f}")
        if results.errors:
            print("first errors:", *results.errors[:10], sep="\n  ")
        if warm.errors:
            print("warm-up errors:", *warm.errors[:5], sep="\n  ")
        return 0 if not results.errors and results.requests == expected else 1
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.pg, args.db)
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"kept database {args.db} and {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
