"""Videos end to end: Instagram reels and video children, uploads, search, serving, deletion."""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse

from indexing import pipeline
from indexing.deletion import delete_face_data
from indexing.models import Face, IndexRun, Photo, Post, Source
from tests.conftest import FIXTURES
from tests.fakes.instagram import connect_instagram, fake_instagram  # noqa: F401
from tests.videos import Appearance, Clip, render

pytestmark = pytest.mark.django_db

OBAMA = FIXTURES / "people/barack_obama/1.jpg"
SIMM = FIXTURES / "people/john_simm/2.jpg"


@pytest.fixture(scope="module")
def obama_enters_at_2():
    return render(Clip(5, [Appearance(OBAMA, 2, 5)]))


@pytest.fixture
def linked(user, fake_instagram):
    account, _ = connect_instagram(user, fake_instagram)
    return Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, name="@fake", social_account=account)


def test_a_reel_is_indexed_frame_by_frame_with_its_cover(linked, fake_instagram, user, obama_enters_at_2):
    reel = fake_instagram.add_post("VIDEO", ["people/kit_harington/2.jpg"], video=obama_enters_at_2)
    run = pipeline.start_run(linked, sync=True)
    run.refresh_from_db()
    assert (run.status, run.posts_done, run.posts_failed) == ("done", 1, 0)
    photo = Photo.objects.get(post__external_id=reel)
    assert photo.kind == "video" and photo.video and photo.original and 4 <= photo.duration <= 5
    faces = sorted(Face.objects.filter(photo=photo), key=lambda f: f.seen_at)
    # Kit is on the cover only (moment 0); Obama walks in at 2 s and is not on the cover.
    assert len(faces) == 2 and faces[0].seen_at == 0.0 and abs(faces[1].seen_at - 2.0) <= 1.0
    assert all(f.frame and f.thumbnail for f in faces)
    assert default_storage.exists(photo.video.name)


def test_a_video_child_of_a_carousel_is_indexed_beside_its_photos(linked, fake_instagram, user, obama_enters_at_2):
    carousel = fake_instagram.add_post("CAROUSEL_ALBUM", ["people/joe_biden/1.jpg", "people/kit_harington/2.jpg"],
                                       child_videos={1: obama_enters_at_2})
    run = pipeline.start_run(linked, sync=True)
    run.refresh_from_db()
    assert (run.status, run.photos_done) == ("done", 2)
    photos = list(Post.objects.get(external_id=carousel).photos.order_by("position"))
    assert [p.kind for p in photos] == ["image", "video"]
    assert photos[1].faces.filter(seen_at__gte=1, seen_at__lte=3).count() == 1  # Obama, in the clip only


def test_an_expired_video_url_is_fetched_again_by_id(linked, fake_instagram, user, obama_enters_at_2):
    fake_instagram.add_post("VIDEO", ["people/kit_harington/2.jpg"], video=obama_enters_at_2)
    run = IndexRun.objects.create(owner=user, source=linked)
    pipeline.crawl_source(run.pk)
    fake_instagram.expire_media_urls()
    post = Post.objects.get(owner=user)
    stale = post.photos.get().video_url
    pipeline.index_post(post.pk, sync=True)
    post.refresh_from_db()
    assert post.status == "indexed" and post.photos.get().video_url != stale


def test_a_bad_video_fails_alone_with_a_clear_error(linked, fake_instagram, user):
    fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"])
    bad = fake_instagram.add_post("VIDEO", ["people/kit_harington/2.jpg"], video=b"\x00\x00\x00\x18ftypmp42" + b"\0" * 99)
    run = pipeline.start_run(linked, sync=True)
    run.refresh_from_db()
    assert (run.status, run.posts_done, run.posts_failed) == ("done", 1, 1)
    failed = Post.objects.get(external_id=bad)
    assert failed.status == "failed" and "video" in failed.error.lower()


def test_an_uploaded_video_is_found_by_a_selfie_and_served_seekable(user, client, tmp_path, obama_enters_at_2,
                                                                    capsys, other_user):
    clip = tmp_path / "beach.mp4"
    clip.write_bytes(obama_enters_at_2)
    call_command("faces_import", "--user", user.email, "--sync", "--json", str(clip))
    capsys.readouterr()
    (face,) = Face.objects.filter(owner=user)
    assert face.photo.kind == "video" and abs(face.seen_at - 2.0) <= 1.0
    assert face.photo.original  # no cover: a frame stands for the video

    call_command("faces_search", "--user", user.email, "--json", str(FIXTURES / "people/barack_obama/2.jpg"))
    result = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert [m["external_id"] for m in result["matches"]] == ["beach.mp4"]

    client.force_login(user)
    video_url = reverse("photo_video", args=[face.photo_id])
    whole = client.get(video_url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == obama_enters_at_2
    part = client.get(video_url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and b"".join(part.streaming_content) == obama_enters_at_2[100:200]
    assert client.get(reverse("face_frame", args=[face.pk])).status_code == 200
    client.force_login(other_user)
    assert client.get(video_url).status_code == 404
    assert client.get(reverse("face_frame", args=[face.pk])).status_code == 404


def test_deleting_face_data_and_photos_removes_tracks_frames_and_videos(user, tmp_path, obama_enters_at_2, capsys):
    clip = tmp_path / "beach.mp4"
    clip.write_bytes(obama_enters_at_2)
    call_command("faces_import", "--user", user.email, "--sync", str(clip))
    face = Face.objects.get(owner=user)
    frame, video = face.frame.name, face.photo.video.name
    delete_face_data(user)
    assert not Face.objects.filter(owner=user).exists() and not default_storage.exists(frame)
    assert default_storage.exists(video)  # photos stay unless asked
    delete_face_data(user, photos=True)
    assert not default_storage.exists(video) and not Photo.objects.filter(owner=user).exists()
