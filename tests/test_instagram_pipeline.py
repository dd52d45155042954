"""Instagram through the pipeline: crawl, carousels, expiry, rate limits, sync, export ZIP."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from django.urls import reverse
from django.utils import timezone

from indexing import pipeline
from indexing.models import Face, IndexRun, Photo, Post, Source
from tests.fakes.instagram import connect_instagram, fake_instagram  # noqa: F401
from tests.videos import Appearance, Clip, render

pytestmark = pytest.mark.django_db


@pytest.fixture
def linked(user, fake_instagram):
    account, token = connect_instagram(user, fake_instagram)
    source = Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, name="@fake", social_account=account)
    return source


def crawl(source: Source) -> IndexRun:
    run = pipeline.start_run(source, sync=True)
    run.refresh_from_db()
    return run


def test_crawl_indexes_images_carousel_children_and_video_covers(linked, fake_instagram, user):
    ids = fake_instagram.add_sample_library()
    run = crawl(linked)
    assert run.status == IndexRun.Status.DONE
    assert (run.posts_total, run.posts_done, run.posts_skipped) == (3, 3, 1)
    carousel = Post.objects.get(external_id=ids["carousel"])
    assert carousel.media_type == "CAROUSEL_ALBUM" and carousel.photos.count() == 3
    assert carousel.permalink.startswith("http")
    # Kit (1) + Obama and Biden (2) + dogs (0) in the carousel, Obama, John Salley's video cover.
    assert run.photos_done == 5 and run.faces_found == 5 == Face.objects.filter(owner=user).count()
    flagged = Post.objects.get(external_id=ids["flagged"])
    assert flagged.status == Post.Status.SKIPPED and "media_url" in flagged.error
    assert Post.objects.get(external_id=ids["video"]).photos.get().status == Photo.Status.INDEXED


def test_expired_media_urls_are_fetched_again(linked, fake_instagram, user):
    fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"])
    run = IndexRun.objects.create(owner=user, source=linked)
    pipeline.crawl_source(run.pk)  # stores the URLs, queues the indexing
    fake_instagram.expire_media_urls()
    post = Post.objects.get(owner=user)
    stale_url = post.photos.get().media_url
    pipeline.index_post(post.pk)
    post.refresh_from_db()
    assert post.status == Post.Status.INDEXED
    assert post.photos.get().media_url != stale_url
    assert Face.objects.filter(owner=user).count() == 1


def test_rate_limit_waits_and_resumes(linked, fake_instagram, user):
    fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"])
    fake_instagram.fail_next(1, code=4, path="/me/media")
    run = pipeline.start_run(linked, sync=True)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.WAITING and run.resume_at > timezone.now()
    assert "limit" in run.last_error.lower()
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="indexing.pipeline.resume_job")
    assert schedule.next_run == run.resume_at
    # The page says it is waiting.
    from django.test import Client

    client = Client()
    client.force_login(user)
    assert client.get(reverse("run_progress", args=[run.pk])).json()["status"] == "waiting"
    # When the schedule fires, the crawl resumes; the sync path indexes here.
    pipeline.resume_job(run.pk, "crawl_source", run.pk)
    for post_id in Post.objects.filter(run=run, status=Post.Status.PENDING).values_list("pk", flat=True):
        pipeline.index_post(post_id)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.DONE and run.posts_done == 1


def test_incremental_sync_fetches_only_new_posts_and_notices_deletions(linked, fake_instagram, user):
    first = fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"])
    second = fake_instagram.add_post("IMAGE", ["people/barack_obama/1.jpg"])
    crawl(linked)
    linked.refresh_from_db()
    assert linked.newest_post_at is not None
    fake_instagram.requests.clear()
    newest = fake_instagram.add_post("IMAGE", ["people/kit_harington/2.jpg"])
    fake_instagram.delete_post(first)
    run = crawl(linked)
    assert (run.status, run.posts_total, run.posts_done) == ("done", 1, 1)
    assert set(Post.objects.filter(owner=user).values_list("external_id", flat=True)) == {second, newest}
    assert Face.objects.filter(owner=user).count() == 2
    # Only the first page was needed for the new post; nothing was downloaded twice.
    cdn = [r for r in fake_instagram.requests if r.path.startswith("/cdn")]
    assert len(cdn) == 1


def test_revoked_token_fails_the_run_and_asks_to_reconnect(linked, fake_instagram, user, client):
    fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"])
    fake_instagram.revoke_token()
    run = crawl(linked)
    assert run.status == IndexRun.Status.FAILED and "reconnect" in run.last_error.lower()
    linked.refresh_from_db()
    assert linked.needs_reconnect
    client.force_login(user)
    home = client.get("/")
    assert b"Reconnect Instagram" in home.content


def test_linking_starts_the_first_crawl_and_unlinking_stops(user, fake_instagram, django_capture_on_commit_callbacks):
    account, _ = connect_instagram(user, fake_instagram)
    with django_capture_on_commit_callbacks(execute=True):
        source = pipeline.link_instagram(account)
    assert source.runs.count() == 1 and source.name.startswith("@")
    pipeline.link_instagram(account)  # a login while the run is active starts nothing new
    assert source.runs.count() == 1
    pipeline.unlink_instagram(account)
    source.refresh_from_db()
    assert not source.active and source.runs.get().status == IndexRun.Status.CANCELLED


def test_tokens_never_reach_logs_pages_or_admin(linked, fake_instagram, user, client, caplog):
    import logging

    fake_instagram.add_sample_library()
    with caplog.at_level(logging.DEBUG):
        run = crawl(linked)
    token = linked.social_account.socialtoken_set.get().token
    assert token not in caplog.text
    client.force_login(user)
    for url in ["/", reverse("import"), reverse("run", args=[run.pk]), reverse("run_progress", args=[run.pk])]:
        assert token.encode() not in client.get(url).content


def _export_zip() -> bytes:
    from tests.conftest import FIXTURES

    buffer = io.BytesIO()
    posts = [
        {"media": [{"uri": "media/posts/202301/a.jpg", "creation_timestamp": 1673000000,
                    "title": "Caf\u00c3\u00a9 with Joe"}]},
        {"title": "Two of us", "creation_timestamp": 1674000000,
         "media": [{"uri": "media/posts/202302/b.jpg", "creation_timestamp": 1674000000, "title": ""},
                   {"uri": "media/posts/202302/c", "creation_timestamp": 1674000000, "title": ""}]},
        {"media": [{"uri": "media/posts/202303/d.mp4", "creation_timestamp": 1675000000, "title": "broken"}]},
    ]
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("your_instagram_activity/media/posts_1.json", json.dumps(posts))
        archive.writestr("media/posts/202301/a.jpg", (FIXTURES / "people/joe_biden/2.jpg").read_bytes())
        archive.writestr("media/posts/202302/b.jpg", (FIXTURES / "groups/two_people.jpg").read_bytes())
        # An extensionless reel of someone else, and a video that is not one.
        archive.writestr("media/posts/202302/c", render(Clip(3, [Appearance(FIXTURES / "people/john_simm/1.jpg", 1, 3)])))
        archive.writestr("media/posts/202303/d.mp4", b"\x00\x00\x00\x18ftypmp42 not really a video")
    return buffer.getvalue()


def test_export_zip_upload_is_indexed_and_never_twice(alice_client, user, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = _export_zip()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("export.zip", data)})
    run = IndexRun.objects.get(owner=user)
    assert response["Location"] == reverse("run", args=[run.pk])
    pipeline.crawl_source(run.pk, sync=True)
    run.refresh_from_db()
    # The broken video fails alone, with its error on its post; the reel's person is one face.
    assert (run.status, run.posts_done, run.posts_failed, run.photos_done, run.faces_found) == ("done", 2, 1, 3, 4)
    broken = Post.objects.get(owner=user, caption="broken")
    assert broken.status == "failed" and "not a video we can read" in broken.error
    reel_face = Face.objects.get(owner=user, photo__external_id="media/posts/202302/c")
    assert reel_face.photo.kind == "video" and abs(reel_face.seen_at - 1.0) <= 1.0 and reel_face.frame
    captions = set(Post.objects.filter(owner=user).values_list("caption", flat=True))
    assert "Café with Joe" in captions
    assert Post.objects.filter(owner=user, timestamp=dt.datetime.fromtimestamp(1673000000, dt.UTC)).exists()

    # The same export again: every photo is recognized by its content and skipped.
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("export.zip", data)})
    second = IndexRun.objects.filter(owner=user).exclude(pk=run.pk).get()
    pipeline.crawl_source(second.pk, sync=True)
    second.refresh_from_db()
    assert (second.status, second.photos_done) == ("done", 0)
    assert Face.objects.filter(owner=user).count() == 4


def test_export_upload_refuses_a_bad_zip(alice_client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/passwd", "x")
    response = alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("e.zip", buffer.getvalue())},
                                 follow=True)
    assert b"unsafe path" in response.content
    assert not IndexRun.objects.filter(owner=user).exists()
    response = alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("e.zip", b"not a zip")},
                                 follow=True)
    assert b"not a ZIP" in response.content


def test_instagram_login_without_an_app_is_a_404(client, settings):
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers["instagram_login"] = {**providers["instagram_login"], "APPS": []}
    settings.SOCIALACCOUNT_PROVIDERS = providers
    assert client.post("/accounts/instagram_login/login/").status_code == 404
