"""True dates (EXIF for uploads, the post's time for exports, none rather than the upload
day) and an export whose photos are already in the library (merged, each post says so)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from django.core.management import call_command
from PIL import Image

from indexing.models import IndexRun, Photo, Post, Source
from tests.conftest import FIXTURES, make_user

pytestmark = pytest.mark.django_db(transaction=True)

NO_EXIF_DATE = ["people/joe_biden/2.jpg", "people/joe_biden/3.jpg"]  # fixtures without an EXIF date


def export_zip(path, members: dict[str, tuple[bytes, int, str]]) -> str:
    """An export ZIP: media id -> (bytes, creation time, caption)."""
    posts = [{"media": [{"uri": f"media/posts/202301/{mid}.jpg", "creation_timestamp": stamp, "title": title}]}
             for mid, (_, stamp, title) in members.items()]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("your_instagram_activity/media/posts_1.json", json.dumps(posts))
        for mid, (data, _, _) in members.items():
            archive.writestr(f"media/posts/202301/{mid}.jpg", data)
    return str(path)


def upload_undated(user, tmp_path) -> list[bytes]:
    """Upload the fixtures without an EXIF date as photo0.jpg, photo1.jpg; their bytes."""
    folder = tmp_path / "upload"
    folder.mkdir()
    data = [(FIXTURES / name).read_bytes() for name in NO_EXIF_DATE]
    for n, blob in enumerate(data):
        (folder / f"photo{n}.jpg").write_bytes(blob)
    call_command("faces_import", "--user", user.email, "--sync", str(folder))
    return data


def with_exif_date(data: bytes, when: str, offset: str) -> bytes:
    img = Image.open(io.BytesIO(data))
    exif = img.getexif()
    exif.get_ifd(0x8769)[0x9003] = when
    exif.get_ifd(0x8769)[0x9011] = offset
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def test_uploads_take_the_exif_date_or_none(tmp_path):
    user = make_user("dates@example.com")
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "dated.jpg").write_bytes(
        with_exif_date((FIXTURES / NO_EXIF_DATE[0]).read_bytes(), "2021:07:14 18:03:51", "+02:00"))
    (folder / "undated.jpg").write_bytes((FIXTURES / NO_EXIF_DATE[1]).read_bytes())
    call_command("faces_import", "--user", user.email, "--sync", str(folder))
    posts = {p.external_id: p.timestamp for p in Post.objects.filter(owner=user)}
    assert posts["dated.jpg"] == dt.datetime(2021, 7, 14, 16, 3, 51, tzinfo=dt.timezone.utc)
    assert posts["undated.jpg"] is None  # not the day it was uploaded


def test_an_export_of_photos_already_uploaded_merges_and_says_so(tmp_path):
    user = make_user("twice-export@example.com")
    data = upload_undated(user, tmp_path)
    assert Photo.objects.filter(owner=user, status=Photo.Status.INDEXED).count() == 2

    archive = export_zip(tmp_path / "export.zip", {
        "17900000000000001": (data[0], 1672531200, "New year"),
        "17900000000000002": (data[1], 1675209600, ""),
    })
    call_command("faces_import", "--user", user.email, "--sync", archive)
    run = IndexRun.objects.filter(owner=user, source__kind=Source.Kind.EXPORT).get()
    assert run.status == IndexRun.Status.DONE
    assert (run.posts_total, run.posts_skipped) == (0, 2)
    skipped = Post.objects.filter(source=run.source, status=Post.Status.SKIPPED)
    assert skipped.count() == 2 and all("already in your library" in p.error.lower() for p in skipped)
    assert Photo.objects.filter(owner=user).count() == 2  # no second copy
    first = Photo.objects.get(owner=user, sha256=Photo.objects.get(owner=user, external_id="photo0.jpg").sha256).post
    assert first.caption == "New year"
    assert first.timestamp == dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    assert first.external_id == "17900000000000001"  # the Instagram post id, merged
    second = Photo.objects.get(owner=user, external_id="photo1.jpg").post
    assert second.timestamp == dt.datetime(2023, 2, 1, tzinfo=dt.timezone.utc) and second.caption == ""
