"""Web figures against the real server: gallery and search by image at 10,000 faces.

Run from the repository root: ``.venv/bin/python bench/web.py [--faces 10000]``.

Sets up a throwaway embedded-default library (SQLite) with one tenant holding the
fixture people (real photos and faces) plus synthetic faces with random
normalized embeddings up to ``--faces``, starts gunicorn on 127.0.0.1, logs in
and times, over loopback:
- ``GET /gallery/`` (random 50) and ``GET /gallery/all/`` (first page of 120);
- a search by image end to end: upload the photo (``POST /search/``, decode,
  keep) and open the results page (detect + embed the query face, search the
  tenant's matrix, render), as the browser does.
Requests are bounded in count; everything stays on loopback.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import time

from harness import FIXTURES, ROOT, throwaway_django

throwaway_django("faces-bench-web-")

import numpy as np  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

EMAIL, PASSWORD = "bench@example.com", "bench-password-9f8e"


def seed(total_faces: int) -> None:
    """The fixture people for real, then synthetic faces up to ``total_faces``."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from accounts.models import FaceConsent
    from indexing.models import Face, FaceCollection, Photo, Post, Source

    user = get_user_model().objects.create_user(username="bench", email=EMAIL, password=PASSWORD)
    FaceConsent.objects.record(user)
    call_command("faces_import", "--user", EMAIL, "--sync", str(FIXTURES / "people"))
    real = Face.objects.filter(owner=user)
    thumb = real.first().thumbnail.name
    missing = total_faces - real.count()
    rng = np.random.default_rng(7)
    per_photo = 5
    source = Source.objects.create(owner=user, kind=Source.Kind.UPLOAD, name="synthetic")
    with transaction.atomic():
        posts = Post.objects.bulk_create(
            Post(owner=user, source=source, external_id=f"synthetic-{n}", status=Post.Status.INDEXED)
            for n in range(missing // per_photo + 1)
        )
        photos = Photo.objects.bulk_create(
            Photo(owner=user, post=post, external_id=post.external_id, status=Photo.Status.INDEXED, width=1080,
                  height=1080)
            for post in posts
        )
        vectors = rng.normal(size=(missing, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Face.objects.bulk_create(
            (
                Face(owner=user, photo=photos[n // per_photo], engine="local", engine_face_id=f"synthetic-{n}",
                     box_x=0.1 * (n % per_photo), box_y=0.2, box_w=0.1, box_h=0.1, confidence=95, quality=80,
                     embedding=vectors[n].tobytes(), thumbnail=thumb)
                for n in range(missing)
            ),
            batch_size=2000,
        )
        FaceCollection.bump(user.pk, "local")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    # One user sends every request here: lift the per-user limits, which
    # bench/load.py exercises with many users.
    env = {**os.environ, "SECRET_KEY": settings.SECRET_KEY,
           "FACES_RATE_LIMIT_SEARCH": "100000/m", "FACES_RATE_LIMIT_IMPORT": "100000/m"}
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "faces_site.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "2", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def login(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{base}/accounts/login/", data={"login": EMAIL, "password": PASSWORD,
                                                              "csrfmiddlewaretoken": token},
                            headers={"Referer": f"{base}/accounts/login/"})
    assert response.ok and "Log out" in response.text, "login failed"
    return session


def timed(fn, count: int) -> list[float]:
    fn()  # warm: the first request loads the tenant's matrix and the models
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    seed(args.faces)
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}"
    try:
        session = login(base)
        csrf = session.cookies.get("csrftoken")
        selfie = (FIXTURES / "people" / "barack_obama" / "2.jpg").read_bytes()

        def gallery() -> None:
            assert session.get(f"{base}/gallery/").status_code == 200

        def gallery_all() -> None:
            assert session.get(f"{base}/gallery/all/").status_code == 200

        def search() -> None:
            response = session.post(f"{base}/search/", files={"image": ("selfie.jpg", selfie, "image/jpeg")},
                                    data={"csrfmiddlewaretoken": csrf}, headers={"Referer": f"{base}/search/"})
            assert response.status_code == 200 and "best match first" in response.text, response.status_code

        rows = [
            ("GET /gallery/ (random 50)", timed(gallery, args.requests)),
            ("GET /gallery/all/ (page of 120)", timed(gallery_all, args.requests)),
            ("search by image, end to end", timed(search, max(20, args.requests // 3))),
        ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
    print(f"tenant with {args.faces:,} faces; gunicorn 2 workers x 2 threads on loopback; "
          f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    print(f"\n{'request':34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, values in rows:
        print(f"{label:34} {len(values):4d} {p(values, 50):8.1f} {p(values, 95):8.1f} {max(values):8.1f}")
    print("\ntargets: gallery p95 < 100 ms; search by image < 500 ms end to end")


if __name__ == "__main__":
    main()
