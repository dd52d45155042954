"""Batched indexing against a misbehaving Instagram: rate limits, expiring URLs, slow and failing CDN.

The queue runs in this process (``run_queue``): each queued task and each
rate-limit schedule is taken from the database in order and run like a
worker would, without waiting for the schedule's time, so these tests are
fast and deterministic. Killed workers are in ``test_batch_workers.py``.
"""

from __future__ import annotations

import ast
import importlib

import pytest
import requests
from django_q.models import OrmQ, Schedule

from indexing import pipeline
from indexing.models import Face, IndexRun, Photo, Post, Source
from indexing.pipeline.fetch import download_session
from tests.fakes.instagram import connect_instagram, fake_instagram  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = ["people/barack_obama/1.jpg", "people/joe_biden/1.jpg", "people/kit_harington/2.jpg",
          "people/john_salley/1.jpg", "people/john_simm/2.jpg", "people/alex_lacamoire/1.jpg"]


def call(path: str, *args, **kwargs):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def run_queue(limit: int = 500) -> int:
    """Run every queued task, and every rate-limit resume as if its time had come, until none is left."""
    ran = 0
    while ran < limit:
        queued = OrmQ.objects.order_by("pk").first()
        if queued is not None:
            task = queued.task
            queued.delete()
            call(task["func"], *task["args"], **task["kwargs"])
        else:
            schedule = Schedule.objects.filter(func=pipeline.queue.RESUME_JOB).order_by("pk").first()
            if schedule is None:
                return ran
            args = ast.literal_eval(f"({schedule.args},)")
            schedule.delete()
            call(schedule.func, *args)
        ran += 1
    raise AssertionError(f"the queue did not drain after {limit} tasks")


def library(fake, posts: int) -> list[str]:
    """``posts`` posts, every third a carousel of two; returns the media ids."""
    ids = []
    for n in range(posts):
        photos = [PEOPLE[n % len(PEOPLE)]] + ([PEOPLE[(n + 1) % len(PEOPLE)]] if n % 3 == 2 else [])
        ids.append(fake.add_post("CAROUSEL_ALBUM" if len(photos) > 1 else "IMAGE", photos, caption=f"post {n}"))
    return ids


def link(user, fake) -> IndexRun:
    account, _ = connect_instagram(user, fake)
    source = Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, social_account=account, name="@x")
    return pipeline.start_run(source)


def photo_count(fake) -> int:
    return sum(len(m.children) or 1 for m in fake.media)


def assert_every_photo_once(run: IndexRun, fake, failed: int = 0) -> None:
    run.refresh_from_db()
    assert run.status == IndexRun.Status.DONE, (run.status, run.last_error)
    assert run.posts_total == len(fake.media) == Post.objects.filter(run=run).count()
    assert (run.posts_done, run.posts_failed) == (len(fake.media) - failed, failed)
    photos = Photo.objects.filter(post__run=run)
    assert photos.count() == photo_count(fake)
    assert run.photos_done == photos.filter(status=Photo.Status.INDEXED).count()
    faces = Face.objects.filter(photo__post__run=run)
    assert run.faces_found == faces.count()
    # One face per single-person photo: a job that ran twice would have made two.
    assert faces.count() == faces.values("photo").distinct().count() == run.photos_done
    assert run.photos_fetched == photos.exclude(original="").count()


@pytest.mark.parametrize("limit", [{"status": 429}, {"code": 4}, {"code": 17}, {"code": 32}, {"code": 613}],
                         ids=["http-429", "code-4", "code-17", "code-32", "code-613"])
def test_rate_limit_every_third_call_still_lists_each_page_once(limit, user, settings):
    from tests.fakes.instagram import FakeInstagram

    fake = FakeInstagram(page_size=2).start()
    try:
        settings.INSTAGRAM_GRAPH_URL = fake.url
        settings.FACES_INDEX_BATCH = 3
        library(fake, 9)
        fake.rate_limit_every(3, **limit)
        run = link(user, fake)
        run_queue()
        assert_every_photo_once(run, fake)
        pages = fake.listed_pages()
        assert len(pages) == len(set(pages)) == 5, pages  # 9 posts, 2 a page, none listed twice
        refused = [r for r in fake.requests if r.path.endswith("/media") and r.status != 200]
        assert refused, "the rate limit never hit the listing"
        run.refresh_from_db()
        assert run.pages_listed == 5 and run.listed_at is not None
    finally:
        fake.stop()


def test_index_jobs_download_over_the_connections_of_the_jobs_before(user, settings):
    """A CDN that keeps connections alive sees each worker's few connections, not new ones per job."""
    from tests.fakes.instagram import FakeInstagram

    fake = FakeInstagram()
    fake.keep_alive = True
    fake.start()
    try:
        settings.INSTAGRAM_GRAPH_URL = fake.url
        settings.FACES_INDEX_BATCH = 3
        settings.FACES_FETCH_CONCURRENCY = 2
        library(fake, 12)
        run = link(user, fake)
        run_queue()
        assert_every_photo_once(run, fake)
        downloads = [r for r in fake.requests if r.path.startswith("/cdn/")]
        assert len(downloads) == photo_count(fake) == 16
        # Four jobs (12 posts, 3 a job) of two download threads each: two connections in all, not two a job.
        assert len({r.port for r in downloads}) <= 2
        # A server that stops closes them: the pool never asks a stopped fake again
        # (a later fake may get its port).
        url = fake.url + downloads[0].raw
        fake.stop()
        with pytest.raises(requests.ConnectionError):
            download_session(2).get(url, timeout=5)
    finally:
        fake.stop()


@pytest.mark.parametrize("session", ["download", "graph"])
def test_instagram_sessions_keep_no_cookies_and_add_no_netrc_login(session, tmp_path, monkeypatch):
    """Every tenant's jobs in a worker share one session: a cookie one CDN answer sets is never
    sent again, and a ``.netrc`` login (a ``default`` entry matches every host) is never sent at all."""
    import http.server
    import threading

    from indexing.instagram.client import InstagramClient

    netrc = tmp_path / "netrc"
    netrc.write_text("default login ops password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    class SetsCookies(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.server.sent.append((self.headers.get("Cookie"), self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Set-Cookie", "session=alice-secret; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SetsCookies)
    server.sent = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
        http_session = download_session(2) if session == "download" else InstagramClient("token").session
        assert requests.utils.get_netrc_auth(url) == ("ops", "hunter2")  # what a plain session would send
        answers = [http_session.get(url, timeout=10) for _ in range(2)]
        assert [a.headers["Set-Cookie"] for a in answers] == ["session=alice-secret; Path=/"] * 2
        assert server.sent == [(None, None), (None, None)]
        assert len(http_session.cookies) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_media_urls_expiring_a_second_after_listing_are_fetched_again_by_id(user, fake_instagram, settings):
    settings.FACES_INDEX_BATCH = 4
    library(fake_instagram, 6)
    now = [1_900_000_000.0]
    fake_instagram.clock = lambda: now[0]  # the CDN's clock: URLs age when the test says, not with machine speed
    fake_instagram.media_url_ttl = 1.0
    run = link(user, fake_instagram)
    pipeline.crawl_source(run.pk)  # lists and queues; nothing is downloaded yet
    now[0] += 1.5  # every listed URL has expired; a URL asked for again now is good for a second of CDN time
    run_queue()
    assert_every_photo_once(run, fake_instagram)
    refetched = {r.path.strip("/") for r in fake_instagram.requests if r.path.strip("/").isdigit()}
    children = {c.id for m in fake_instagram.media for c in m.children} | {
        m.id for m in fake_instagram.media if not m.children}
    assert refetched == children  # each photo's URL was asked for once more, by its media id


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_a_hanging_or_trickling_photo_fails_alone(mode, user, fake_instagram, settings):
    settings.FACES_FETCH_TIMEOUT = 1.5
    settings.FACES_INDEX_BATCH = 4
    ids = library(fake_instagram, 5)
    fake_instagram.slow_cdn(ids[1], mode, seconds=30)
    run = link(user, fake_instagram)
    run_queue()
    assert_every_photo_once(run, fake_instagram, failed=1)
    failed = Post.objects.get(run=run, status=Post.Status.FAILED)
    assert failed.external_id == ids[1]
    assert "did not download within 1.5 s" in failed.error or "did not answer within 1.5 s" in failed.error
    fake_instagram.release_cdn()


def test_cdn_500_is_retried_with_backoff_then_fails_that_photo_alone(user, fake_instagram, settings):
    settings.FACES_INDEX_BATCH = 4
    ids = library(fake_instagram, 4)
    fake_instagram.fail_next(2, status=500, path=f"/cdn/{ids[0]}")  # recovers on the third try
    fake_instagram.fail_next(10, status=500, path=f"/cdn/{ids[3]}")  # never does
    run = link(user, fake_instagram)
    run_queue()
    assert_every_photo_once(run, fake_instagram, failed=1)
    failed = Post.objects.get(run=run, status=Post.Status.FAILED)
    assert failed.external_id == ids[3]
    assert "HTTP 500" in failed.error and "gave up after 4 tries" in failed.error
    tries = lambda media_id: sum(r.path.startswith(f"/cdn/{media_id}.") for r in fake_instagram.requests)  # noqa: E731
    assert (tries(ids[0]), tries(ids[3])) == (3, 4)


def test_a_redelivered_batch_changes_nothing(user, fake_instagram, settings):
    settings.FACES_INDEX_BATCH = 8
    library(fake_instagram, 6)
    run = link(user, fake_instagram)
    pipeline.crawl_source(run.pk)
    batches = [q.task["args"] for q in OrmQ.objects.order_by("pk") if q.task["func"].endswith(".index_posts")]
    assert len(batches) == 1
    run_queue()
    for args in batches:  # the broker delivers every batch a second time
        pipeline.index_posts(*args)
    assert_every_photo_once(run, fake_instagram)
