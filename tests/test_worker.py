"""Real qcluster processes: ORM and Redis brokers, SIGKILL mid-run, several workers."""

from __future__ import annotations

import io

import pytest
import redis
from PIL import Image

from indexing import pipeline
from indexing.imports import import_photos
from indexing.models import Face, IndexRun, Photo, Post
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/7"


def variants(fixtures_dir, copies: int = 3) -> list[tuple[str, bytes]]:
    """Distinct files (different JPEG encodings) of the fixture people photos."""
    files = []
    for path in sorted((fixtures_dir / "people").glob("*/*.jpg")):
        image = Image.open(path).convert("RGB")
        for n in range(copies):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90 - n * 7)
            files.append((f"{path.parent.name}/{n}-{path.name}", buffer.getvalue()))
    return files


def assert_exact(run: IndexRun) -> None:
    """Every photo indexed exactly once and the counters agree with the rows."""
    run.refresh_from_db()
    posts = Post.objects.filter(run=run)
    assert run.status == IndexRun.Status.DONE
    assert run.posts_total == posts.count() == run.posts_done
    assert run.posts_failed == 0
    assert run.photos_done == Photo.objects.filter(post__run=run, status=Photo.Status.INDEXED).count() == posts.count()
    faces = Face.objects.filter(photo__post__run=run)
    assert run.faces_found == faces.count()
    # One face per single-person photo: a duplicate delivery would have made two.
    assert faces.values("photo").distinct().count() == faces.count() == posts.count()


@pytest.fixture
def clean_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def test_orm_broker_worker_indexes_an_upload(user, fixtures_dir, start_worker):
    summary = import_photos(user, variants(fixtures_dir, copies=1)[:12], name="upload")
    run = pipeline.start_run(summary.source)
    worker = start_worker()
    wait_for(lambda: IndexRun.objects.get(pk=run.pk).status == "done", timeout=120, message="run done")
    assert_exact(run)
    assert "crawl_source" in worker.output() or worker.process.poll() is None


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_worker_killed_mid_run_finishes_exactly_once(broker, user, fixtures_dir, start_worker, request):
    extra = {"FACES_Q_TIMEOUT": "8", "FACES_Q_RETRY": "10"}
    if broker == "redis":
        request.getfixturevalue("clean_redis")
        extra.update(REDIS_URL=REDIS_URL, FACES_RESUME_STALE_SECONDS="0")
    summary = import_photos(user, variants(fixtures_dir), name="big upload")
    if broker == "redis":
        # This process enqueues on the ORM broker; the Redis cluster picks the
        # queued run up through its start-up resume instead.
        run = IndexRun.objects.create(owner=user, source=summary.source)
    else:
        run = pipeline.start_run(summary.source)
    first = start_worker(**extra)
    wait_for(lambda: IndexRun.objects.get(pk=run.pk).posts_done >= 15, timeout=120, message="some progress")
    first.kill()
    done_at_kill = IndexRun.objects.get(pk=run.pk).posts_done
    assert done_at_kill < Post.objects.filter(source=summary.source).count(), "killed too late to prove anything"
    start_worker(**extra)
    wait_for(lambda: IndexRun.objects.get(pk=run.pk).status == "done", timeout=240, message="run done after restart")
    assert_exact(run)


def test_several_workers_on_redis_keep_counters_exact(user, fixtures_dir, start_worker, clean_redis):
    extra = {"REDIS_URL": REDIS_URL, "FACES_RESUME_STALE_SECONDS": "0", "FACES_WORKERS": "2"}
    summary = import_photos(user, variants(fixtures_dir, copies=2), name="parallel upload")
    run = IndexRun.objects.create(owner=user, source=summary.source)
    start_worker(**extra)
    start_worker(**extra)
    wait_for(lambda: IndexRun.objects.get(pk=run.pk).status == "done", timeout=240, message="run done")
    assert_exact(run)
