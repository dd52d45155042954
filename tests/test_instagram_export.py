"""Instagram export ZIPs (indexing/instagram/export.py, export_json.py): layouts, captions, safety caps."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from indexing.instagram.export import ExportError, ExportStats, iter_export_posts, open_export, repair_text
from indexing.sources import SourceError
from tests.fakes.instagram import FAKE_MP4


def mojibake(text: str) -> str:
    """How Instagram's JSON spells UTF-8 text."""
    return text.encode("utf-8").decode("latin-1")


def webp_bytes(path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "WEBP")
    return buffer.getvalue()


def build_export(path, posts_json: dict[str, object], files: dict[str, bytes],
                 compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in posts_json.items():
            archive.writestr(name, json.dumps(data), compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def sample_export(tmp_path, fixtures_dir):
    """A current-layout export: single photo, 3-photo carousel (jpg/webp/heic), video, media/other."""
    obama = (fixtures_dir / "people/barack_obama/1.jpg").read_bytes()
    files = {
        "media/posts/202301/17912345678901234.jpg": obama,
        "media/posts/202302/AQMkc0ffee.jpg": (fixtures_dir / "groups/two_people.jpg").read_bytes(),
        "media/posts/202302/AQMkc0ffee2.webp": webp_bytes(fixtures_dir / "people/kit_harington/1.jpg"),
        "media/posts/202302/AQMkc0ffee3.heic": (fixtures_dir / "special/face.heic").read_bytes(),
        "media/posts/202303/17999999999999999": FAKE_MP4 + b"\x00" * 5000,  # a video, no extension
        "media/other/17800000000000001.jpg": (fixtures_dir / "people/john_salley/1.jpg").read_bytes(),
        "your_instagram_activity/messages/inbox/x/message_1.json": b"{}",
    }
    posts = [
        {"media": [{"uri": "media/posts/202301/17912345678901234.jpg", "creation_timestamp": 1672531200,
                    "title": mojibake("Café in Zürich 😀")}]},
        {"media": [{"uri": "media/posts/202303/17999999999999999", "creation_timestamp": 1677628800,
                    "title": ""}]},
        {"title": mojibake("Carousel — três fotos"), "creation_timestamp": 1675209600,
         "media": [{"uri": f"media/posts/202302/{name}", "creation_timestamp": 1675209600, "title": ""}
                   for name in ("AQMkc0ffee.jpg", "AQMkc0ffee2.webp", "AQMkc0ffee3.heic")]},
        {"media": [{"uri": "media/other/17800000000000001.jpg", "creation_timestamp": 1680307200,
                    "title": "plain"}]},
    ]
    return build_export(tmp_path / "instagram-alice.zip",
                        {"your_instagram_activity/media/posts_1.json": posts}, files)


def test_export_posts_newest_first_with_repaired_captions(sample_export, fixtures_dir):
    stats = ExportStats()
    posts = list(iter_export_posts(sample_export, stats))

    assert [p.timestamp.year * 100 + p.timestamp.month for p in posts] == [202304, 202303, 202302, 202301]
    other, video, carousel, single = posts
    assert single.external_id == "17912345678901234"  # numeric file name = media id
    assert single.caption == "Café in Zürich 😀"
    assert [ph.external_id for ph in single.photos] == ["media/posts/202301/17912345678901234.jpg"]
    assert single.photos[0].load() == (fixtures_dir / "people/barack_obama/1.jpg").read_bytes()

    assert carousel.external_id.startswith("export:") and len(carousel.external_id) == 47
    assert carousel.media_type == "CAROUSEL_ALBUM" and carousel.caption == "Carousel — três fotos"
    assert [ph.position for ph in carousel.photos] == [0, 1, 2]
    formats = [Image.open(io.BytesIO(ph.load())).format for ph in carousel.photos]
    assert formats == ["JPEG", "WEBP", "HEIF"]

    assert video.media_type == "VIDEO" and video.photos == [] and "video" in video.skip_reason
    assert other.external_id == "17800000000000001" and len(other.photos) == 1
    assert (stats.posts, stats.images, stats.non_images, stats.missing) == (4, 5, 1, 0)
    assert stats.posts_files == ["your_instagram_activity/media/posts_1.json"]


def test_export_ids_are_stable_across_reads(sample_export):
    first = [p.external_id for p in iter_export_posts(sample_export)]
    with open(sample_export, "rb") as handle:
        second = [p.external_id for p in iter_export_posts(handle)]
    assert first == second and len(set(first)) == 4


@pytest.mark.parametrize("layout", [
    "your_instagram_activity/content/posts_{n}.json",
    "content/posts_{n}.json",
    "instagram-alice-2023-05-01/your_instagram_activity/media/posts_{n}.json",
])
def test_export_older_layouts_and_several_posts_files(tmp_path, fixtures_dir, layout):
    root = layout.split("your_instagram_activity/")[0] if layout.startswith("instagram-") else ""
    photo = (fixtures_dir / "people/alex_lacamoire/1.jpg").read_bytes()
    files = {f"{root}media/posts/2019{m:02d}/pic{m}.jpg": photo for m in (1, 2, 3)}
    posts = {
        layout.format(n=1): [
            {"media": [{"uri": f"media/posts/2019{m:02d}/pic{m}.jpg",
                        "creation_timestamp": 1546300800 + m * 86400 * 31, "title": f"p{m}"}]}
            for m in (1, 2)
        ],
        layout.format(n=2): {"ig_posts": [{"media": [{"uri": "media/posts/201903/pic3.jpg",
                                                      "creation_timestamp": 1556668800, "title": "p3"}]}]},
    }
    stats = ExportStats()
    posts_out = list(iter_export_posts(build_export(tmp_path / "old.zip", posts, files), stats))
    assert [p.caption for p in posts_out] == ["p3", "p2", "p1"]
    assert stats.images == 3 and len(stats.posts_files) == 2
    assert posts_out[0].photos[0].load() == photo


def test_mojibake_repair_leaves_good_text_alone():
    assert repair_text(mojibake("Ünïcødé ❤️")) == "Ünïcødé ❤️"
    assert repair_text("café") == "café"  # real Latin-1 text does not round-trip: kept
    assert repair_text("plain") == "plain"


@pytest.mark.parametrize("name", ["../evil.jpg", "media/../../evil.jpg", "/etc/passwd", "C:/Windows/x.jpg"])
def test_export_with_escaping_member_paths_is_refused(tmp_path, name):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("your_instagram_activity/media/posts_1.json", "[]")
        archive.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(ExportError, match="unsafe path"):
        list(iter_export_posts(path))


def test_export_uri_escaping_the_archive_is_skipped(tmp_path, fixtures_dir):
    posts = [{"media": [{"uri": "../../etc/passwd", "creation_timestamp": 1672531200, "title": "x"}]}]
    stats = ExportStats()
    path = build_export(tmp_path / "e.zip", {"content/posts_1.json": posts}, {})
    out = list(iter_export_posts(path, stats))
    assert out[0].photos == [] and out[0].skip_reason and stats.unsafe == 1


def test_export_total_size_and_member_count_caps(sample_export, settings):
    settings.FACES_MAX_EXPORT_BYTES = 200_000
    with pytest.raises(ExportError, match="add up to"):
        open_export(sample_export)
    settings.FACES_MAX_EXPORT_BYTES = 4 * 1024**3
    settings.FACES_MAX_EXPORT_MEMBERS = 5
    with pytest.raises(ExportError, match="at most 5"):
        open_export(sample_export)


def test_export_per_photo_cap_and_compression_bombs(tmp_path, fixtures_dir, settings):
    photo = (fixtures_dir / "people/barack_obama/2.jpg").read_bytes()
    files = {"media/posts/1/big.jpg": photo, "media/posts/1/bomb.jpg": b"\xff\xd8" + b"\x00" * (20 * 1024**2)}
    posts = [{"media": [{"uri": f"media/posts/1/{n}.jpg", "creation_timestamp": 1672531200 + i, "title": n}]}
             for i, n in enumerate(["big", "bomb"])]
    zip_path = build_export(tmp_path / "b.zip", {"content/posts_1.json": posts}, files, zipfile.ZIP_DEFLATED)
    settings.FACES_MAX_UPLOAD_BYTES = len(photo) - 1
    stats = ExportStats()
    out = list(iter_export_posts(zip_path, stats))
    assert all(not p.photos for p in out) and stats.too_large == 2 and stats.images == 0


def test_export_posts_json_bomb_is_refused(tmp_path):
    bomb = "[" + " " * (8 * 1024**2) + "]"
    path = tmp_path / "j.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("content/posts_1.json", bomb)
    with pytest.raises(ExportError, match="suspiciously compressed"):
        open_export(path)


def test_not_a_zip_and_zip_without_posts(tmp_path):
    junk = tmp_path / "photo.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(ExportError, match="not a ZIP"):
        list(iter_export_posts(junk))
    with pytest.raises(ExportError, match="not a ZIP"):
        open_export(b"")
    empty = build_export(tmp_path / "empty.zip", {}, {"media/posts/1/a.jpg": b"x"})
    with pytest.raises(ExportError, match="No posts"):
        open_export(empty)
    html_export = build_export(tmp_path / "html.zip", {},
                               {"your_instagram_activity/media/posts_1.html": b"<html>"})
    with pytest.raises(ExportError, match="JSON format"):
        open_export(html_export)


def test_export_error_is_a_source_error():
    assert issubclass(ExportError, SourceError)
