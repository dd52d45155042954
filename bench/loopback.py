"""The loopback services ``e2e.py`` runs, each in its own process so they never take its GIL.

``python bench/loopback.py instagram PHOTOS CDN_MS GRAPH_MS HANDSHAKE_MS`` serves
an account of generated photos (every fourth post a carousel of 2-4) behind the
fake Instagram, keeping connections alive and charging each new one
``HANDSHAKE_MS`` on its first request; ``python bench/loopback.py rekognition PHOTOS SERVICE_MS`` serves the
fake Rekognition answering precomputed analyses after a fixed service time.
Each prints one JSON line (its URL) and serves until its stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import FIXTURES, ROOT
from photoset import generate


def account_layout(paths: list[Path]) -> list[list[Path]]:
    """Posts of the account: every fourth a carousel of 2-4 photos, the rest single photos."""
    posts, i, n = [], 0, 0
    while i < len(paths):
        size = 2 + n % 3 if n % 4 == 3 else 1
        posts.append(paths[i:i + size])
        i += size
        n += 1
    return posts


def serve_instagram(photos: int, cdn_ms: float, graph_ms: float, handshake_ms: float) -> None:
    """Child: the loopback Instagram with the account; prints its URL, serves until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.instagram import FakeInstagram

    fake = FakeInstagram(FIXTURES)
    for post in account_layout(generate(photos)):
        fake.add_post("CAROUSEL_ALBUM" if len(post) > 1 else "IMAGE", post)
    fake.cdn_delay, fake.graph_delay = cdn_ms / 1000, graph_ms / 1000
    fake.keep_alive, fake.connect_delay = True, handshake_ms / 1000
    fake.start()
    print(json.dumps({"url": fake.url, "client_id": fake.client_id, "secret": fake.client_secret}), flush=True)
    sys.stdin.read()
    fake.stop()


def serve_rekognition(photos: int, service_ms: float) -> None:
    """Child: the loopback Rekognition answering precomputed analyses after ``service_ms``."""
    sys.path.insert(0, str(ROOT))
    data_dir = tempfile.mkdtemp(prefix="faces-e2e-rek-")
    os.environ.update(DJANGO_SETTINGS_MODULE="faces_site.settings", FACES_DATA_DIR=data_dir,
                      DATABASE_URL=f"sqlite:///{data_dir}/x.sqlite3")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from tests.fakes.rekognition import FakeRekognition

    fake = FakeRekognition(latency_ms=service_ms)
    for path in generate(photos):
        fake.analyze(path.read_bytes())  # the face math happens now, not while timed
    with fake:
        print(json.dumps({"url": fake.url}), flush=True)
        sys.stdin.read()


def start_server(*args: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the fake {args[0]} did not start")
    return process, json.loads(line)


if __name__ == "__main__":
    kind, *values = sys.argv[1:]
    if kind == "instagram":
        serve_instagram(int(values[0]), float(values[1]), float(values[2]), float(values[3]))
    else:
        serve_rekognition(int(values[0]), float(values[1]))
