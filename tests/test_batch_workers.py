"""Batched index jobs in real qcluster processes, SIGKILLed mid-batch, on the ORM broker and on Redis."""

from __future__ import annotations

import pytest
import redis

from indexing import pipeline
from indexing.models import Face, IndexRun, Photo, Post, Source
from tests.conftest import wait_for
from tests.fakes.instagram import connect_instagram, fake_instagram  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/14"
PEOPLE = ["people/barack_obama/1.jpg", "people/joe_biden/1.jpg", "people/kit_harington/2.jpg",
          "people/john_salley/1.jpg", "people/john_simm/2.jpg", "people/alex_lacamoire/1.jpg",
          "people/john_savage/1.jpg", "people/john_schneider/1.jpg", "people/john_shimkus/1.jpg"]


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_worker_killed_mid_batch_ends_with_exact_counters(broker, user, fake_instagram, start_worker):
    for n in range(48):
        fake_instagram.add_post("IMAGE", [PEOPLE[n % len(PEOPLE)]], caption=f"post {n}")
    fake_instagram.cdn_delay = 0.05
    env = {"INSTAGRAM_GRAPH_URL": fake_instagram.url, "FACES_INDEX_BATCH": "12", "FACES_FETCH_CONCURRENCY": "4",
           "FACES_Q_TIMEOUT": "20", "FACES_Q_RETRY": "25"}
    account, _ = connect_instagram(user, fake_instagram)
    source = Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, social_account=account, name="@x")
    if broker == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        env.update(REDIS_URL=REDIS_URL, FACES_RESUME_STALE_SECONDS="0")
        # This process enqueues on the ORM broker; the Redis cluster picks the
        # queued run up through its start-up resume instead.
        run = IndexRun.objects.create(owner=user, source=source)
    else:
        run = pipeline.start_run(source)
    try:
        first = start_worker(**env)
        wait_for(lambda: IndexRun.objects.get(pk=run.pk).posts_done >= 4, timeout=180, message="some progress")
        first.kill()
        done_at_kill = IndexRun.objects.get(pk=run.pk).posts_done
        assert done_at_kill < 48, "killed too late to prove anything"
        start_worker(**env)
        wait_for(lambda: IndexRun.objects.get(pk=run.pk).status == "done", timeout=300, message="done after restart")
    finally:
        if broker == "redis":
            client.flushdb()
    run.refresh_from_db()
    posts = Post.objects.filter(run=run)
    assert run.posts_total == posts.count() == run.posts_done == 48
    assert run.posts_failed == 0
    assert run.photos_done == Photo.objects.filter(post__run=run, status=Photo.Status.INDEXED).count() == 48
    assert run.photos_fetched == 48
    faces = Face.objects.filter(photo__post__run=run)
    assert run.faces_found == faces.count() == faces.values("photo").distinct().count() == 48
    pages = fake_instagram.listed_pages()
    assert len(pages) == len(set(pages)), pages
