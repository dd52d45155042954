"""The indexing pipeline: jobs, idempotency, faults, progress, commands."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from PIL import Image

from indexing import pipeline
from indexing.imports import import_photos
from indexing.models import Face, IndexRun, Photo, Post

pytestmark = pytest.mark.django_db


def people_files(fixtures_dir, names=("barack_obama", "joe_biden", "kit_harington")):
    files = []
    for name in names:
        for path in sorted((fixtures_dir / "people" / name).glob("*.jpg")):
            files.append((f"{name}/{path.name}", path.read_bytes()))
    return files


def png_header_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def ico_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, "ICO")
    return buffer.getvalue()


def run_sync(user, files, name="test upload") -> IndexRun:
    summary = import_photos(user, files, name=name)
    return pipeline.start_run(summary.source, sync=True)


def test_upload_is_indexed_with_exact_counters(user, fixtures_dir):
    files = people_files(fixtures_dir)
    run = run_sync(user, files)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.DONE
    assert (run.posts_total, run.posts_done, run.posts_failed) == (len(files), len(files), 0)
    assert run.photos_done == len(files)
    assert run.faces_found == Face.objects.filter(owner=user).count() == len(files)
    face = Face.objects.filter(owner=user).first()
    assert face.thumbnail and face.embedding and len(face.embedding) == 128 * 4
    assert 0 <= face.box_x < 1 and 0 < face.box_w <= 1
    photo = face.photo
    assert photo.status == Photo.Status.INDEXED and photo.width and photo.sha256 and photo.original


def test_rerunning_jobs_never_duplicates(user, fixtures_dir):
    run = run_sync(user, people_files(fixtures_dir, ("joe_biden",)))
    before = IndexRun.objects.get(pk=run.pk)
    faces = Face.objects.filter(owner=user).count()
    for post in Post.objects.filter(owner=user):
        pipeline.index_post(post.pk)
    pipeline.crawl_source(run.pk)
    IndexRun.objects.filter(pk=run.pk).update(status=IndexRun.Status.CRAWLING)
    pipeline.crawl_source(run.pk, sync=True)
    after = IndexRun.objects.get(pk=run.pk)
    assert Face.objects.filter(owner=user).count() == faces
    assert (after.posts_total, after.posts_done, after.photos_done, after.faces_found) == (
        before.posts_total, before.posts_done, before.photos_done, before.faces_found)
    assert after.status == IndexRun.Status.DONE


def test_same_photo_uploaded_twice_is_skipped(user, fixtures_dir):
    files = people_files(fixtures_dir, ("joe_biden",))
    run_sync(user, files)
    again = import_photos(user, files, name="again")
    assert again.added == 0 and again.duplicates == len(files)


def test_a_bad_photo_fails_alone_with_a_clear_error(user, fixtures_dir):
    good = people_files(fixtures_dir, ("joe_biden",))
    jpeg = good[0][1]
    bad = [
        ("empty.jpg", b""),
        ("truncated.jpg", jpeg[: len(jpeg) // 3]),
        ("notes.jpg", b"this is not an image at all"),
        ("bomb.png", png_header_bomb()),
        ("icon.ico", ico_bytes()),
    ]
    run = run_sync(user, good + bad)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.DONE
    assert (run.posts_done, run.posts_failed, run.posts_total) == (len(good), len(bad), len(good) + len(bad))
    errors = dict(Post.objects.filter(owner=user, status=Post.Status.FAILED).values_list("external_id", "error"))
    assert "empty" in errors["empty.jpg"]
    assert "damaged or truncated" in errors["truncated.jpg"]
    assert "not an image" in errors["notes.jpg"]
    assert "too large" in errors["bomb.png"]
    assert "Unsupported image format" in errors["icon.ico"]
    assert Face.objects.filter(owner=user).count() == len(good)

    # Retrying a failed post that still fails keeps the counters exact.
    retried = pipeline.retry_failed(run, [Post.objects.get(owner=user, external_id="notes.jpg").pk])
    assert retried == 1
    pipeline.index_post(Post.objects.get(owner=user, external_id="notes.jpg").pk)
    run.refresh_from_db()
    assert (run.posts_done, run.posts_failed, run.status) == (len(good), len(bad), IndexRun.Status.DONE)


def test_cancelled_run_stops_indexing(user, fixtures_dir):
    summary = import_photos(user, people_files(fixtures_dir, ("joe_biden",)), name="u")
    run = IndexRun.objects.create(owner=user, source=summary.source)
    pipeline.crawl_source(run.pk, sync=False)  # queues jobs; none runs here
    assert pipeline.cancel_run(run)
    for post in Post.objects.filter(owner=user):
        pipeline.index_post(post.pk)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.CANCELLED and run.posts_done == 0
    assert not Face.objects.filter(owner=user).exists()


def test_no_consent_no_processing(user, fixtures_dir):
    from accounts.models import FaceConsent

    summary = import_photos(user, people_files(fixtures_dir, ("joe_biden",)), name="u")
    FaceConsent.objects.record(user, accepted=False)
    with pytest.raises(PermissionError):
        pipeline.start_run(summary.source)
    assert not Face.objects.exists()


def test_progress_json_and_pages_are_private(client, user, other_user, fixtures_dir):
    run = run_sync(user, people_files(fixtures_dir, ("joe_biden",)) + [("bad.jpg", b"nope")])
    client.force_login(user)
    data = client.get(reverse("run_progress", args=[run.pk])).json()
    assert data["status"] == "done" and data["posts_done"] == 3 and data["posts_failed"] == 1
    assert data["percent"] == 100 and data["failed_posts"][0]["external_id"] == "bad.jpg"
    page = client.get(reverse("run", args=[run.pk]))
    assert b"Open your gallery" in page.content and b"bad.jpg" in page.content
    client.force_login(other_user)
    for name in ("run", "run_progress"):
        assert client.get(reverse(name, args=[run.pk])).status_code == 404
    assert client.post(reverse("run_retry", args=[run.pk])).status_code == 404
    assert client.post(reverse("run_cancel", args=[run.pk])).status_code == 404


def test_upload_view_creates_a_run(alice_client, user, fixtures_dir, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(n.replace("/", "_"), d, "image/jpeg") for n, d in people_files(fixtures_dir, ("joe_biden",))]
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("upload_photos"), {"photos": files})
    run = IndexRun.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    assert run.source.posts.count() == 3
    from django_q.models import OrmQ

    assert OrmQ.objects.count() == 1  # the crawl job, queued for the worker


def test_upload_requires_consent(client, fixtures_dir):
    from tests.conftest import make_user

    client.force_login(make_user("noconsent@example.com", consent=False))
    response = client.get(reverse("import"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("consent"))


def test_commands_import_search_status(user, fixtures_dir, capsys, tmp_path):
    call_command("faces_import", "--user", user.email, "--sync", "--json", str(fixtures_dir / "people"))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["photos_added"] == 38 and summary["posts_done"] == 38
    assert Photo.objects.filter(owner=user, external_id="barack_obama/1.jpg").exists()

    query = fixtures_dir / "people" / "kit_harington" / "2.jpg"
    call_command("faces_search", "--user", user.email, "--json", "--limit", "3", str(query))
    line = json.loads(capsys.readouterr().out.strip())
    assert line["query"] == str(query) and line["faces_in_query"] == 1
    assert [m["external_id"].split("/")[0] for m in line["matches"]] == ["kit_harington"] * 3
    assert line["matches"][0]["similarity"] >= line["matches"][-1]["similarity"] >= 80
    assert len({m["photo_id"] for m in line["matches"]}) == 3 and len(line["matches"][0]["box"]) == 4

    call_command("faces_status", "--user", user.email, "--json")
    status = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert status["status"] == "done" and status["faces_found"] == 38

    noface = fixtures_dir / "noface" / "eagle.jpg"
    with pytest.raises(CommandError, match="No face"):
        call_command("faces_search", "--user", user.email, "--json", str(noface))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(CommandError, match="not an image"):
        call_command("faces_search", "--user", user.email, "--json", str(broken))
    with pytest.raises(CommandError, match="Unknown user"):
        call_command("faces_status", "--user", "nobody@example.com", "--json")
    with pytest.raises(CommandError, match="Unknown user"):
        call_command("faces_import", "--user", "nobody@example.com", str(query))
    with pytest.raises(CommandError, match="No such file"):
        call_command("faces_import", "--user", user.email, str(tmp_path / "missing"))


def test_import_command_creates_user_and_queues(db, fixtures_dir, capsys, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    with django_capture_on_commit_callbacks(execute=True):
        call_command("faces_import", "--user", "new@example.com", "--create-user",
                     str(fixtures_dir / "people" / "joe_biden"))
    out = capsys.readouterr().out
    assert out.startswith("run ") and "Queued" in out
    assert OrmQ.objects.count() == 1


def test_worker_start_puts_back_missing_schedules(db):
    from django_q.models import Schedule

    from indexing.schedules import ensure_schedules

    Schedule.objects.all().delete()
    ensure_schedules()
    ensure_schedules()
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {"Resume interrupted indexing runs", "Sync Instagram accounts", "Refresh Instagram tokens",
            "Delete face data of inactive accounts"} <= names
    assert Schedule.objects.count() == len(names)
    assert Schedule.objects.get(func="indexing.pipeline.resume_interrupted_runs").minutes == 1


def test_tasks_queued_under_the_old_module_paths_still_run(user, fixtures_dir):
    """Queued tasks and schedules store ``indexing.pipeline.<job>``: a worker still finds and runs them.

    The post is queued as before the package split, then run by django-q's own
    worker loop (which resolves the stored path with ``pydoc.locate``).
    """
    import pydoc
    from multiprocessing import Value
    from queue import Queue

    from django_q.models import OrmQ
    from django_q.worker import worker

    from indexing.pipeline.queue import TASKS

    assert all(callable(pydoc.locate(task)) for task in TASKS)
    summary = import_photos(user, people_files(fixtures_dir, ("joe_biden",))[:1], name="u")
    run = IndexRun.objects.create(owner=user, source=summary.source)
    pipeline.crawl_source(run.pk)  # queues one index_posts batch on the ORM broker
    (queued,) = [row.task for row in OrmQ.objects.all()]
    assert queued["func"] == "indexing.pipeline.index_posts"
    # A task queued before batches existed names index_post and one post id.
    queued = {**queued, "func": "indexing.pipeline.index_post", "args": (queued["args"][0][0],)}

    tasks, results = Queue(), Queue()
    tasks.put({**queued, "sync": True})  # sync: keep the test's database connection
    tasks.put("STOP")
    worker(tasks, results, Value("f", -1), timeout=None)
    assert results.get_nowait()["success"] is True
    run.refresh_from_db()
    assert run.status == IndexRun.Status.DONE and run.posts_done == 1
    assert Face.objects.filter(owner=user).count() == 1


def test_a_listed_page_upserts_in_bulk_exactly_like_post_by_post(user):
    """New, known, copyright-skipped, photo-less and repeated items: the same rows and outcomes both ways."""
    import datetime as dt

    from indexing.imports import upsert_post, upsert_posts
    from indexing.models import Source
    from indexing.sources import RemotePhoto, RemotePost

    when = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)

    def page(prefix: str) -> list[RemotePost]:
        def photo(n: int, kind: str = "image") -> RemotePhoto:
            return RemotePhoto(f"{prefix}p{n}", position=n, media_url=f"https://cdn.example/{n}.jpg", kind=kind,
                               video_url="https://cdn.example/v.mp4" if kind == "video" else "")
        return [
            RemotePost(f"{prefix}known", photos=[photo(0)], caption="now with a caption"),
            RemotePost(f"{prefix}new", photos=[photo(1)], caption="a", timestamp=when, permalink="https://ig/p/1"),
            RemotePost(f"{prefix}album", "CAROUSEL_ALBUM", photos=[photo(2), photo(3, "video")]),
            RemotePost(f"{prefix}flagged", skip_reason="no media_url (copyright-flagged)"),
            RemotePost(f"{prefix}empty"),
            RemotePost(f"{prefix}new", photos=[photo(1)], caption="a", timestamp=when, permalink="https://ig/p/1"),
        ]

    def rows(source: Source, prefix: str) -> list[tuple]:
        posts = [(p.external_id.removeprefix(prefix), p.status, p.error, p.media_type, p.caption, p.timestamp,
                  p.permalink) for p in Post.objects.filter(source=source).order_by("external_id")]
        photos = [(p.external_id.removeprefix(prefix), p.post.external_id.removeprefix(prefix), p.position, p.kind,
                   p.media_url, p.video_url, p.status)
                  for p in Photo.objects.filter(post__source=source).order_by("external_id")]
        return [posts, photos]

    def outcomes(found, prefix: str) -> list[tuple]:
        name = lambda post: post.external_id.removeprefix(prefix) if post else None  # noqa: E731
        return [(name(u.post), u.skipped, name(u.skipped_post), u.added, u.duplicates) for u in found]

    results = {}
    for prefix, bulk in (("a-", True), ("b-", False)):
        source = Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, name=prefix)
        upsert_post(source, RemotePost(f"{prefix}known", photos=[RemotePhoto(f"{prefix}p0")]))
        listed = page(prefix)
        found = upsert_posts(source, listed) if bulk else [upsert_post(source, remote) for remote in listed]
        results[bulk] = (outcomes(found, prefix), rows(source, prefix))
    assert results[True] == results[False]
    found, (posts, photos) = results[True]
    assert [f[0] for f in found] == ["known", "new", "album", None, None, "new"]
    assert len(posts) == 4 and len(photos) == 4  # known, new, album, flagged; the empty item leaves nothing
