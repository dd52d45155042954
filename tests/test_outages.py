"""The pipeline survives its Redis broker or its PostgreSQL database restarting mid-run.

These tests restart the machine's shared Redis and PostgreSQL servers, which
breaks whatever else is using them at that moment: they are marked slow and
each restarts a server once. A real ``qcluster`` indexes a run; the server goes
away and comes back; the run must finish with exact counters (nothing lost,
nothing twice) and the cluster must still be the one that started.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from indexing import pipeline
from indexing.imports import import_photos
from indexing.models import IndexRun, Post
from tests.conftest import ROOT, wait_for, worker_env
from tests.test_worker import assert_exact, variants

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A database of its own, so that other test runs' queues are not flushed.
REDIS_URL = "redis://127.0.0.1:6379/9"
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]


def redis_up() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def restart_redis() -> None:
    """Stop Redis without saving (its queue is lost) and start it as the machine does."""
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True, timeout=30)
    try:
        wait_for(lambda: not redis_up(), timeout=30, message="Redis to stop")
        time.sleep(1)
    finally:
        if not redis_up():
            subprocess.run(REDIS_START, check=True, timeout=30)
        wait_for(redis_up, timeout=30, message="Redis to start")


def pg_version() -> str | None:
    folder = Path("/etc/postgresql")
    versions = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return versions[-1] if versions else None


def restart_postgres() -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", "restart"],
        check=True, capture_output=True, timeout=120,
    )


def db(read):
    """``read`` for wait_for, reconnecting this process when the server went away."""

    def attempt():
        try:
            return read()
        except (OperationalError, InterfaceError):
            try:
                connection.close()
            except Exception:
                pass
            return None

    return attempt


def done(run: IndexRun):
    return db(lambda: IndexRun.objects.get(pk=run.pk).status == IndexRun.Status.DONE)


def posts_done(run: IndexRun) -> int:
    return IndexRun.objects.get(pk=run.pk).posts_done


@pytest.fixture
def redis_db9():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    if redis_up():
        client.flushdb()


def test_redis_restart_mid_run(user, fixtures_dir, start_worker, redis_db9):
    extra = {"REDIS_URL": REDIS_URL, "FACES_RESUME_STALE_SECONDS": "0"}
    # Enough posts (266) that the run is still going after the restart (~30 a second here).
    summary = import_photos(user, variants(fixtures_dir, copies=7), name="upload")
    total = Post.objects.filter(source=summary.source).count()
    # This process enqueues on the ORM broker; the Redis cluster resumes the queued run on start.
    run = IndexRun.objects.create(owner=user, source=summary.source)
    worker = start_worker(**extra)
    wait_for(lambda: posts_done(run) >= 5, timeout=180, message="some progress")

    restart_redis()
    at_restart = posts_done(run)
    assert at_restart < total, "the run finished before Redis restarted: nothing was proven"
    wait_for(done(run), timeout=300, message=f"run done after the Redis restart\n{worker.output()[-3000:]}")
    assert_exact(run)
    assert worker.process.poll() is None, "the cluster died with Redis"


def test_queued_tasks_lost_with_redis_are_resumed(user, fixtures_dir, start_worker, redis_db9, data_dir):
    """Redis restarted without its data while jobs waited in it: they run anyway.

    The normal resume waits until a job is stale (here 10 minutes); the broker
    marker tells the starting cluster that Redis lost everything at once.
    """
    env = worker_env(data_dir, REDIS_URL=REDIS_URL)
    summary = import_photos(user, variants(fixtures_dir, copies=1)[:15], name="upload")
    run = IndexRun.objects.create(owner=user, source=summary.source)
    enqueue = (
        "from indexing import pipeline; pipeline.broker_lost_its_queue(); "
        f"pipeline.crawl_source({run.pk})"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", enqueue],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Index jobs carry FACES_INDEX_BATCH posts each: every post is queued, in that many jobs.
    assert Post.objects.filter(run=run).count() == 15
    assert redis_db9.llen("django_q:faces:q") == math.ceil(15 / settings.FACES_INDEX_BATCH)

    restart_redis()
    assert redis.Redis.from_url(REDIS_URL).llen("django_q:faces:q") == 0  # the jobs are gone
    worker = start_worker(REDIS_URL=REDIS_URL, FACES_RESUME_STALE_SECONDS="600")
    wait_for(done(run), timeout=240, message=f"run done after Redis lost its queue\n{worker.output()[-3000:]}")
    assert_exact(run)


def test_postgres_restart_mid_run(user, fixtures_dir, start_worker):
    if connection.vendor != "postgresql":
        pytest.skip("restarts the PostgreSQL server: run the suite on PostgreSQL (DATABASE_URL=postgres://...)")
    if not pg_version() or not shutil.which("pg_ctlcluster"):
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster, /etc/postgresql)")
    # Enough posts (266) that the run is still going when the restart is over:
    # one worker indexes ~30 a second here.
    summary = import_photos(user, variants(fixtures_dir, copies=7), name="upload")
    total = Post.objects.filter(source=summary.source).count()
    run = pipeline.start_run(summary.source)  # ORM broker, in PostgreSQL itself
    worker = start_worker()
    wait_for(lambda: posts_done(run) >= 5, timeout=180, message="some progress")

    restart_postgres()
    at_restart = wait_for(db(lambda: posts_done(run) or -1), timeout=60, message="PostgreSQL back")
    assert at_restart < total, "the run finished before PostgreSQL restarted: nothing was proven"
    wait_for(done(run), timeout=300, message=f"run done after the PostgreSQL restart\n{worker.output()[-3000:]}")
    assert_exact(run)
    assert worker.process.poll() is None, "the cluster died with PostgreSQL"
