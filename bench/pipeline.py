"""Pipeline throughput: a 200-photo import through the queue vs. in process.

Run from the repository root: ``.venv/bin/python bench/pipeline.py [--photos 200]``.

Measures, on the embedded default (SQLite, ORM broker, local engine):
- in-process ``faces_import --sync`` (crawl + index in this process);
- the same import through django-q2 with 1 and with 2 ``qcluster`` worker
  processes (each single-threaded), timed from ``start_run`` to the run's
  ``done`` with the cluster already up;
- the queue's own cost per task: 200 no-op tasks through one worker.
Photos are the shared fixtures at 1080 px, re-encoded so each file is distinct.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time

from harness import FIXTURES, ROOT, throwaway_django

TMP = throwaway_django("faces-bench-pipeline-")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from PIL import Image  # noqa: E402



def make_photos(count: int) -> list[tuple[str, bytes]]:
    """``count`` distinct 1080 px JPEGs cycling through the fixture photos."""
    sources = sorted(p for folder in ("people", "groups") for p in (FIXTURES / folder).rglob("*.jpg"))
    images = []
    for path in sources:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = 1080 / max(image.size)
            images.append((path, image.resize((round(image.width * scale), round(image.height * scale)))))
    out = []
    for n in range(count):
        path, image = images[n % len(images)]
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92 - (n // len(images)))
        out.append((f"{n:04d}-{path.name}", buffer.getvalue()))
    return out


def new_user(email: str):
    from django.contrib.auth import get_user_model

    from accounts.models import FaceConsent

    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email)
    FaceConsent.objects.record(user)
    return user


def in_process(photos) -> float:
    from indexing import pipeline
    from indexing.imports import import_photos

    summary = import_photos(new_user("sync@example.com"), photos, name="sync")
    start = time.perf_counter()
    run = pipeline.start_run(summary.source, sync=True)
    elapsed = time.perf_counter() - start
    run.refresh_from_db()
    assert run.status == "done" and run.posts_done == len(photos), run
    return elapsed


class Cluster:
    def __init__(self, workers: int):
        env = {**os.environ, "FACES_WORKERS": str(workers), "SECRET_KEY": settings.SECRET_KEY}
        self.log = open(TMP / f"qcluster-{workers}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"], cwd=ROOT, env=env,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            drain(1, timeout=120)  # the cluster is up once a no-op task comes back
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.log.close()


def drain(count: int, timeout: float = 600) -> float:
    """Enqueue ``count`` no-op tasks and wait until all have run."""
    from django_q.models import Success
    from django_q.tasks import async_task

    before = Success.objects.filter(func="math.hypot").count()
    start = time.perf_counter()
    for n in range(count):
        async_task("math.hypot", 3, n)
    while Success.objects.filter(func="math.hypot").count() < before + count:
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the queue did not drain")
        time.sleep(0.02)
    return time.perf_counter() - start


def through_queue(photos, workers: int) -> float:
    from indexing import pipeline
    from indexing.imports import import_photos
    from indexing.models import IndexRun

    cluster = Cluster(workers)
    try:
        summary = import_photos(new_user(f"queue{workers}@example.com"), photos, name=f"queue {workers}")
        start = time.perf_counter()
        run = pipeline.start_run(summary.source)
        while IndexRun.objects.get(pk=run.pk).status != "done":
            if time.perf_counter() - start > 900:
                raise TimeoutError("the run did not finish")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        run.refresh_from_db()
        assert run.posts_done == len(photos) and run.posts_failed == 0, run
        return elapsed
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    photos = make_photos(args.photos)
    n = len(photos)
    print(f"{n} distinct photos at 1080 px; database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")

    sync = in_process(photos)
    one = through_queue(photos, 1)
    two = through_queue(photos, 2)
    cluster = Cluster(1)
    try:
        noop = drain(n)
    finally:
        cluster.stop()

    rows = [
        ("in process (faces_import --sync)", sync),
        ("queue, 1 worker process", one),
        ("queue, 2 worker processes", two),
    ]
    print(f"\n{'mode':36} {'seconds':>8} {'photos/s':>9}")
    for label, seconds in rows:
        print(f"{label:36} {seconds:8.2f} {n / seconds:9.1f}")
    print(f"\nqueue cost vs in process (1 worker): {100 * (one - sync) / sync:+.1f}%  (target < 10%)")
    print(f"2 workers vs 1 worker:               {one / two:.2f}x  (target >= 1.7x)")
    print(f"no-op task round trip through the ORM broker: {1000 * noop / n:.1f} ms per task ({n} tasks)")


if __name__ == "__main__":
    main()
